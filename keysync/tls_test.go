package keysync_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/feed/feedtest"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
)

type pki struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) pki {
	t.Helper()
	return issue(t, nil, name, true)
}

// issue makes a certificate signed by parent (self-signed when nil).
func issue(t *testing.T, parent *pki, name string, ca bool) pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: ca, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return pki{c, key}
}

func (p pki) write(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	kb, _ := x509.MarshalECPrivateKey(p.key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	return certFile, keyFile
}

// The station's own PKI: the gate trusts the station CA, not the system's,
// and proves itself with a client certificate.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, other := newCA(t, "station CA"), newCA(t, "someone else")
	server := issue(t, &ca, "issuer", false)
	gateCert := issue(t, &ca, "gate-07", false)
	caFile, _ := ca.write(t, dir, "ca")
	otherCA, _ := other.write(t, dir, "other")
	gc, gk := gateCert.write(t, dir, "gate")
	rogueCert, rogueKey := issue(t, &other, "rogue", false).write(t, dir, "rogue")

	s := issuertest.Start(t, issuer.Options{})
	s.Stop() // serve the same issuer over TLS instead
	is, err := issuer.Open(s.Path, s.Opts)
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	srv := httptest.NewUnstartedServer(is.Handler())
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{server.cert.Raw}, PrivateKey: server.key}},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12,
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
