package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gateagent/issuer"
)

// serveContext is cancelled when serve should stop: on SIGINT or SIGTERM.
// Tests replace it.
var serveContext = func() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// serveReady, when set, is called with the bound address once serve
// listens. Tests set it.
var serveReady func(addr string)

const pruneEvery = time.Hour

// runServe opens the issuer's state file and serves its HTTP API until
// SIGINT or SIGTERM.
func runServe(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("serve", "--db FILE --key FILE [flags]", stderr)
	db := fs.String("db", "", "the issuer's state `FILE` (bbolt; created if absent)")
	keyPath := fs.String("key", "", "the signing key `FILE` written by `issuer keygen`")
	listen := fs.String("listen", "127.0.0.1:8440", "the `ADDRESS` to listen on")
	pageSize := fs.Int("page-size", 0, "changes in a log page and certificates in a snapshot page (default 16384)")
	maxAge := fs.Duration("max-age", 30*time.Minute, "how old a gate's cache may grow before it counts as stale")
	retention := fs.Duration("log-retention", 7*24*time.Hour, "how long changes stay in the log; a gate further behind resyncs from a snapshot")
	tlsCert := fs.String("tls-cert", "", "serve HTTPS with this PEM certificate `FILE` (with --tls-key)")
	tlsKey := fs.String("tls-key", "", "the PEM private key `FILE` of --tls-cert")
	clientCA := fs.String("client-ca", "", "require client certificates signed by a CA in this PEM `FILE` (mutual TLS; needs --tls-cert)")
	if pos, err := parseArgs(fs, args); err != nil {
		return 2
	} else if len(pos) != 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	switch {
	case *db == "" || *keyPath == "":
		return usageErr(fs, "--db and --key are required")
	case (*tlsCert == "") != (*tlsKey == ""):
		return usageErr(fs, "--tls-cert and --tls-key go together")
	case *clientCA != "" && *tlsCert == "":
		return usageErr(fs, "--client-ca needs --tls-cert and --tls-key")
	case *pageSize < 0 || *maxAge <= 0 || *retention <= 0:
		return usageErr(fs, "--page-size, --max-age and --log-retention must be positive")
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	signer, err := loadKey(*keyPath)
	if err != nil {
		return failed(stderr, err)
	}
	var tlsConf *tls.Config
	if *tlsCert != "" {
		if tlsConf, err = serverTLS(*tlsCert, *tlsKey, *clientCA); err != nil {
			return failed(stderr, err)
		}
	}
	is, err := issuer.Open(*db, issuer.Options{
		Signer:       signer,
		PageSize:     *pageSize,
		MaxAge:       *maxAge,
		LogRetention: *retention,
		Logger:       log,
	})
	if err != nil {
		return failed(stderr, err)
	}
	defer is.Close()
	prune := func() {
		if through, err := is.Prune(); err != nil {
			log.Error("prune", "err", err)
		} else {
			log.Info("pruned", "through", through)
		}
	}
	prune()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return failed(stderr, fmt.Errorf("%w: is another issuer running? choose another --listen", err))
	}
	srv := &http.Server{
		Handler:           is.Handler(),
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      120 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, stop := serveContext()
	defer stop()
	errc := make(chan error, 1)
	go func() {
		if tlsConf != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	addr := ln.Addr().String()
	log.Info("issuer listening", "addr", addr, "tls", tlsConf != nil, "client_certs", *clientCA != "",
		"key_id", signer.KeyID, "epoch", fmt.Sprintf("%016x", is.Epoch()), "db", *db)
	if serveReady != nil {
		serveReady(addr)
	}

	tick := time.NewTicker(pruneEvery)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			prune()
		case err := <-errc:
			log.Error("serve", "err", err)
			return 1
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := srv.Shutdown(sctx)
			cancel()
			if err != nil {
				log.Warn("shutdown timed out: closing open connections", "err", err)
				srv.Close()
			}
			if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
				log.Error("serve", "err", err)
			}
			if err := is.Close(); err != nil {
				log.Error("close state", "err", err)
				return 1
			}
			log.Info("stopped")
			return 0
		}
	}
}

// serverTLS returns the HTTPS config: TLS 1.2 or later, and with a client
// CA, client certificates required and verified.
func serverTLS(certFile, keyFile, clientCA string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate: %w: --tls-cert and --tls-key must be the PEM certificate and its private key", err)
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if clientCA != "" {
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return nil, fmt.Errorf("client CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client CA %s holds no PEM certificate: --client-ca must be the station CA's certificate in PEM", clientCA)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}
