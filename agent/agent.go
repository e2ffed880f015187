// Package agent wires one gate together from its config: the board, the
// key cache, the key feed client, the verifier, the scanner and the gate
// controller. `gateagent run` and `gateagent demo` both run it.
//
// Start-up order matters: the board is opened first, so every output is at
// its safe level before anything else happens; then the cache, the feed
// client and the scanner. Shutdown (the context ending) stops the scanner
// and the feed, lets the controller lock the gate, drives every output off,
// and closes the cache last.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/control"
	"gateagent/diag"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/internal/sdnotify"
	"gateagent/internal/version"
	"gateagent/keysync"
	"gateagent/metrics"
	"gateagent/scanner"
	"gateagent/verify"
)

// Options are what a caller may supply beyond the config.
type Options struct {
	// Logger; default discards.
	Logger *slog.Logger
	// Board, when set, is used instead of opening the one the config
	// names (tests' fake pins, the demo's simulated board). The agent
	// drives it safe at once and again at shutdown.
	Board *hw.Board
	// Stdout receives the simulated board's state lines (hw.kind = "sim").
	Stdout io.Writer
	// Observe sees every outcome of the gate (see gate.Config.Observe).
	Observe func(gate.Outcome)
	// Notifier tells systemd about readiness and pets its watchdog; nil:
	// from the environment.
	Notifier *sdnotify.Notifier
	// Now is the gate's raw clock; default time.Now.
	Now func() time.Time
}

// Agent is one running gate.
type Agent struct {
	cfg    *config.Config
	opts   Options
	log    *slog.Logger
	board  *hw.Board
	store  *cache.Store // the key cache and the journal
	feed   *keysync.Client
	ctrl   *gate.Controller
	verify *verify.Verifier
	stats  *metrics.Metrics
	serial *scanner.Serial
	images *scanner.Images
	notify *sdnotify.Notifier
}

// New opens the gate's board and cache and builds its parts. Close the
// agent (or Run it) to release them.
func New(cfg *config.Config, opts Options) (a *Agent, err error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	a = &Agent{cfg: cfg, opts: opts, log: opts.Logger}
	// The board first: outputs safe before anything else happens.
	if a.board, err = openBoard(cfg, opts); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	if a.store, err = openStorage(cfg.Gate.Cache, opts.Now, a.log.With("part", "storage")); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	keys, err := cfg.Keyring()
	if err != nil {
		return nil, fmt.Errorf("agent: feed.trusted_keys: %w", err)
	}
	httpc, err := keysync.NewHTTPClient(keysync.TLSOptions{CAFile: cfg.Feed.CAFile, CertFile: cfg.Feed.CertFile,
		KeyFile: cfg.Feed.KeyFile, ServerName: cfg.Feed.ServerName})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.feed, err = keysync.New(keysync.Config{URL: cfg.Feed.URL, Keys: keys, Cache: a.store.Cache, Journal: a.store.Journal, GateID: cfg.Gate.ID,
		Interval: cfg.Feed.Interval, RefuseWhenStale: cfg.Feed.RefuseWhenStale, HTTP: httpc, Now: opts.Now,
		Logger: a.log.With("part", "feed")})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	policy, err := cfg.Policy()
	if err != nil {
		return nil, fmt.Errorf("agent: verify: %w", err)
	}
	a.verify, err = verify.New(verify.Config{Store: a.feed.Guard(a.store), Clock: a.feed, Policy: policy,
		TrustedAfter: version.BuildTime(), Stages: true})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	a.stats = metrics.New(metrics.Info{GateID: cfg.Gate.ID, Direction: cfg.Gate.Direction, Version: version.String()},
		metrics.Sources{
			Gate:    func() gate.Status { return a.ctrl.Status() },
			Feed:    a.feed.Status,
			Scanner: a.scannerStats,
			Cache:   a.store.Stats,
			Health:  func() error { return a.ctrl.Ping(2 * time.Second) },
		}, metrics.Options{Now: opts.Now, Logger: a.log.With("part", "metrics")})
	observe := a.stats.Observe
	if opts.Observe != nil {
		observe = func(o gate.Outcome) {
			a.stats.Observe(o)
			opts.Observe(o)
		}
	}
	a.ctrl, err = gate.New(gate.Config{Verifier: a.verify, Log: a.store.Journal, Board: a.board, Direction: cfg.Direction(),
		Timing: cfg.GateTiming(), Now: a.feed.Now, Logger: a.log.With("part", "gate"), Observe: observe})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	switch cfg.Scanner.Kind {
	case "serial":
		sc, err := cfg.SerialConfig()
		if err != nil {
			return nil, fmt.Errorf("agent: scanner: %w", err)
		}
		if a.serial, err = scanner.NewSerial(sc, scanner.Options{Logger: a.log.With("part", "scanner")}); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	case "images":
		a.images = scanner.NewImages(&scanner.DirFrames{Dir: cfg.Scanner.ImageDir},
			scanner.ImageOptions{Logger: a.log.With("part", "scanner"), RepeatWindow: cfg.Scanner.RepeatWindow, MaxText: cfg.Scanner.MaxLine})
	}
	a.notify = opts.Notifier
	if a.notify == nil {
		if a.notify, err = sdnotify.FromEnv(nil); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	return a, nil
}

func openBoard(cfg *config.Config, opts Options) (*hw.Board, error) {
	var b *hw.Board
	var err error
	switch {
	case opts.Board != nil:
		b = opts.Board
		err = b.Safe()
	case cfg.HW.Kind == "sim":
		b = hw.NewSim(opts.Stdout, nil).Board()
	default:
		b, err = hw.OpenHost(cfg.Pins())
	}
	if err != nil {
		return nil, fmt.Errorf("agent: open the gate's board: %w", err)
	}
	return b, nil
}

func (a *Agent) scannerStats() (scanner.Stats, bool) {
	if a.serial == nil {
		return scanner.Stats{}, false
	}
	return a.serial.Stats(), true
}

// Metrics is the agent's counters, health and status.
func (a *Agent) Metrics() *metrics.Metrics { return a.stats }

// Cache is the gate's key cache (for the demo and tests; the agent owns it).
func (a *Agent) Cache() *cache.Cache { return a.store.Cache }

// Journal is the gate's event log and anti-passback state (for the demo
// and tests; the agent owns it).
func (a *Agent) Journal() *cache.Journal { return a.store.Journal }

// Feed is the key feed client.
func (a *Agent) Feed() *keysync.Client { return a.feed }

// Gate is the controller.
func (a *Agent) Gate() *gate.Controller { return a.ctrl }

// Scanner is the serial scanner (nil with an image scanner).
func (a *Agent) Scanner() *scanner.Serial { return a.serial }

// Close releases the board (outputs safe) and closes the cache and the
// journal.
func (a *Agent) Close() error {
	var errs []error
	if a.board != nil {
		errs = append(errs, a.board.Close())
	}
	if a.store != nil {
		errs = append(errs, a.store.Cache.Close(), a.store.Journal.Close())
	}
	return errors.Join(errs...)
}

// Run runs the gate until ctx ends, then shuts it down in order and closes
// it: it returns nil after a clean shutdown. A controller that cannot
// start (its board cannot be driven safe) stops the agent with that error.
func (a *Agent) Run(ctx context.Context) (err error) {
	defer func() {
		if cerr := a.Close(); cerr != nil {
			a.log.Error("shutdown: could not close cleanly", "err", cerr)
			if err == nil {
				err = cerr
			}
		}
	}()
	scans := make(chan scanner.Scan)
	fctx, stopFeed := context.WithCancel(context.Background())
	sctx, stopScanner := context.WithCancel(context.Background())
	gctx, stopGate := context.WithCancel(context.Background())
	defer stopFeed()
	defer stopScanner()
	defer stopGate()

	var wg sync.WaitGroup
	gateDone := make(chan error, 1)
	go func() { gateDone <- a.ctrl.Run(gctx, scans) }()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = a.feed.Run(fctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		var err error
		if a.serial != nil {
			err = a.serial.Run(sctx, scans)
		} else {
			err = a.images.Run(sctx, scans)
		}
		if err != nil && sctx.Err() == nil {
			a.log.Error("scanner stopped", "err", err)
		}
	}()
	if a.board.Approach != nil && a.board.Trigger != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = scanner.RunTrigger(sctx, a.board.Approach, a.board.Trigger, a.cfg.Scanner.TriggerPulse, a.log.With("part", "trigger"))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.purgeLoop(fctx)
	}()
	a.serveControl(fctx, &wg)
	wctx, stopWatchdog := context.WithCancel(context.Background())
	defer stopWatchdog()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = a.notify.Watchdog(wctx, func() error { return a.ctrl.Ping(2 * time.Second) })
	}()

	var runErr error
	started := make(chan error, 1)
	go func() { started <- a.ctrl.Ping(5 * time.Second) }()
	select {
	case runErr = <-gateDone: // the controller could not even start
		gateDone <- runErr
	case err := <-started:
		if err != nil {
			runErr = fmt.Errorf("the gate controller did not start: %w", err)
			break
		}
		a.log.Info("gate in service", "gate", a.cfg.Gate.ID, "direction", a.cfg.Gate.Direction, "version", version.String())
		if err := a.notify.Ready("gate in service"); err != nil {
			a.log.Warn("could not tell systemd the gate is ready", "err", err)
		}
		select {
		case <-ctx.Done():
			a.log.Info("shutting down: locking the gate")
		case runErr = <-gateDone:
			a.log.Error("gate controller stopped: the gate is locked and out of service", "err", runErr)
			gateDone <- runErr
		}
	}
	_ = a.notify.Stopping()
	stopWatchdog()
	stopScanner() // no new scans
	stopGate()    // the controller locks the gate and turns the signals off
	if err := <-gateDone; err != nil && !errors.Is(err, context.Canceled) && runErr == nil {
		runErr = err
	}
	// Every part is stopped before Close (deferred) releases the board
	// and the cache.
	stopFeed()
	wg.Wait()
	if runErr != nil && !errors.Is(runErr, context.Canceled) {
		return fmt.Errorf("agent: %w", runErr)
	}
	return nil
}

// serveControl serves the control socket (diag, status, metrics) and, when
// configured, status and metrics on a loopback TCP address, until ctx
// ends. Neither is needed to run the gate: when one cannot be opened, the
// agent says so and runs without it.
func (a *Agent) serveControl(ctx context.Context, wg *sync.WaitGroup) {
	live := &diag.Live{Config: a.cfg, Board: a.board, Cache: a.store.Cache, Journal: a.store.Journal, Feed: a.feed, Gate: a.ctrl, Verifier: a.verify,
		Metrics: a.stats, Scanner: a.scannerStats, Now: a.opts.Now, TrustedAfter: version.BuildTime(), Logger: a.log.With("part", "control")}
	mux := http.NewServeMux()
	diagHandler := live.Handler()
	mux.Handle("/diag", diagHandler)
	mux.Handle("/diag/", diagHandler)
	mux.Handle("/", a.stats.Handler())
	serve := func(l net.Listener, h http.Handler, what string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := control.Serve(ctx, l, h, a.log); err != nil {
				a.log.Error(what+" stopped", "err", err)
			}
		}()
	}
	if l, err := control.Listen(a.cfg.Control.Socket); err != nil {
		a.log.Warn("no control socket: gateagent diag works only with the agent stopped", "err", err)
	} else {
		serve(l, mux, "control socket")
	}
	if addr := a.cfg.Control.Metrics; addr != "" {
		if l, err := net.Listen("tcp", addr); err != nil {
			a.log.Warn("no metrics listener", "addr", addr, "err", err)
		} else {
			serve(l, a.stats.Handler(), "metrics listener")
		}
	}
}

// purgeLoop deletes expired certificates and old anti-passback entries
// a minute after start and hourly after that, so the cache stays the size of the valid set.
func (a *Agent) purgeLoop(ctx context.Context) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		res, err := a.store.Purge(a.feed.Now(), purgeRetention, a.cfg.Verify.PassbackWindow)
		if err != nil {
			a.log.Warn("cache purge failed; it will be tried again in an hour", "err", err)
		} else if res.Certs+res.Passbacks > 0 {
			a.log.Info("cache purged", "certs", res.Certs, "passbacks", res.Passbacks)
		}
		t.Reset(time.Hour)
	}
}

// purgeRetention keeps expired certificates a day, longer than any exit
// grace, so an exit gate can still explain an expired code.
const purgeRetention = 24 * time.Hour

// SetupLogger builds the agent's logger from the config's log section,
// writing to w.
func SetupLogger(c config.Log, w io.Writer) *slog.Logger {
	level, err := config.ParseLevel(c.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	ho := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}
