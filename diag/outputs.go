package diag

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/internal/instance"
	"gateagent/keysync"
	"gateagent/metrics"
	"gateagent/scanner"
	"gateagent/verify"
)

// The technician's commands. Each works through the running agent when
// there is one (the agent owns the board, the port and the cache), and on
// its own otherwise.

func (c *cli) scan(ctx context.Context) int {
	var r TokenReport
	if c.daemon != nil {
		fmt.Fprintf(c.stderr, "waiting up to %s for a code at the scanner (the relay will not move)...\n", c.o.timeout)
		if err := c.call(ctx, http.MethodPost, "/diag/scan"+query("timeout", c.o.timeout.String()), nil, &r); err != nil {
			return c.fail(err)
		}
		return c.printToken(&r)
	}
	cfg, err := config.Load(c.o.config)
	if err != nil {
		return c.fail(err)
	}
	if cfg.Scanner.Kind != "serial" {
		return c.fail(errors.New("diag scan reads a serial scanner; with scanner.kind = \"images\" use diag decode on a frame"))
	}
	sc, err := cfg.SerialConfig()
	if err != nil {
		return c.fail(err)
	}
	release, err := standalone(cfg)
	if err != nil {
		return c.fail(err)
	}
	defer release()
	s, err := scanner.NewSerial(sc, scanner.Options{})
	if err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stderr, "waiting up to %s for a code at %s...\n", c.o.timeout, sc.Port)
	sctx, cancel := context.WithTimeout(ctx, c.o.timeout)
	defer cancel()
	scans := make(chan gate.Scan, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx, scans) }()
	select {
	case got := <-scans:
		cancel()
		<-done
		v, closeCache, now, err := c.localVerifier(ctx, cfg)
		if err != nil {
			return c.fail(err)
		}
		defer closeCache()
		r, _ = ExplainToken(v, got.Text, now) // a cache error is in the report
		r.Source = "scanner"
		return c.printToken(&r)
	case <-sctx.Done():
		<-done
		st := s.Stats()
		if st.LastError != "" {
			return c.fail(fmt.Errorf("no code read from %s in %s: %s", sc.Port, c.o.timeout, st.LastError))
		}
		return c.fail(fmt.Errorf("no code read from %s in %s: hold a code under the scanner; if its light does not come on, check its power and cable", sc.Port, c.o.timeout))
	}
}

func (c *cli) token(ctx context.Context, text []byte, source string) int {
	var r TokenReport
	if c.daemon != nil {
		if err := c.call(ctx, http.MethodPost, "/diag/token"+query("source", source), strings.NewReader(string(text)), &r); err != nil {
			return c.fail(err)
		}
		return c.printToken(&r)
	}
	cfg, err := config.Load(c.o.config)
	if err != nil {
		return c.fail(err)
	}
	v, closeCache, now, err := c.localVerifier(ctx, cfg)
	if err != nil {
		return c.fail(err)
	}
	defer closeCache()
	r, _ = ExplainToken(v, text, now) // a cache error is in the report
	r.Source = source
	return c.printToken(&r)
}

func (c *cli) decode(ctx context.Context, path string) int {
	text, err := readImageCode(path)
	if err != nil {
		return c.fail(err)
	}
	return c.token(ctx, []byte(text), filepath.Base(path))
}

func (c *cli) printToken(r *TokenReport) int {
	c.print(r, r.WriteText)
	return r.Status.ExitCode()
}

// localVerifier is the agent's verifier built on the cache file and the
// journal (when there is one), read only, and the gate's clock corrected
// by the issuer's when it answers.
func (c *cli) localVerifier(ctx context.Context, cfg *config.Config) (*verify.Verifier, func(), time.Time, error) {
	ca, err := cache.Open(cfg.Gate.Cache, &cache.Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	store := &cache.Store{Cache: ca}
	// Without a journal no passage is known: a token is explained
	// without anti-passback.
	if j, err := cache.OpenJournal(cache.JournalPath(cfg.Gate.Cache), &cache.Options{ReadOnly: true, LockTimeout: time.Second}); err == nil {
		store.Journal = j
	} else {
		fmt.Fprintf(c.stderr, "note: no journal (%v): anti-passback is not checked\n", oneLine(err))
	}
	closeAll := func() {
		ca.Close()
		if store.Journal != nil {
			store.Journal.Close()
		}
	}
	policy, err := cfg.Policy()
	if err != nil {
		closeAll()
		return nil, nil, time.Time{}, err
	}
	env := c.env
	env.FeedTimeout = min(env.FeedTimeout, 3*time.Second)
	now := env.Now()
	if p, err := probeFeed(ctx, cfg, env); err == nil && p.OffsetOK {
		now = now.Add(p.Offset)
	} else {
		fmt.Fprintf(c.stderr, "note: the issuer did not answer (%v): checking on the gate's own clock\n", oneLine(err))
	}
	// The agent's own guard: with refuse_when_stale, a stale cache
	// decides nothing (judged on the raw clock, as the agent does).
	keys, err := cfg.Keyring()
	if err != nil {
		closeAll()
		return nil, nil, time.Time{}, err
	}
	feedc, err := keysync.New(keysync.Config{URL: cfg.Feed.URL, Keys: keys, Cache: ca, Now: env.Now, RefuseWhenStale: cfg.Feed.RefuseWhenStale})
	if err != nil {
		closeAll()
		return nil, nil, time.Time{}, err
	}
	v, err := verify.New(verify.Config{Store: feedc.Guard(store), Clock: verify.ClockFunc(func() time.Time { return now }), Policy: policy, TrustedAfter: env.TrustedAfter})
	if err != nil {
		closeAll()
		return nil, nil, time.Time{}, err
	}
	return v, closeAll, now, nil
}

// relay and indicators: the technician's tests of the outputs.

func (c *cli) relay(ctx context.Context) int {
	return c.test(ctx, gate.TestRelay, "/diag/relay"+query("pulse", c.o.pulse.String()))
}

func (c *cli) indicators(ctx context.Context) int {
	return c.test(ctx, gate.TestIndicators, "/diag/indicators")
}

func (c *cli) test(ctx context.Context, kind gate.TestKind, path string) int {
	var res gate.TestResult
	var err error
	if kind == gate.TestRelay {
		fmt.Fprintf(c.stderr, "energising the relay for %s; have someone push through to confirm...\n", c.o.pulse)
	}
	if c.daemon != nil {
		err = c.call(ctx, http.MethodPost, path, nil, &res)
	} else {
		res, err = c.localTest(ctx, kind)
	}
	ch := judgeTest(kind, c.o.pulse, res, err)
	c.print(ch, func(w io.Writer) error {
		_, err := fmt.Fprintf(w, "%-4s  %-10s %s\n", ch.Status, ch.Name, ch.Line)
		return err
	})
	return ch.Status.ExitCode()
}

// localTest runs the test through a gate controller of its own (the agent
// stopped), so that it behaves exactly as the agent's: the same busy
// rules, the same passage confirmation, the same event in the log.
func (c *cli) localTest(ctx context.Context, kind gate.TestKind) (gate.TestResult, error) {
	cfg, err := config.Load(c.o.config)
	if err != nil {
		return gate.TestResult{}, err
	}
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
	ca, err := cache.Open(cfg.Gate.Cache, &cache.Options{ReadOnly: true, LockTimeout: time.Second})
	if errors.Is(err, cache.ErrLocked) {
		return gate.TestResult{}, errAgentRunning
	}
	if err != nil {
		return gate.TestResult{}, err
	}
	defer ca.Close()
	j, err := cache.OpenJournal(jpath, &cache.Options{LockTimeout: time.Second})
	if errors.Is(err, cache.ErrLocked) {
		return gate.TestResult{}, errAgentRunning
	}
	if err != nil {
		return gate.TestResult{}, err
	}
	defer j.Close()
	b, err := c.env.OpenBoard(cfg)
	if err != nil {
		return gate.TestResult{}, err
	}
	defer b.Close()
	policy, err := cfg.Policy()
	if err != nil {
		return gate.TestResult{}, err
	}
	v, err := verify.New(verify.Config{Store: &cache.Store{Cache: ca, Journal: j}, Clock: verify.ClockFunc(c.env.Now), Policy: policy, TrustedAfter: c.env.TrustedAfter})
	if err != nil {
		return gate.TestResult{}, err
	}
	g, err := gate.New(gate.Config{Verifier: v, Log: j, Board: b, Direction: cfg.Direction(), Timing: cfg.GateTiming(), Now: c.env.Now})
	if err != nil {
		return gate.TestResult{}, err
	}
	gctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.Run(gctx, nil) }()
	defer func() { stop(); <-done }()
	return g.Test(ctx, kind, c.o.pulse)
}

// judgeTest turns a test's result into a verdict.
func judgeTest(kind gate.TestKind, pulse time.Duration, res gate.TestResult, err error) Check {
	if kind == gate.TestIndicators {
		c := Check{Name: "indicators"}
		if err != nil {
			c.Status, c.Line = Fail, fmt.Sprintf("%v", oneLine(err))
			return c
		}
		c.Status, c.Line = Pass, "green lamp, red lamp and buzzer driven one after the other: confirm you saw and heard each; one that stayed dark or silent needs its wiring or part checked"
		return c
	}
	c := Check{Name: "relay", Facts: map[string]any{"pulse": pulse.String(), "passage_seen": res.PassageSeen}}
	switch {
	case err != nil:
		c.Status, c.Line = Fail, fmt.Sprintf("%v", oneLine(err))
	case res.PassageSeen:
		c.Status = Pass
		c.Line = fmt.Sprintf("relay energised for %s and released; the passage sensor saw someone pass %s after the pulse began: the turnstile unlocks", pulse, res.PassageAt.Sub(res.Started).Round(10*time.Millisecond))
	default:
		c.Status = Warn
		c.Line = fmt.Sprintf("relay energised for %s and released, but nobody passed within %s of it, so the passage sensor did not confirm the unlock: run it again with someone pushing through, or listen for the lock", pulse, gate.TestConfirm)
	}
	return c
}

// Reading is one sample of the gate's inputs (nil: not wired).
type Reading struct {
	At        time.Time `json:"at"`
	Passage   *bool     `json:"passage,omitempty"`
	Emergency *bool     `json:"emergency,omitempty"`
	Approach  *bool     `json:"approach,omitempty"`
	Err       string    `json:"error,omitempty"`
}

// SensorPoll is how often the inputs are sampled for the live readout.
const SensorPoll = 20 * time.Millisecond

// WatchInputs samples b's inputs every SensorPoll for d and calls emit
// with the first reading and each that differs from the one before. It
// reads levels only: the agent's own watchers are not disturbed.
func WatchInputs(ctx context.Context, b *hw.Board, d time.Duration, now func() time.Time, emit func(Reading) error) error {
	read := func(in hw.Input, errs *[]string) *bool {
		if in == nil {
			return nil
		}
		v, err := in.Active()
		if err != nil {
			*errs = append(*errs, in.Name()+": "+err.Error())
			return nil
		}
		return &v
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(SensorPoll)
	defer t.Stop()
	var last Reading
	for first := true; ; first = false {
		var errs []string
		r := Reading{At: now(), Passage: read(b.Passage, &errs), Emergency: read(b.Emergency, &errs), Approach: read(b.Approach, &errs)}
		r.Err = strings.Join(errs, "; ")
		if first || !sameLevels(r, last) {
			if err := emit(r); err != nil {
				return err
			}
			last = r
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func sameLevels(a, b Reading) bool {
	eq := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.Passage, b.Passage) && eq(a.Emergency, b.Emergency) && eq(a.Approach, b.Approach) && a.Err == b.Err
}

func (r Reading) text() string {
	f := func(name string, v *bool, on, off string) string {
		switch {
		case v == nil:
			return name + "=-"
		case *v:
			return name + "=" + on
		}
		return name + "=" + off
	}
	s := fmt.Sprintf("%s  %s  %s  %s", r.At.Format("15:04:05.000"), f("passage", r.Passage, "OCCUPIED", "clear"),
		f("emergency", r.Emergency, "ENGAGED", "released"), f("approach", r.Approach, "someone", "nobody"))
	if r.Err != "" {
		s += "  error: " + r.Err
	}
	return s
}

func (c *cli) sensors(ctx context.Context) int {
	d := time.Duration(c.o.seconds) * time.Second
	worst := Pass
	emit := func(r Reading) error {
		if r.Err != "" {
			worst = Fail
		}
		if c.o.json {
			return json.NewEncoder(c.stdout).Encode(r)
		}
		_, err := fmt.Fprintln(c.stdout, r.text())
		return err
	}
	if !c.o.json {
		fmt.Fprintf(c.stderr, "watching the inputs for %s; each change is printed...\n", d)
	}
	if c.daemon != nil {
		resp, err := c.daemon.Do(ctx, http.MethodGet, "/diag/sensors"+query("seconds", fmt.Sprint(c.o.seconds)), nil)
		if err != nil {
			return c.fail(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			return c.fail(&agentError{resp.StatusCode, strings.TrimSpace(string(msg))})
		}
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			var r Reading
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				return c.fail(fmt.Errorf("reading the agent's answer: %w", err))
			}
			emit(r)
		}
		return worst.ExitCode()
	}
	cfg, err := config.Load(c.o.config)
	if err != nil {
		return c.fail(err)
	}
	release, err := standalone(cfg)
	if err != nil {
		return c.fail(err)
	}
	defer release()
	b, err := c.env.OpenBoard(cfg)
	if err != nil {
		return c.fail(err)
	}
	defer b.Close()
	if err := WatchInputs(ctx, b, d, c.env.Now, emit); err != nil {
		return c.fail(err)
	}
	return worst.ExitCode()
}

func (c *cli) latency(ctx context.Context) int {
	if c.daemon == nil {
		ch := Check{Name: NameLatency, Status: Skip, Line: "no figures: the agent keeps them in memory while it runs, and it is not running"}
		c.print(ch, func(w io.Writer) error { _, err := fmt.Fprintf(w, "%s  %s\n", ch.Status, ch.Line); return err })
		return 0
	}
	var lat []metrics.StageLatency
	if err := c.call(ctx, http.MethodGet, "/diag/latency", nil, &lat); err != nil {
		return c.fail(err)
	}
	ch := judgeLatency(lat, true)
	c.print(struct {
		Check  Check                  `json:"check"`
		Stages []metrics.StageLatency `json:"stages"`
	}{ch, lat}, func(w io.Writer) error { return writeHistogram(w, ch, lat) })
	return ch.Status.ExitCode()
}
