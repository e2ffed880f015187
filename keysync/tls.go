package keysync

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"time"
)

// TLSOptions say how the gate reaches an HTTPS issuer. Station networks
// have their own PKI: CAFile replaces the system roots when set, and a
// client certificate identifies the gate (mTLS) when CertFile is set.
type TLSOptions struct {
	CAFile   string
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the issuer's certificate.
	ServerName string
}

// NewHTTPClient returns the HTTP client for the issuer.
func NewHTTPClient(o TLSOptions) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("keysync: CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("keysync: CA file %s holds no PEM certificate", o.CAFile)
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("keysync: a client certificate needs both the certificate file and its key file")
	}
	if o.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("keysync: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.Proxy = nil // the station path is configured, not taken from the environment
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}
