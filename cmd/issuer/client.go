package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"gateagent/internal/cli"
	"gateagent/issuer"
)

const defaultServer = "http://127.0.0.1:8440/"

// client talks to a running `issuer serve`.
type client struct {
	base string
	http *http.Client
}

// server is the client subcommands' --server and --ca.
type server struct {
	url, ca string
}

// flags adds --server and --ca to a client subcommand's flags.
func (s *server) flags(fs *flag.FlagSet) {
	fs.StringVar(&s.url, "server", defaultServer, "the issuer's `URL`")
	fs.StringVar(&s.ca, "ca", "", "trust the CA certificates in this PEM `FILE` for an https:// --server (default: the system's)")
}

// usageError: a --server or --ca the command line got wrong.
type usageError struct{ error }

// client checks the flags and returns a client of the issuer; an error
// from the flags is a usageError.
func (s *server) client() (*client, error) {
	u, err := url.Parse(s.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Errorf("--server %q: want an http:// or https:// URL such as %s", s.url, defaultServer)}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if s.ca != "" {
		pem, err := os.ReadFile(s.ca)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca: %w", err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, usageError{fmt.Errorf("--ca %s holds no PEM certificate", s.ca)}
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &client{base: s.url, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// connect is client for a command: a usage error is reported as one.
func (s *server) connect(c *cli.Context) (*client, int) {
	cl, err := s.client()
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return nil, c.Usagef("%v", ue.error)
	case err != nil:
		return nil, c.Fail(err)
	}
	return cl, 0
}

// call sends a request with in as its JSON body (none if nil) and returns
// the body of a 2xx answer. Any other answer is an error: a refusal is an
// *issuer.Refusal.
func (c *client) call(method, path string, query url.Values, in any) ([]byte, error) {
	u, err := url.JoinPath(c.base, path)
	if err != nil {
		return nil, err
	}
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		return nil, err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, reachAdvice(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read the issuer's answer: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return data, nil
	}
	var r issuer.Refusal
	if json.Unmarshal(data, &r) == nil && r.Message != "" {
		return nil, &r
	}
	return nil, fmt.Errorf("the issuer answered %s: %s", resp.Status, strings.TrimSpace(string(data)))
}

// callJSON is call with the answer decoded into out.
func (c *client) callJSON(method, path string, in, out any) error {
	data, err := c.call(method, path, nil, in)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the issuer's answer is not the expected JSON: %w (is --server an issuer?)", err)
	}
	return nil
}

// timeText formats t for people, in China Standard Time as the issuance
// rules count.
func timeText(t time.Time) string { return t.In(issuer.CST).Format("2006-01-02 15:04:05 MST") }

// reachAdvice says what to do when the issuer cannot be reached, judged
// from the error's type.
func reachAdvice(err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		hostErr   x509.HostnameError
		recErr    tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA):
		return "the issuer's TLS certificate is not signed by a CA this client trusts: give the station CA with --ca FILE"
	case errors.As(err, &hostErr):
		return "the issuer's TLS certificate is for another name: check the host in --server"
	case errors.As(err, &recErr):
		return "the issuer does not speak TLS there: check http:// or https:// in --server"
	}
	return "is `issuer serve` running there? check --server"
}
