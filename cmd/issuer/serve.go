package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gateagent/feed"
	"gateagent/internal/cli"
	"gateagent/internal/logging"
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

// serveOpts are serve's flags.
type serveOpts struct {
	db, keyPath, listen       string
	pageSize                  int
	maxAge, retention         time.Duration
	tlsCert, tlsKey, clientCA string
	fleet                     fleetKeys
}

// serveCmd opens the issuer's state file and serves its HTTP API until
// SIGINT or SIGTERM.
func serveCmd() *cli.Command {
	var o serveOpts
	return &cli.Command{
		Name:    "serve",
		Summary: "serve the issuer's HTTP API and key feed",
		Help:    "Opens the issuer's state file and serves its HTTP API and the signed key feed until SIGINT or SIGTERM.",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.db, "db", "", "the issuer's state `FILE` (bbolt; created if absent; required)")
			fs.StringVar(&o.keyPath, "key", "", "the signing key `FILE` written by `issuer keygen` (required)")
			fs.Var(&o.fleet, "fleet-key", "a gate fleet public `KEY` (fleet-HEX:BASE64, as `issuer fleet-keygen` prints it) to seal certificate keys to; required; give it twice during a fleet key rotation")
			fs.StringVar(&o.listen, "listen", "127.0.0.1:8440", "the `ADDRESS` to listen on")
			fs.IntVar(&o.pageSize, "page-size", 0, "changes in a log page and certificates in a snapshot page (default 16384)")
			fs.DurationVar(&o.maxAge, "max-age", 30*time.Minute, "how old a gate's cache may grow before it counts as stale")
			fs.DurationVar(&o.retention, "log-retention", 7*24*time.Hour, "how long changes stay in the log; a gate further behind resyncs from a snapshot")
			fs.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this PEM certificate `FILE` (with --tls-key)")
			fs.StringVar(&o.tlsKey, "tls-key", "", "the PEM private key `FILE` of --tls-cert")
			fs.StringVar(&o.clientCA, "client-ca", "", "require client certificates signed by a CA in this PEM `FILE` (mutual TLS; needs --tls-cert)")
		},
		Run: func(c *cli.Context) int { return serve(c, o) },
	}
}

func serve(c *cli.Context, o serveOpts) int {
	switch {
	case o.db == "" || o.keyPath == "":
		return c.Usagef("--db and --key are required")
	case len(o.fleet) == 0:
		return c.Usagef("--fleet-key is required: the issuer seals certificate keys to the gate fleet (issuer fleet-keygen makes the key pair)")
	case len(o.fleet) > feed.MaxWraps:
		return c.Usagef("--fleet-key: at most %d", feed.MaxWraps)
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return c.Usagef("--tls-cert and --tls-key go together")
	case o.clientCA != "" && o.tlsCert == "":
		return c.Usagef("--client-ca needs --tls-cert and --tls-key")
	case o.pageSize < 0 || o.maxAge <= 0 || o.retention <= 0:
		return c.Usagef("--page-size, --max-age and --log-retention must be positive")
	}
	log := logging.New(c.Stderr, logging.Options{Journal: logging.JournalStream(c.Stderr)})
	signer, err := loadKey(o.keyPath)
	if err != nil {
		return c.Fail(err)
	}
	var tlsConf *tls.Config
	if o.tlsCert != "" {
		if tlsConf, err = serverTLS(o.tlsCert, o.tlsKey, o.clientCA); err != nil {
			return c.Fail(err)
		}
	}
	is, err := issuer.Open(o.db, issuer.Options{
		Signer:       signer,
		Fleet:        o.fleet,
		PageSize:     o.pageSize,
		MaxAge:       o.maxAge,
		LogRetention: o.retention,
		Logger:       log,
	})
	if err != nil {
		return c.Fail(err)
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

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return c.Fail(fmt.Errorf("%w: is another issuer running? choose another --listen", err))
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
	log.Info("issuer listening", "addr", addr, "tls", tlsConf != nil, "client_certs", o.clientCA != "",
		"key_id", signer.KeyID, "fleet_keys", o.fleet.String(), "epoch", fmt.Sprintf("%016x", is.Epoch()), "db", o.db)
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
