package keysync_test

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"gateagent/feed/feedtest"
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
		name string
		opt  keysync.TLSOptions
		fail string
	}{
		{"station CA and gate certificate", keysync.TLSOptions{CAFile: caFile, CertFile: gc, KeyFile: gk}, ""},
		{"no client certificate", keysync.TLSOptions{CAFile: caFile}, "certificate"},
		{"client certificate of another CA", keysync.TLSOptions{CAFile: caFile, CertFile: rogueCert, KeyFile: rogueKey}, "certificate"},
		{"issuer not signed by the trusted CA", keysync.TLSOptions{CAFile: otherCA, CertFile: gc, KeyFile: gk}, "certificate"},
	} {
		hc, err := keysync.NewHTTPClient(tc.opt)
		if err != nil {
			t.Fatal(err)
		}
		g := newGate(t, srv.URL+"/", feedtest.Keyring(t, s.Opts.Signer), func(c *keysync.Config) { c.HTTP = hc })
		_, err = g.Sync(context.Background())
		switch {
		case tc.fail == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.fail != "" && (err == nil || !strings.Contains(err.Error(), tc.fail)):
			t.Errorf("%s: %v, want an error about the %s", tc.name, err, tc.fail)
		}
	}
	for _, bad := range []keysync.TLSOptions{{CAFile: filepath.Join(dir, "nope")}, {CAFile: gk}, {CertFile: gc}, {CertFile: gc, KeyFile: caFile}} {
		if _, err := keysync.NewHTTPClient(bad); err == nil {
			t.Errorf("NewHTTPClient(%+v) accepted", bad)
		}
	}
}
