package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gateagent/issuer"
)

const defaultServer = "http://127.0.0.1:8440/"

// client talks to a running `issuer serve`.
type client struct {
	base string
	http *http.Client
}

// serverFlag adds --server to a client subcommand's flags.
func serverFlag(fs *flag.FlagSet) *string {
	return fs.String("server", defaultServer, "the issuer's `URL`")
}

func newClient(server string) (*client, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want an http:// or https:// URL such as %s", server, defaultServer)
	}
	return &client{base: server, http: &http.Client{Timeout: 30 * time.Second}}, nil
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
		return nil, fmt.Errorf("cannot reach the issuer: %w: is `issuer serve` running there? check --server", err)
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
