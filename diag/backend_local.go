package diag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/gate"
	"gateagent/internal/instance"
	"gateagent/internal/regfile"
	"gateagent/keysync"
	"gateagent/metrics"
	"gateagent/scanner"
	"gateagent/verify"
)

// localBackend works on the gate itself, with its agent stopped: it reads
// the config (loaded once, by the command), the cache and the journal
// read-only, opens the board (every output off, as the agent does at
// start) and the scanner's port, and asks the issuer. It never works
// beside a running agent (see claim).
type localBackend struct {
	path  string         // the config file
	cfg   *config.Config // nil when it does not load
	err   error          // why it does not load
	env   Env
	notes io.Writer // what the technician should know, beside the result
}

func (l *localBackend) mode() string { return "standalone" }

func (l *localBackend) report(ctx context.Context, deep bool) (*Report, error) {
	return standaloneReport(ctx, l.path, l.cfg, l.err, l.env), nil
}

func (l *localBackend) clock(ctx context.Context) (Check, error) {
	if l.err != nil {
		return Check{}, l.err
	}
	return standaloneClockCheck(ctx, l.cfg, l.env), nil
}

func (l *localBackend) wear(ctx context.Context) (Check, error) {
	if l.err != nil {
		return Check{}, l.err
	}
	release, err := claim(l.cfg)
	if err != nil {
		return Check{}, err
	}
	defer release()
	return standaloneWearCheck(l.cfg, l.env), nil
}

func (l *localBackend) scan(ctx context.Context, timeout time.Duration) (TokenReport, error) {
	if l.err != nil {
		return TokenReport{}, l.err
	}
	cfg := l.cfg
	if cfg.Scanner.Kind != "serial" {
		return TokenReport{}, errors.New("diag scan reads a serial scanner; with scanner.kind = \"images\" use diag decode on a frame")
	}
	sc, err := cfg.SerialConfig()
	if err != nil {
		return TokenReport{}, err
	}
	release, err := claim(cfg)
	if err != nil {
		return TokenReport{}, err
	}
	defer release()
	s, err := scanner.NewSerial(sc, scanner.Options{})
	if err != nil {
		return TokenReport{}, err
	}
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	scans := make(chan gate.Scan, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx, scans) }()
	select {
	case got := <-scans:
		cancel()
		<-done
		r, err := l.token(ctx, got.Text, "scanner")
		return r, err
	case <-sctx.Done():
		<-done
		if st := s.Stats(); st.LastError != "" {
			return TokenReport{}, fmt.Errorf("no code read from %s in %s: %s", sc.Port, timeout, st.LastError)
		}
		return TokenReport{}, fmt.Errorf("no code read from %s in %s: hold a code under the scanner; if its light does not come on, check its power and cable", sc.Port, timeout)
	}
}

func (l *localBackend) token(ctx context.Context, text []byte, source string) (TokenReport, error) {
	if l.err != nil {
		return TokenReport{}, l.err
	}
	v, closeAll, now, err := l.verifier(ctx)
	if err != nil {
		return TokenReport{}, err
	}
	defer closeAll()
	r, _ := ExplainToken(v, text, now) // a cache error is in the report
	r.Source = source
	return r, nil
}

// verifier is the agent's verifier built on the cache file and the
// journal (when there is one), read only, and the gate's clock corrected
// by the issuer's when it answers.
func (l *localBackend) verifier(ctx context.Context) (*verify.Verifier, func(), time.Time, error) {
	cfg := l.cfg
	keys, err := cfg.LoadKeys()
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	ro := &cache.Options{ReadOnly: true, LockTimeout: time.Second, Key: keys.Cache}
	ca, err := cache.Open(cfg.Gate.Cache, ro)
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	store := &cache.Store{Cache: ca}
	// Without a journal no passage is known: a token is explained
	// without anti-passback.
	if j, err := cache.OpenJournal(cache.JournalPath(cfg.Gate.Cache), ro); err == nil {
		store.Journal = j
	} else {
		fmt.Fprintf(l.notes, "note: no journal (%v): anti-passback is not checked\n", oneLine(err))
	}
	closeAll := func() {
		ca.Close()
		if store.Journal != nil {
			store.Journal.Close()
		}
	}
	fail := func(err error) (*verify.Verifier, func(), time.Time, error) {
		closeAll()
		return nil, nil, time.Time{}, err
	}
	policy, err := cfg.Policy()
	if err != nil {
		return fail(err)
	}
	env := l.env
	env.FeedTimeout = min(env.FeedTimeout, 3*time.Second)
	now := env.Now()
	if p, err := probeFeed(ctx, cfg, env); err == nil && p.OffsetOK {
		now = now.Add(p.Offset)
	} else {
		fmt.Fprintf(l.notes, "note: the issuer did not answer (%v): checking on the gate's own clock\n", oneLine(err))
	}
	// The agent's own guard: with refuse_when_stale, a stale cache
	// decides nothing (judged on the raw clock, as the agent does).
	trusted, err := cfg.Keyring()
	if err != nil {
		return fail(err)
	}
	feedc, err := keysync.New(keysync.Config{URL: cfg.Feed.URL, Keys: trusted, Cache: ca, Now: env.Now, RefuseWhenStale: cfg.Feed.RefuseWhenStale})
	if err != nil {
		return fail(err)
	}
	v, err := verify.New(verify.Config{Store: feedc.Guard(store), Clock: verify.ClockFunc(func() time.Time { return now }), Policy: policy, TrustedAfter: env.TrustedAfter})
	if err != nil {
		return fail(err)
	}
	return v, closeAll, now, nil
}

// test runs the test through a gate controller of its own, so that it
// behaves exactly as the agent's: the same busy rules, the same passage
// confirmation, the same event in the log.
func (l *localBackend) test(ctx context.Context, kind gate.TestKind, pulse time.Duration) (gate.TestResult, error) {
	if l.err != nil {
		return gate.TestResult{}, l.err
	}
	cfg := l.cfg
	// The files first: the test is recorded in the journal's event log.
	// diag never creates them (a file made by root would keep the agent
	// out).
	jpath := cache.JournalPath(cfg.Gate.Cache)
	for _, p := range []string{cfg.Gate.Cache, jpath} {
		if _, err := os.Stat(p); err != nil {
			return gate.TestResult{}, fmt.Errorf("no cache file (%w): the test is recorded in the journal beside the cache, which the agent creates at its first start; start the agent once, then test through it", err)
		}
	}
	// The gate's lock, as the agent takes it: no agent drives the board
	// meanwhile, and none starts until the test is done.
	lock, err := instance.Acquire(cfg.LockFile())
	if errors.Is(err, instance.ErrHeld) {
		return gate.TestResult{}, errAgentRunning
	}
	if err != nil {
		return gate.TestResult{}, err
	}
	defer lock.Release()
	keys, err := cfg.LoadKeys()
	if err != nil {
		return gate.TestResult{}, err
	}
	ca, err := cache.Open(cfg.Gate.Cache, &cache.Options{ReadOnly: true, LockTimeout: time.Second, Key: keys.Cache})
	if errors.Is(err, cache.ErrLocked) {
		return gate.TestResult{}, errAgentRunning
	}
	if err != nil {
		return gate.TestResult{}, err
	}
	defer ca.Close()
	j, err := cache.OpenJournal(jpath, &cache.Options{LockTimeout: time.Second, Key: keys.Cache})
	if errors.Is(err, cache.ErrLocked) {
		return gate.TestResult{}, errAgentRunning
	}
	if err != nil {
		return gate.TestResult{}, err
	}
	defer j.Close()
	b, err := l.env.OpenBoard(cfg)
	if err != nil {
		return gate.TestResult{}, err
	}
	defer b.Close()
	policy, err := cfg.Policy()
	if err != nil {
		return gate.TestResult{}, err
	}
	v, err := verify.New(verify.Config{Store: &cache.Store{Cache: ca, Journal: j}, Clock: verify.ClockFunc(l.env.Now), Policy: policy, TrustedAfter: l.env.TrustedAfter})
	if err != nil {
		return gate.TestResult{}, err
	}
	g, err := gate.New(gate.Config{Verifier: v, Log: j, Board: b, Direction: cfg.Direction(), Timing: cfg.GateTiming(), Now: l.env.Now})
	if err != nil {
		return gate.TestResult{}, err
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx, nil) }()
	defer func() { stop(); <-done }()
	return g.Test(ctx, kind, pulse)
}

func (l *localBackend) sensors(ctx context.Context, d time.Duration, emit func(Reading) error) error {
	if l.err != nil {
		return l.err
	}
	release, err := claim(l.cfg)
	if err != nil {
		return err
	}
	defer release()
	b, err := l.env.OpenBoard(l.cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	return WatchInputs(ctx, b, d, l.env.Now, emit)
}

func (l *localBackend) latency(context.Context) ([]metrics.StageLatency, error) {
	return nil, errNotRunning
}

// errAgentRunning: diag found no control socket, but an agent holds the
// gate: it must not drive the board or open the port beside it.
var errAgentRunning = errors.New("an agent is running (it holds the gate's lock) but its control socket does not answer: diag will not open the board or the scanner beside it; check control.socket in the config and journalctl -u gateagent, or stop the agent (systemctl stop gateagent) to run diag on its own")

// claim claims the gate for diag working on its own: it shares the gate's
// single-instance lock, and holds a shared lock on the cache file, for as
// long as diag runs, so that it never opens the board or the scanner's
// port while an agent runs (the agent holds both exclusively, the
// instance lock from before it touches the board), and an agent starting
// meanwhile waits for diag. No cache file: no agent has ever run here.
func claim(cfg *config.Config) (release func(), err error) {
	l, err := instance.Share(cfg.LockFile())
	if errors.Is(err, instance.ErrHeld) {
		return nil, errAgentRunning
	}
	if err != nil {
		return nil, err
	}
	path := cfg.Gate.Cache
	f, _, err := regfile.Open(path) // a FIFO in its place must not block
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return func() { l.Release() }, nil
	case errors.Is(err, fs.ErrPermission):
		err = fmt.Errorf("cache %s: permission denied: with the agent stopped, diag opens the board, the port and the cache itself: run it as root (sudo gateagent diag)", path)
	case err != nil:
		err = fmt.Errorf("cache %s: %w", path, err)
	default:
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = errAgentRunning
		} else if err != nil {
			err = fmt.Errorf("cache %s: lock: %w", path, err)
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		l.Release()
		return nil, err
	}
	return func() { f.Close(); l.Release() }, nil
}
