// Package agent wires one gate together from its config: the board, the
// key cache, the key feed client, the station peers, the verifier, the
// scanner and the gate controller. `gateagent run` and the demo
// (cmd/gatedemo) both run it.
//
// Start-up order matters: the board is opened first, so every output is at
// its safe level before anything else happens; then the cache, the feed
// client and the station node, whose peers' state is pulled before the
// scanner opens; then the scanner. Shutdown (the context ending) stops the
// scanner and the feed, lets the controller lock the gate, drives every
// output off, leaves the station group, and closes the cache last.
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/memberlist"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/control"
	"gateagent/diag"
	"gateagent/gate"
	"gateagent/health"
	"gateagent/hw"
	"gateagent/hw/gpiohw"
	"gateagent/internal/fsaccess"
	"gateagent/internal/instance"
	"gateagent/internal/kclock"
	"gateagent/internal/logging"
	"gateagent/internal/lowprio"
	"gateagent/internal/sdnotify"
	"gateagent/internal/version"
	"gateagent/keysync"
	"gateagent/metrics"
	"gateagent/scanner"
	"gateagent/station"
	"gateagent/verify"
	"gateagent/wear"
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
	// ClockState says whether the kernel clock is synchronised (diag's
	// clock check); default kclock.Read (adjtimex).
	ClockState kclock.Reader
	// StationTransport, when set, carries the station peers' traffic
	// instead of UDP and TCP on station.bind (tests: a link that can be
	// cut).
	StationTransport memberlist.NodeAwareTransport
	// Wear, when set, measures the agent's writes instead of a meter on
	// /proc/self/io and Now, started after the files open (tests: a meter
	// on a clock they move).
	Wear *wear.Meter
	// JournalSegment is the size of the journal's log segments; 0: the
	// default (cache.Options.JournalSegment). Tests make it small.
	JournalSegment int64
	// DeltaSegment is the size of the cache's delta log segments; 0: the
	// default (cache.Options.DeltaSegment). Tests make it small.
	DeltaSegment int64
}

// Agent is one running gate.
type Agent struct {
	lock   *instance.Lock
	sim    *hw.Sim // the simulated board, with hw.kind = "sim"
	cfg    *config.Config
	opts   Options
	log    *slog.Logger
	board  *hw.Board
	keys   *config.LoadedKeys
	store  *cache.Store // the key cache and the journal
	heal   *healer
	feed   *keysync.Client
	ctrl   *gate.Controller
	verify *verify.Verifier
	stats  *metrics.Metrics
	serial *scanner.Serial
	images *scanner.Images
	notify *sdnotify.Notifier
	// station is the gate's station peer node; nil without a group.
	station *station.Node
	wear    *wearWatch
}

// New takes the gate's lock, opens its board and cache and builds its
// parts. Close the agent (or Run it) to release them. A step that fails
// releases what the steps before it opened, in reverse order, and returns
// a *StartError naming the step; the board's outputs are off either way.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ClockState == nil {
		opts.ClockState = kclock.Read
	}
	a := &Agent{cfg: cfg, opts: opts, log: opts.Logger}
	if err := a.open(); err != nil {
		if cerr := a.Close(); cerr != nil {
			a.log.Error("start-up: could not release what was opened", "err", cerr)
		}
		return nil, err
	}
	return a, nil
}

// open runs the start-up steps in order.
func (a *Agent) open() (err error) {
	cfg, opts := a.cfg, a.opts
	step := func(name, key string, err error) error {
		if err == nil {
			return nil
		}
		return &StartError{Step: name, Key: key, Err: err}
	}
	// One agent per gate: the lock comes before anything touches the
	// board, the scanner port or the cache.
	if a.lock, err = instance.Acquire(cfg.LockFile()); err != nil {
		return step("lock", "gate.cache", err)
	}
	// The board next: outputs safe before anything else happens.
	if a.board, a.sim, err = openBoard(cfg, opts); err != nil {
		return step("board", "hw", err)
	}
	// The keys: the files open only under the cache key, and the feed's
	// pages only with a fleet key.
	if a.keys, err = cfg.LoadKeys(); err != nil {
		key := "keys"
		var ke *config.KeyError
		if errors.As(err, &ke) {
			key = ke.Field
		}
		return step("keys", key, err)
	}
	if a.keys.Sealed() {
		a.log.Info("keys loaded, sealed", "cache_key", a.keys.CacheFrom.String(), "fleet_keys", len(a.keys.FleetFrom))
	} else {
		a.log.Warn("keys loaded, but not all sealed: a key file in the clear on the disk gives whoever copies the SD card the cache's keys; seal them with systemd-creds (docs/install.md: The keys)",
			"cache_key", a.keys.CacheFrom.String(), "fleet_keys", len(a.keys.FleetFrom))
	}
	if a.store, err = openStorage(cfg.Gate.Cache, &cache.Options{Key: a.keys.Cache, JournalSegment: opts.JournalSegment, DeltaSegment: opts.DeltaSegment}, opts.Now, a.log.With("part", "storage")); err != nil {
		key := "gate.cache"
		if errors.Is(err, cache.ErrWrongKey) {
			key = "keys.cache_key"
		}
		return step("cache", key, err)
	}
	keys, err := cfg.Keyring()
	if err != nil {
		return step("feed", "feed.trusted_keys", err)
	}
	httpc, err := keysync.NewHTTPClient(cfg.TLSOptions())
	if err != nil {
		return step("feed", tlsKey(err), err)
	}
	a.feed, err = keysync.New(keysync.Config{URL: cfg.Feed.URL, Keys: keys, Fleet: a.keys.Fleet, Cache: a.store.Cache, Journal: a.store.Journal, GateID: cfg.Gate.ID,
		Interval: cfg.Feed.Interval, RefuseWhenStale: cfg.Feed.RefuseWhenStale, HTTP: httpc, Now: opts.Now,
		Logger: a.log.With("part", "feed")})
	if err != nil {
		return step("feed", "feed", err)
	}
	meter := opts.Wear
	if meter == nil {
		// From here: the files' check and any rebuild at open are not
		// a day's writing.
		meter = wear.NewMeter(wear.ReadSelf, opts.Now)
	}
	a.wear = &wearWatch{meter: meter, device: cfg.Device(), store: a.store, now: a.feed.Now}
	policy, err := cfg.Policy()
	if err != nil {
		return step("verify", "verify", err)
	}
	a.heal = newHealer(a.log.With("part", "integrity"), a.store.Cache, a.store.Journal, a.feed, a.feed.Now)
	if err := a.openStation(); err != nil {
		return err
	}
	var store verify.Store = a.feed.Guard(a.heal.Store(a.store))
	if a.station != nil {
		store = peerStore{Store: store, peers: a.station}
	}
	a.verify, err = verify.New(verify.Config{Store: store, Clock: a.feed, Policy: policy,
		TrustedAfter: version.BuildTime(), Stages: true})
	if err != nil {
		return step("verify", "verify", err)
	}
	a.stats = metrics.New(metrics.Info{GateID: cfg.Gate.ID, Direction: cfg.Gate.Direction, Version: version.String()},
		metrics.Sources{
			Gate:    func() gate.Status { return a.ctrl.Status() },
			Feed:    a.feed.Status,
			Scanner: a.scannerStats,
			Cache:   a.store.Stats,
			Ready:   a.Readiness,
			Station: a.stationStatus(),
			Wear:    a.wear.Report,
		}, metrics.Options{Now: opts.Now, Logger: a.log.With("part", "metrics")})
	observe := a.stats.Observe
	if opts.Observe != nil {
		observe = func(o gate.Outcome) {
			a.stats.Observe(o)
			opts.Observe(o)
		}
	}
	gc := gate.Config{Verifier: a.verify, Log: a.store.Journal, Board: a.board, Direction: cfg.Direction(),
		Timing: cfg.GateTiming(), Now: a.feed.Now, Logger: a.log.With("part", "gate"), Observe: observe,
		Foreground: a.store.Cache.Foreground}
	if a.station != nil {
		gc.Peers = a.station
	}
	a.ctrl, err = gate.New(gc)
	if err != nil {
		return step("gate", "timing", err)
	}
	switch cfg.Scanner.Kind {
	case "serial":
		sc, err := cfg.SerialConfig()
		if err != nil {
			return step("scanner", "scanner", err)
		}
		if a.serial, err = scanner.NewSerial(sc, scanner.Options{Logger: a.log.With("part", "scanner"), Arriving: a.store.Cache.Foreground}); err != nil {
			return step("scanner", "scanner", err)
		}
	case "images":
		a.images = scanner.NewImages(&scanner.DirFrames{Dir: cfg.Scanner.ImageDir},
			scanner.ImageOptions{Logger: a.log.With("part", "scanner"), RepeatWindow: cfg.Scanner.RepeatWindow, MaxText: cfg.Scanner.MaxLine})
	}
	a.notify = opts.Notifier
	if a.notify == nil {
		if a.notify, err = sdnotify.FromEnv(nil); err != nil {
			return step("systemd", "", err)
		}
	}
	return nil
}

// tlsKey is the config key of the TLS file a keysync.FileError names.
func tlsKey(err error) string {
	var fe *keysync.FileError
	if !errors.As(err, &fe) {
		return "feed"
	}
	switch fe.Field {
	case keysync.FieldCA:
		return "feed.ca_file"
	case keysync.FieldCert:
		return "feed.cert_file"
	case keysync.FieldKey:
		return "feed.key_file"
	}
	return "feed"
}

// openBoard opens the gate's board; with hw.kind = "sim" it also returns
// the simulated board, whose inputs the control socket sets.
func openBoard(cfg *config.Config, opts Options) (*hw.Board, *hw.Sim, error) {
	var (
		b   *hw.Board
		sim *hw.Sim
		err error
	)
	switch {
	case opts.Board != nil:
		b = opts.Board
		err = b.Safe()
	case cfg.HW.Kind == "sim":
		sim = hw.NewSim(opts.Stdout, nil)
		b = sim.Board()
	default:
		b, err = gpiohw.OpenHost(cfg.Pins())
	}
	if err != nil {
		return nil, nil, fmt.Errorf("agent: open the gate's board: %w", err)
	}
	return b, sim, nil
}

func (a *Agent) scannerStats() (scanner.Stats, bool) {
	if a.serial == nil {
		return scanner.Stats{}, false
	}
	return a.serial.Stats(), true
}

// Readiness says whether the gate can grant a valid code now, and if not,
// why: /healthz, /status, diag and the agent's own "in service" log lines
// all read it.
func (a *Agent) Readiness() health.Readiness {
	g, f := a.ctrl.Status(), a.feed.Status()
	p := health.Parts{Gate: &g, Ping: a.ctrl.Ping(2 * time.Second), Feed: &f, Now: a.feed.Now(), TrustedAfter: version.BuildTime()}
	// A port that failed to open or was lost (not one still opening at
	// start) reads no code: the gate cannot grant.
	if st, ok := a.scannerStats(); ok && !st.Connected && st.LastError != "" {
		p.Scanner = errors.New(st.LastError)
	}
	// A file system remounted read-only (a failing SD card) takes no
	// write, not even through the file bbolt holds open.
	if ro, err := fsaccess.ReadOnly(a.store.Cache.Path()); err == nil && ro {
		p.Cache = &fs.PathError{Op: "write", Path: filepath.Dir(a.store.Cache.Path()), Err: syscall.EROFS}
	}
	return health.Judge(p)
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

// Keys are the gate's keys and where they came from.
func (a *Agent) Keys() *config.LoadedKeys { return a.keys }

// Damaged lists the records that failed authentication: healing, or
// healed within the hour.
func (a *Agent) Damaged() []diag.DamagedRecord { return a.heal.Damaged() }

// Gate is the controller.
func (a *Agent) Gate() *gate.Controller { return a.ctrl }

// Scanner is the serial scanner (nil with an image scanner).
func (a *Agent) Scanner() *scanner.Serial { return a.serial }

// Close releases what the agent opened, in the reverse order of start-up:
// it closes the cache and the journal, releases the board (outputs safe),
// and lets another agent take the gate. It is safe on an agent whose
// start-up stopped part way.
func (a *Agent) Close() error {
	var errs []error
	if a.station != nil { // before the files: it records double uses found until it stops
		errs = append(errs, a.station.Close())
	}
	if a.store != nil {
		errs = append(errs, a.store.Cache.Close(), a.store.Journal.Close())
	}
	if a.board != nil {
		errs = append(errs, a.board.Close())
	}
	errs = append(errs, a.lock.Release())
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
	scans := make(chan gate.Scan)
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
		a.background()
		_ = a.feed.Run(fctx)
	}()
	// With station peers, their state before the first scan (or the word
	// that there is none, after station.join_timeout): a gate that checks
	// codes knows what its peers know.
	a.awaitStation(ctx)
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
		a.background()
		a.purgeLoop(fctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.heal.run(fctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.background()
		a.wear.run(fctx, wear.DefaultEvery)
	}()
	a.serveControl(fctx, &wg)
	wctx, stopWatchdog := context.WithCancel(context.Background())
	defer stopWatchdog()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = a.notify.Watchdog(wctx, func() error { return a.ctrl.Ping(2 * time.Second) })
	}()

	// Not in wg: a check still running at shutdown ends when Close
	// closes the cache.
	damaged := make(chan error, 1)
	go func() {
		if err := a.watchCheck(); err != nil {
			damaged <- err
		}
	}()

	var runErr error
	started := make(chan error, 1)
	go func() { started <- a.ctrl.Ping(5 * time.Second) }()
	select {
	case runErr = <-damaged:
	case runErr = <-gateDone: // the controller could not even start
		gateDone <- runErr
	case err := <-started:
		if err != nil {
			runErr = fmt.Errorf("the gate controller did not start: %w", err)
			break
		}
		if a.serial != nil {
			// The first verdict knows whether the scanner's port opened
			// (its first try is at once; a second at most).
			select {
			case <-a.serial.Tried():
			case <-time.After(time.Second):
			case <-ctx.Done():
			}
		}
		ready := a.Readiness()
		a.logReadiness(ready)
		if err := a.notify.Ready(serviceStatus(ready)); err != nil {
			a.log.Warn("could not tell systemd the gate is ready", "err", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.watchReadiness(wctx, ready)
		}()
		select {
		case <-ctx.Done():
			a.log.Info("shutting down: locking the gate")
		case runErr = <-gateDone:
			a.log.Error("gate controller stopped: the gate is locked and out of service", "err", runErr)
			gateDone <- runErr
		case runErr = <-damaged:
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

// readinessEvery is how often the agent looks again at whether the gate can
// grant, to log and tell systemd when that changes.
const readinessEvery = time.Second

// watchReadiness logs (and tells systemd) each change of whether the gate
// can grant, from last, until ctx ends.
func (a *Agent) watchReadiness(ctx context.Context, last health.Readiness) {
	t := time.NewTicker(readinessEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r := a.Readiness()
		if r.Same(last) {
			continue
		}
		a.logReadiness(r)
		if err := a.notify.Status(serviceStatus(r)); err != nil {
			a.log.Debug("could not tell systemd the gate's status", "err", err)
		}
		last = r
	}
}

// logReadiness logs the gate's verdict r: "gate in service" only when it
// can grant. A gate that has never synced waits for its first key sync,
// which is not a fault of its own.
func (a *Agent) logReadiness(r health.Readiness) {
	switch {
	case r.OK():
		a.log.Info("gate in service", "gate", a.cfg.Gate.ID, "direction", a.cfg.Gate.Direction, "version", version.String())
	case len(r.Problems) == 1 && r.Has(health.NeverSynced):
		a.log.Warn("gate not in service yet: waiting for the first key sync; every code is refused until the gate knows the certificates", "feed", a.cfg.Feed.URL)
	default:
		a.log.Error("gate out of service: every code is refused; run gateagent diag", "why", r.Why())
	}
}

// serviceStatus is the line systemd shows for the gate's verdict.
func serviceStatus(r health.Readiness) string {
	switch {
	case r.OK():
		return "gate in service"
	case len(r.Problems) == 1 && r.Has(health.NeverSynced):
		return "waiting for the first key sync"
	}
	return "gate " + r.Summary()
}

// serveControl serves the control socket (diag, status, metrics) and, when
// configured, status and metrics on a loopback TCP address, until ctx
// ends. Neither is needed to run the gate: when one cannot be opened, the
// agent says so and runs without it.
func (a *Agent) serveControl(ctx context.Context, wg *sync.WaitGroup) {
	live := &diag.Live{Config: a.cfg, Board: a.board, Cache: a.store.Cache, Journal: a.store.Journal, Feed: a.feed, Gate: a.ctrl, Verifier: a.verify,
		Metrics: a.stats, Scanner: a.scannerStats, Station: a.station, Ready: a.Readiness, ClockState: a.opts.ClockState, Now: a.opts.Now,
		Keys: a.keys, Damaged: a.heal.Damaged, Wear: a.wear.Fresh,
		TrustedAfter: version.BuildTime(), Logger: a.log.With("part", "control")}
	mux := http.NewServeMux()
	diagHandler := live.Handler()
	mux.Handle("/diag", diagHandler)
	mux.Handle("/diag/", diagHandler)
	mux.Handle("/sim/", a.simHandler())
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

// purgeLoop runs the cache's maintenance (the delta written as a run
// every window, expired runs deleted) and deletes old anti-passback
// entries, a minute after start and hourly after that, so the cache stays
// near the size of the valid set.
func (a *Agent) purgeLoop(ctx context.Context) {
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		at := a.feed.Now()
		if at.Before(version.BuildTime()) {
			// The verifier's CLOCK_UNTRUSTED rule: expiries cannot be
			// judged on this clock, and the maintenance deletes by them.
			a.log.Warn("cache maintenance skipped: the gate's clock is before this build's date; it is tried again in an hour", "clock", at)
			t.Reset(time.Hour)
			continue
		}
		res, err := a.store.Purge(at, PurgeRetention(a.cfg.Verify.ExitGrace), a.cfg.Verify.PassbackWindow)
		a.wear.purged(at, res.Certs, err)
		if err != nil {
			a.log.Warn("cache purge failed; it will be tried again in an hour", "err", err)
		} else if res.Certs+res.Passbacks > 0 {
			a.log.Info("cache purged", "certs", res.Certs, "passbacks", res.Passbacks)
		}
		t.Reset(time.Hour)
	}
}

// background puts the calling goroutine, one of the agent's background
// loops (the key feed, the maintenance, the wear report), below the gate
// in the kernel's scheduling (lowprio): its writes into the cache already
// wait for the gate's decisions (cache.Foreground); this keeps its work
// off the core a decision needs.
func (a *Agent) background() {
	if err := lowprio.Lower(); err != nil {
		a.log.Warn("background work runs at the gate's priority: a scan may wait for it", "err", err)
	}
}

// PurgeRetention is how long the gate keeps a certificate after it
// expires: an hour longer than the exit grace, at least 6 hours, so an
// exit gate still explains an expired code (EXPIRED, not UNKNOWN_CERT).
// The certificates' runs are deleted whole once every certificate in them
// expired this long ago (cache.Purge): the shorter it is, the nearer the
// files stay to the live certificates (docs/flash.md §4).
func PurgeRetention(exitGrace time.Duration) time.Duration {
	return max(6*time.Hour, exitGrace+time.Hour)
}

// SetupLogger builds the agent's logger from the config's log section,
// writing to w: each attribute key once, and, when w is the stream systemd
// connected to its journal (JOURNAL_STREAM), each line with its syslog
// priority and without a timestamp of its own.
func SetupLogger(c config.Log, w io.Writer) *slog.Logger {
	level, err := config.ParseLevel(c.Level)
	if err != nil {
		level = slog.LevelInfo
	}
	return logging.New(w, logging.Options{Level: level, JSON: c.Format == "json", Journal: logging.JournalStream(w)})
}
