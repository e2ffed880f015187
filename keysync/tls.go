package keysync

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"gateagent/internal/regfile"
	"io/fs"
	"net/http"
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

// The TLS files a FileError names.
const (
	FieldCA   = "CA file"
	FieldCert = "client certificate file"
	FieldKey  = "client key file"
)

// FileError: a TLS file of TLSOptions cannot be used.
type FileError struct {
	Field string // FieldCA, FieldCert or FieldKey
	Path  string
	Err   error // fs errors (errors.Is(err, fs.ErrNotExist), …) or what is wrong with the contents
}

func (e *FileError) Error() string {
	return fmt.Sprintf("keysync: %s %s: %v", e.Field, e.Path, e.Err)
}

func (e *FileError) Unwrap() error { return e.Err }

// maxTLSFile bounds a TLS file: a station CA bundle is a few kilobytes,
// the system's whole bundle about 200 KB.
const maxTLSFile = 1 << 20

// errNoPEM: a CA file without one PEM certificate.
var errNoPEM = errors.New("holds no PEM certificate")

// NewHTTPClient returns the HTTP client for the issuer. It reads every
// file it is given now, so a missing or unreadable one is found at start.
func NewHTTPClient(o TLSOptions) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName}
	if o.CAFile != "" {
		pem, err := regfile.ReadFile(o.CAFile, maxTLSFile)
		if err != nil {
			return nil, &FileError{FieldCA, o.CAFile, unwrapPath(err)}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &FileError{FieldCA, o.CAFile, errNoPEM}
		}
		cfg.RootCAs = pool
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, fmt.Errorf("keysync: a client certificate needs both the certificate file and its key file")
	}
	if o.CertFile != "" {
		certPEM, err := regfile.ReadFile(o.CertFile, maxTLSFile)
		if err != nil {
			return nil, &FileError{FieldCert, o.CertFile, unwrapPath(err)}
		}
		keyPEM, err := regfile.ReadFile(o.KeyFile, maxTLSFile)
		if err != nil {
			return nil, &FileError{FieldKey, o.KeyFile, unwrapPath(err)}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, &FileError{FieldCert, o.CertFile, fmt.Errorf("with key %s: %w", o.KeyFile, err)}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	tr.Proxy = nil // the station path is configured, not taken from the environment
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}

// unwrapPath drops an *fs.PathError's repetition of the path (FileError
// names it) and keeps its cause: "no such file or directory".
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
