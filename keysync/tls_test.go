package keysync_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/feed/feedtest"
	"gateagent/internal/syncbuf"
	"gateagent/internal/testpki"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
)

// The station's own PKI: the gate trusts the station CA, not the system's,
// and proves itself with a client certificate.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := testpki.CA(t, "station CA"), testpki.CA(t, "someone else")
	server := ca.Issue(t, "issuer")
	caFile, _ := ca.WriteFiles(t, dir, "ca")
	otherCA, _ := other.WriteFiles(t, dir, "other")
	gc, gk := ca.Issue(t, "gate-07").WriteFiles(t, dir, "gate")
	rogueCert, rogueKey := other.Issue(t, "rogue").WriteFiles(t, dir, "rogue")

	s := issuertest.Start(t, issuer.Options{})
	s.Stop() // serve the same issuer over TLS instead
	is, err := issuer.Open(s.Path, s.Opts)
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	srv := httptest.NewUnstartedServer(is.Handler())
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{server.Certificate},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12,
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()

	for _, tc := range []struct {
		name    string
		opt     keysync.TLSOptions
		fail    string
		trouble keysync.Trouble
		key     string // the config key the agent's log points at
	}{
		{"station CA and gate certificate", keysync.TLSOptions{CAFile: caFile, CertFile: gc, KeyFile: gk}, "", 0, ""},
		{"no client certificate", keysync.TLSOptions{CAFile: caFile}, "certificate", keysync.TroubleTLSRefused, "feed.cert_file"},
		{"client certificate of another CA", keysync.TLSOptions{CAFile: caFile, CertFile: rogueCert, KeyFile: rogueKey}, "certificate", keysync.TroubleTLSRefused, "feed.cert_file"},
		{"issuer not signed by the trusted CA", keysync.TLSOptions{CAFile: otherCA, CertFile: gc, KeyFile: gk}, "certificate", keysync.TroubleTLSTrust, "feed.ca_file"},
	} {
		hc, err := keysync.NewHTTPClient(tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		var logs syncbuf.Buffer
		ctx, cancel := context.WithCancel(context.Background())
		g := newGate(t, srv.URL+"/", feedtest.Keyring(t, s.Opts.Signer), func(c *keysync.Config) {
			c.HTTP = hc
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			c.Sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled } // one round
		})
		_, err = g.Sync(context.Background())
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%s: %v, want an error about the %s", tc.name, err, tc.fail)
		case tc.fail != "" && keysync.Diagnose(err) != tc.trouble:
			t.Errorf("%s: %v judged %v, want %v", tc.name, err, keysync.Diagnose(err), tc.trouble)
		}
		if tc.fail == "" {
			cancel()
			continue
		}
		// The agent's log says which setting to look at, not "is the
		// issuer reachable".
		g.Run(ctx)
		line := logs.String()
		if !strings.Contains(line, "key feed round failed") || !strings.Contains(line, "trouble="+tc.trouble.String()) ||
			!strings.Contains(line, tc.key) || strings.Contains(line, "reachable") {
			t.Errorf("%s: log %q, want the trouble %v and %s", tc.name, line, tc.trouble, tc.key)
		}
	}
	for _, bad := range []keysync.TLSOptions{{CAFile: filepath.Join(dir, "nope")}, {CAFile: gk}, {CertFile: gc}, {CertFile: gc, KeyFile: caFile}} {
		if _, err := keysync.NewHTTPClient(bad); err == nil {
			t.Errorf("NewHTTPClient(%+v) accepted", bad)
		}
	}
}
