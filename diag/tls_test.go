package diag_test

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"gateagent/diag"
	"gateagent/internal/testpki"
	"gateagent/issuer"
)

// TestFeedTLSFaults: the station's issuer speaks mutual TLS. Each way the
// gate's TLS settings can be wrong makes the feed check FAIL with the
// config keys to look at, judged from the error's type.
func TestFeedTLSFaults(t *testing.T) {
	st := newStation(t)
	ca, other := testpki.CA(t, "station CA"), testpki.CA(t, "someone else")
	caFile, _ := ca.WriteFiles(t, st.dir, "ca")
	otherCA, _ := other.WriteFiles(t, st.dir, "other")
	gateCert, gateKey := ca.Issue(t, "gate").WriteFiles(t, st.dir, "gate")

	// The same issuer, now over TLS with client certificates required.
	st.srv.Stop()
	is, err := issuer.Open(st.srv.Path, st.srv.Opts)
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	srv := httptest.NewUnstartedServer(is.Handler())
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1").Certificate},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(), MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes are expected
	srv.StartTLS()
	defer srv.Close()
	st.fields["URL"] = srv.URL + "/"

	for _, tc := range []struct {
		name  string
		tls   string // lines added to [feed]
		check diag.Status
		says  []string
	}{
		{"station CA and gate certificate", fmt.Sprintf("ca_file = %q\ncert_file = %q\nkey_file = %q", caFile, gateCert, gateKey), diag.Pass, []string{"issuer answers"}},
		{"no client certificate", fmt.Sprintf("ca_file = %q", caFile), diag.Fail, []string{"refused the handshake", "feed.cert_file"}},
		{"issuer not signed by the trusted CA", fmt.Sprintf("ca_file = %q\ncert_file = %q\nkey_file = %q", otherCA, gateCert, gateKey), diag.Fail, []string{"not signed by the station CA", "feed.ca_file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st.fields["REFUSE"] = "false\n" + tc.tls
			_, r, _ := st.report()
			c, ok := r.Find(diag.NameFeed)
			if !ok || c.Status != tc.check {
				t.Fatalf("feed check %+v, want %v:\n%s", c, tc.check, describe(r))
			}
			for _, s := range tc.says {
				if !strings.Contains(c.Line, s) {
					t.Errorf("feed line lacks %q: %s", s, c.Line)
				}
			}
		})
	}
}
