package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gateagent/event"
	"gateagent/feed"
	"gateagent/internal/cli"
	"gateagent/internal/syncbuf"
	"gateagent/internal/testpki"
	"gateagent/issuer/idcard"
	"gateagent/verify"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsage(t *testing.T) {
	if code, out, _ := runArgs(); code != 0 || !strings.Contains(out, "keygen") || !strings.Contains(out, "show") {
		t.Fatalf("no args: %d %q", code, out)
	}
	if code, out, _ := runArgs("help"); code != 0 || !strings.Contains(out, "serve") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, errOut := runArgs("frobnicate"); code != 64 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
	for _, args := range [][]string{
		{"keygen"},
		{"serve", "--key", "k"},
		{"serve", "--db", "d", "--key", "k", "--tls-cert", "c"},
		{"serve", "--db", "d", "--key", "k", "--client-ca", "ca"},
		{"apply", "--name", "N"},
		{"revoke"},
		{"revoke", "not-an-id"},
		{"show", strings.Repeat("ab", 16), "--at", "yesterday"},
		{"history", "--server", "ftp://x/", "--doc-number", "1"},
	} {
		if code, _, _ := runArgs(args...); code != 64 {
			t.Errorf("%q: exit %d, want 64 (usage)", args, code)
		}
	}
}

// keygen makes the issuer's signing key with keygen and returns the
// private key file and the trusted_keys line it printed.
func keygen(t *testing.T) (path, trusted string) {
	t.Helper()
	return makeKey(t, "issuer.key", "keygen", "--key")
}

// fleetKey makes a fleet key pair with fleet-keygen and returns the private
// key file and the public line it printed.
func fleetKey(t *testing.T) (path, public string) {
	t.Helper()
	return makeKey(t, "fleet.key", "fleet-keygen", "--out")
}

// makeKey runs a key-making command, its private key written to a new
// file called name (given with flag), and returns that file and the last
// line the command printed (the public part).
func makeKey(t *testing.T, name, command, flag string) (path, last string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), name)
	code, out, errOut := runArgs(command, flag, path)
	if code != 0 {
		t.Fatalf("%s: %d %q %q", command, code, out, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	return path, lines[len(lines)-1]
}

func TestFleetKeygen(t *testing.T) {
	path, line := fleetKey(t)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("fleet key file: %v %v", st.Mode(), err)
	}
	pub, err := feed.ParseFleetPublic(line)
	if err != nil {
		t.Fatalf("public line %q: %v", line, err)
	}
	data, _ := os.ReadFile(path)
	k, err := feed.ParseFleetKey(data)
	if err != nil || k.ID != pub.ID || k.Public().String() != line {
		t.Fatalf("the private file holds %v (%v), the line says %s", k, err, line)
	}
	if code, _, errOut := runArgs("fleet-keygen", "--out", path); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("fleet-keygen over an existing file: %d %q", code, errOut)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, data) {
		t.Fatal("fleet-keygen changed an existing key file")
	}
	if code, _, _ := runArgs("fleet-keygen"); code != 64 {
		t.Fatalf("fleet-keygen without --out: %d", code)
	}
	key, _ := keygen(t)
	db := filepath.Join(t.TempDir(), "issuer.db")
	if code, _, errOut := runArgs("serve", "--db", db, "--key", key); code != 64 || !strings.Contains(errOut, "--fleet-key is required") {
		t.Fatalf("serve without a fleet key: %d %q", code, errOut)
	}
	for _, bad := range []string{"AAAA", line[:len(line)-2] + "AA", line + "x"} {
		if code, _, _ := runArgs("serve", "--db", db, "--key", key, "--fleet-key", bad); code != 64 {
			t.Errorf("serve --fleet-key %q: exit %d, want 64", bad, code)
		}
	}
	if code, _, errOut := runArgs("serve", "--db", db, "--key", key, "--fleet-key", line, "--fleet-key", line); code != 64 || !strings.Contains(errOut, "twice") {
		t.Errorf("serve with one fleet key twice: %d %q", code, errOut)
	}
}

func TestKeygenPubkey(t *testing.T) {
	path, line := keygen(t)
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	tk, err := feed.ParseTrustedKey(line)
	if err != nil || !regexp.MustCompile(`^issuer-[0-9a-f]{8}$`).MatchString(tk.ID) {
		t.Fatalf("trusted key line %q: %+v %v", line, tk, err)
	}
	code, out, errOut := runArgs("pubkey", "--key", path)
	if code != 0 || out != line+"\n" {
		t.Fatalf("pubkey: %d %q %q, keygen printed %q", code, out, errOut, line)
	}
	s, err := loadKey(path)
	if err != nil || s.Public().String() != line {
		t.Fatalf("loadKey: %v", err)
	}

	before, _ := os.ReadFile(path)
	if code, _, errOut := runArgs("keygen", "--key", path); code != 1 || !strings.Contains(errOut, "already exists") {
		t.Fatalf("keygen over an existing file: %d %q", code, errOut)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Fatal("keygen changed an existing key file")
	}
	if m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".*tmp*")); len(m) != 0 {
		t.Fatalf("temp files left: %q", m)
	}

	named := filepath.Join(t.TempDir(), "named.key")
	if code, out, _ := runArgs("keygen", "--key", named, "--id", "rail-2026"); code != 0 || !strings.Contains(out, "\nrail-2026:") {
		t.Fatalf("keygen --id: %d %q", code, out)
	}
	if code, _, _ := runArgs("keygen", "--key", filepath.Join(t.TempDir(), "k"), "--id", "bad id"); code != 64 {
		t.Fatalf("keygen with a bad ID: %d", code)
	}
}

func TestKeyRefused(t *testing.T) {
	path, _ := keygen(t)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runArgs("pubkey", "--key", path); code != 1 || !strings.Contains(errOut, "chmod 600 "+path) {
		t.Fatalf("mode 0644: %d %q", code, errOut)
	}
	db := filepath.Join(t.TempDir(), "issuer.db")
	_, fleet := fleetKey(t)
	if code, _, errOut := runArgs("serve", "--db", db, "--key", path, "--fleet-key", fleet); code != 1 || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("serve with mode 0644: %d %q", code, errOut)
	}

	dir := t.TempDir()
	for name, content := range map[string]string{
		"garbage":  "garbage\n",
		"no-seed":  keyHeader + "\nissuer-1\n",
		"short":    keyHeader + "\nissuer-1 AAAA\n",
		"bad-id":   keyHeader + "\nbad/id AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
		"trailing": keyHeader + "\nissuer-1 AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nmore\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if code, _, errOut := runArgs("pubkey", "--key", p); code != 1 || !strings.Contains(errOut, "issuer keygen") {
			t.Errorf("%s key file: %d %q", name, code, errOut)
		}
	}
	absent := filepath.Join(dir, "absent.key")
	if code, _, errOut := runArgs("pubkey", "--key", absent); code != 1 || !strings.Contains(errOut, "issuer keygen --key "+absent) {
		t.Fatalf("absent key file: %d %q", code, errOut)
	}
}

// startServe runs `issuer serve args...` and returns its address, its log
// and a function that stops it and returns its exit status.
func startServe(t *testing.T, args ...string) (addr string, log *syncbuf.Buffer, stop func() int) {
	t.Helper()
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	oldReady, oldCtx := serveReady, serveContext
	serveReady = func(a string) { ready <- a }
	serveContext = func() (context.Context, context.CancelFunc) { return ctx, cancel }
	log = &syncbuf.Buffer{}
	done := make(chan int, 1)
	go func() { done <- run(append([]string{"serve"}, args...), io.Discard, log) }()
	var code int
	stopped := false
	stop = func() int {
		if !stopped {
			cancel()
			select {
			case code = <-done:
			case <-time.After(20 * time.Second):
				t.Fatalf("serve did not stop; log:\n%s", log)
			}
			stopped = true
		}
		return code
	}
	t.Cleanup(func() {
		stop()
		serveReady, serveContext = oldReady, oldCtx
	})
	select {
	case addr = <-ready:
	case code := <-done:
		t.Fatalf("serve exited %d; log:\n%s", code, log)
	case <-time.After(20 * time.Second):
		t.Fatalf("serve not ready; log:\n%s", log)
	}
	return addr, log, stop
}

func TestServeEndToEnd(t *testing.T) {
	key, trusted := keygen(t)
	_, fleet := fleetKey(t)
	db := filepath.Join(t.TempDir(), "issuer.db")
	addr, log, stop := startServe(t, "--db", db, "--key", key, "--fleet-key", fleet, "--listen", "127.0.0.1:0")
	server := "http://" + addr + "/"
	tk, _ := feed.ParseTrustedKey(trusted)
	for _, want := range []string{"addr=" + addr, "key_id=" + tk.ID, "epoch="} {
		if !strings.Contains(log.String(), want) {
			t.Errorf("serve log lacks %q:\n%s", want, log)
		}
	}

	first17 := "11010519900307123"
	doc := first17 + string(idcard.CheckChar(first17))
	code, out, errOut := runArgs("apply", "--server", server, "--name", "Zhang San", "--doc-number", doc, "--city", "Beijing")
	m := regexp.MustCompile(`certificate: ([0-9a-f]{32})\n`).FindStringSubmatch(out)
	if code != 0 || m == nil || !strings.Contains(out, "valid until:") || strings.Contains(out, "key:") {
		t.Fatalf("apply: %d %q %q", code, out, errOut)
	}
	id := m[1]

	code, out, errOut = runArgs("show", id, "--server", server, "--at", time.Now().Format(time.RFC3339))
	tok, qr, _ := strings.Cut(out, "\n")
	if code != 0 || !strings.HasPrefix(tok, "TR1:") || len(tok) != 58 || !strings.ContainsAny(qr, "█▀▄") {
		t.Fatalf("show: %d %q %q", code, out, errOut)
	}

	code, out, errOut = runArgs("history", "--server", server, "--doc-number", doc)
	if code != 0 || !strings.Contains(out, "CERTIFICATE") || !regexp.MustCompile(id+` +valid `).MatchString(out) {
		t.Fatalf("history: %d %q %q", code, out, errOut)
	}
	if strings.Contains(out, doc) || strings.Contains(log.String(), doc) || strings.Contains(log.String(), "Zhang") {
		t.Fatal("the document number or name was printed or logged")
	}

	if code, out, errOut = runArgs("revoke", "--server", server, id); code != 0 || out != "revoked "+id+"\n" {
		t.Fatalf("revoke: %d %q %q", code, out, errOut)
	}
	if code, out, _ = runArgs("history", "--server", server, "--doc-number", doc); code != 0 || !regexp.MustCompile(id+` +revoked `).MatchString(out) {
		t.Fatalf("history after revoke: %d %q", code, out)
	}
	if code, _, errOut = runArgs("revoke", "--server", server, strings.Repeat("0", 32)); code != 1 || !strings.Contains(errOut, "no certificate with that ID") {
		t.Fatalf("revoke of an unknown ID: %d %q", code, errOut)
	}

	code, out, errOut = runArgs("apply", "--server", server, "--name", "Li Si", "--doc-number", doc, "--doc-type", "passport", "--city", "Beijing")
	if code != 1 || out != "" || !strings.Contains(errOut, "cannot be issued") {
		t.Fatalf("refused apply: %d %q %q", code, out, errOut)
	}

	if code := stop(); code != 0 {
		t.Fatalf("serve exited %d; log:\n%s", code, log)
	}
	if !strings.Contains(log.String(), "stopped") {
		t.Fatalf("serve log:\n%s", log)
	}
	if code, _, errOut := runArgs("history", "--server", server, "--doc-number", doc); code != 1 || !strings.Contains(errOut, "issuer serve") {
		t.Fatalf("history with the issuer down: %d %q", code, errOut)
	}
}

// httpsIssuer is `issuer serve` over HTTPS: a new station CA, the
// server's certificate from it, their files in dir.
type httpsIssuer struct {
	ca                                         *testpki.Cert
	dir, caFile, certFile, keyFile, key, fleet string
	addr                                       string
	log                                        *syncbuf.Buffer
	stop                                       func() int
}

// startHTTPS starts the issuer over HTTPS with a certificate for host;
// with clientCA, it asks each client for a certificate of the station CA.
func startHTTPS(t *testing.T, host string, clientCA bool) *httpsIssuer {
	t.Helper()
	s := &httpsIssuer{ca: testpki.CA(t, "station CA"), dir: t.TempDir()}
	s.caFile, _ = s.ca.WriteFiles(t, s.dir, "ca")
	s.certFile, s.keyFile = s.ca.Issue(t, host).WriteFiles(t, s.dir, "server")
	s.key, _ = keygen(t)
	_, s.fleet = fleetKey(t)
	args := []string{"--db", filepath.Join(s.dir, "issuer.db"), "--key", s.key, "--fleet-key", s.fleet, "--listen", "127.0.0.1:0",
		"--tls-cert", s.certFile, "--tls-key", s.keyFile}
	if clientCA {
		args = append(args, "--client-ca", s.caFile)
	}
	s.addr, s.log, s.stop = startServe(t, args...)
	return s
}

func TestServeMutualTLS(t *testing.T) {
	s := startHTTPS(t, "issuer", true)
	gate := s.ca.Issue(t, "gate-7")

	roots := s.ca.Pool()
	get := func(certs ...tls.Certificate) (*http.Response, error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}
		defer tr.CloseIdleConnections()
		return (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://" + s.addr + "/healthz")
	}
	if resp, err := get(); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %s", resp.Status)
	}
	resp, err := get(gate.Certificate)
	if err != nil {
		t.Fatalf("a client with the CA's certificate: %v; log:\n%s", err, s.log)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "ok\n" {
		t.Fatalf("healthz: %s %q", resp.Status, body)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d; log:\n%s", code, s.log)
	}

	// A client CA file that holds no certificate is refused.
	if code, _, errOut := runArgs("serve", "--db", filepath.Join(s.dir, "issuer.db"), "--key", s.key, "--fleet-key", s.fleet,
		"--tls-cert", s.certFile, "--tls-key", s.keyFile, "--client-ca", s.keyFile); code != 1 || !strings.Contains(errOut, "no PEM certificate") {
		t.Fatalf("bad client CA: %d %q", code, errOut)
	}
}

// TestServeTLSTrust: a client command reaches an HTTPS issuer when told the
// station CA with --ca, and without it is told to give one.
func TestServeTLSTrust(t *testing.T) {
	s := startHTTPS(t, "127.0.0.1", false)
	server := "https://" + s.addr + "/"
	unknown := strings.Repeat("0", 32)
	if code, _, errOut := runArgs("revoke", "--server", server, unknown); code != 1 || !strings.Contains(errOut, "give the station CA with --ca") {
		t.Errorf("without --ca: %d %q", code, errOut)
	}
	if code, _, errOut := runArgs("revoke", "--server", server, "--ca", s.caFile, unknown); code != 1 || !strings.Contains(errOut, "no certificate with that ID") {
		t.Errorf("with --ca: %d %q (the issuer answered, so TLS worked)", code, errOut)
	}
	if code, _, errOut := runArgs("revoke", "--server", server, "--ca", s.keyFile, unknown); code != 64 || !strings.Contains(errOut, "no PEM certificate") {
		t.Errorf("--ca without a certificate: %d %q", code, errOut)
	}
	if code := s.stop(); code != 0 {
		t.Fatalf("serve exited %d; log:\n%s", code, s.log)
	}
}

// TestHelpEverywhere walks every command: --help and `help CMD` exit 0
// and show that command's own usage, its own flags GNU-style, and the
// exit statuses.
func TestHelpEverywhere(t *testing.T) {
	cli.Walk(root(), func(path []string, c *cli.Command) {
		for _, args := range [][]string{append(append([]string(nil), path...), "--help"), append([]string{"help"}, path...)} {
			code, out, errOut := runArgs(args...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: "+strings.Join(append([]string{"issuer"}, path...), " ")) || !strings.Contains(out, "Exit status:") {
				t.Errorf("issuer %q: exit %d\n%s%s", args, code, out, errOut)
			}
			fs := flag.NewFlagSet("", flag.ContinueOnError)
			if c.Flags != nil {
				c.Flags(fs)
			}
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(out, "\n  --"+f.Name) {
					t.Errorf("issuer %q does not list --%s:\n%s", args, f.Name, out)
				}
			})
		}
	})
	if code, out, _ := runArgs("--version"); code != 0 || !strings.HasPrefix(out, "issuer dev") {
		t.Errorf("--version: %d %q", code, out)
	}
}

// TestEventsCommand: a gate's uploads, listed at the issuer page by page;
// the issuer logs each upload.
func TestEventsCommand(t *testing.T) {
	key, _ := keygen(t)
	_, fleet := fleetKey(t)
	addr, log, _ := startServe(t, "--db", filepath.Join(t.TempDir(), "issuer.db"), "--key", key, "--fleet-key", fleet, "--listen", "127.0.0.1:0")
	server := "http://" + addr + "/"
	at := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	cert := verify.CertID{0xab, 0xcd}
	up := feed.EventUpload{GateID: "GZN-E07", Events: []event.Event{
		{Seq: 1, Time: at, Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, CertID: cert},
		{Seq: 2, Time: at.Add(8 * time.Second), Kind: event.Lapsed, Reason: verify.OK, Direction: verify.Entry, CertID: cert, Detail: "granted but not used: nobody entered within 8s"},
		{Seq: 3, Time: at.Add(time.Minute), Kind: event.Decision, Reason: verify.Malformed, Direction: verify.Entry},
	}}
	body, _ := json.Marshal(up)
	resp, err := http.Post(server+"v1/events", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("upload: %v %v", resp, err)
	}
	resp.Body.Close()
	if !strings.Contains(log.String(), "events uploaded") || !strings.Contains(log.String(), "gate=GZN-E07") {
		t.Errorf("the upload is not in the issuer's log:\n%s", log)
	}

	code, out, errOut := runArgs("events", "--server", server, "--gate", "GZN-E07")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "SEQ") {
		t.Fatalf("events: %d %q %q", code, out, errOut)
	}
	for i, want := range []string{
		`^1 +2026-11-23 08:00:00 CST +decision +OK +entry +abcd0{28} *$`,
		`^2 +2026-11-23 08:00:08 CST +lapsed +OK +entry +abcd0{28} +granted but not used: nobody entered within 8s$`,
		`^3 +2026-11-23 08:01:00 CST +decision +MALFORMED +entry +- *$`,
	} {
		if !regexp.MustCompile(want).MatchString(lines[i+1]) {
			t.Errorf("row %d %q, want %s", i+1, lines[i+1], want)
		}
	}
	code, out, _ = runArgs("events", "--server", server, "--gate", "GZN-E07", "--limit", "2")
	if code != 0 || !strings.HasSuffix(out, "more: issuer events --gate GZN-E07 --after 2\n") || strings.Contains(out, "MALFORMED") {
		t.Fatalf("first page: %d %q", code, out)
	}
	code, out, _ = runArgs("events", "--server", server, "--gate", "GZN-E07", "--after", "2")
	if code != 0 || !strings.Contains(out, "MALFORMED") || strings.Contains(out, "lapsed") || strings.Contains(out, "more:") {
		t.Fatalf("second page: %d %q", code, out)
	}
	if code, out, _ = runArgs("events", "--server", server, "--gate", "GZN-E08"); code != 0 || out != "no events of gate GZN-E08\n" {
		t.Fatalf("a gate without uploads: %d %q", code, out)
	}
	if code, _, errOut = runArgs("events", "--server", server, "--gate", "a/b"); code != 1 || !strings.Contains(errOut, "gate_id may hold only") {
		t.Fatalf("a bad gate ID: %d %q", code, errOut)
	}
	if code, _, _ = runArgs("events", "--server", server); code != 64 {
		t.Fatalf("no --gate: exit %d, want 64", code)
	}
	if code, _, _ = runArgs("events", "--server", server, "--gate", "G", "--limit", "0"); code != 64 {
		t.Fatalf("--limit 0: exit %d, want 64", code)
	}
}
