// Package gate is the gate controller: for each scan it checks the token,
// then opens the turnstile for a valid one or tells the passenger why not,
// watches the passage sensor and the emergency input, and records every
// decision in the gate's event log.
//
// Everything happens on one goroutine (Run), one scan at a time: a scan
// that arrives while a passenger is passing, while the emergency input
// holds the gate open, or during a technician's test, is reported (logged,
// an Ignored outcome) and not checked, never queued.
//
// The relay moves on four paths only, all on Run's goroutine: a granted
// token (after its event is durably recorded), the emergency input, a
// technician's explicit test (Test, for gateagent diag relay: recorded in
// the event log, and only while the gate is idle), and Run's exit, which
// locks it. Nothing else drives it.
//
// For gateagent diag, Test exercises the outputs of the running gate and
// NextScan hands the next scan to a technician instead of checking it.
// Checked scans report how long each stage took (Outcome.Stages), from the
// scanner's first byte to the relay.
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jonboulle/clockwork"

	"gateagent/event"
	"gateagent/hw"
	"gateagent/internal/logging"
	"gateagent/internal/plural"
	"gateagent/verify"
)

// Verifier checks one token.
type Verifier interface {
	Verify(token []byte) (verify.Decision, error)
}

// Log is the gate's durable event log (the journal, cache.Journal).
type Log interface {
	AppendEvent(e event.Event) (uint64, error)
	// RecordPassage writes the anti-passback state and the passage event
	// in one transaction.
	RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error)
}

// Peers are the station's other gates (package station's Node), told of
// each grant, lapse and passage so that they refuse the same certificate
// while the grant stands or within the anti-passback window. Every method
// returns at once (the node queues the report and sends it on its own
// goroutine): the controller never waits for the network. Hold is called
// once the grant is durable and the relay set, so it adds nothing to the
// scan-to-relay time.
type Peers interface {
	// Hold: this gate granted id at at; the grant stands until until
	// unless it lapses or its passenger passes first.
	Hold(id verify.CertID, dir verify.Direction, at, until time.Time)
	// Release: the grant lapsed unused at at (or the gate locked).
	Release(id verify.CertID, dir verify.Direction, at time.Time)
	// Passed: the granted passenger walked through at at.
	Passed(id verify.CertID, dir verify.Direction, at time.Time)
	// Isolated reports that none of the station's other gates can be
	// reached: events recorded meanwhile say so (IsolatedNote).
	Isolated() bool
}

// IsolatedNote ends the detail of every event recorded while the gate is
// isolated from its station peers: its anti-passback then knows only what
// this gate saw.
const IsolatedNote = "isolated: no station peer reachable"

// Timing says how long the gate holds each state.
type Timing struct {
	// Pulse is how long the relay stays energised after a grant, for
	// turnstiles that latch one passage from a pulse. 0 holds it until
	// the passenger has passed or PassTimeout (flap and swing gates).
	Pulse time.Duration
	// PassTimeout is how long a granted passenger has to enter the
	// passage; then the grant lapses and the gate locks. Default 8 s.
	PassTimeout time.Duration
	// PassMax is how long the passage sensor may stay active before the
	// gate locks anyway and raises an alarm (someone standing in the
	// passage, or a faulty sensor). Default 30 s.
	PassMax time.Duration
	// Deny is how long the red lamp shows after a denial. Default 2 s.
	Deny time.Duration
	// Alarm is how long the forced-passage alarm sounds. Default 5 s.
	Alarm time.Duration
}

// DefaultTiming is the timing a zero Timing field takes.
func DefaultTiming() Timing {
	return Timing{PassTimeout: 8 * time.Second, PassMax: 30 * time.Second, Deny: 2 * time.Second, Alarm: 5 * time.Second}
}

func (t Timing) withDefaults() Timing {
	d := DefaultTiming()
	if t.PassTimeout == 0 {
		t.PassTimeout = d.PassTimeout
	}
	if t.PassMax == 0 {
		t.PassMax = d.PassMax
	}
	if t.Deny == 0 {
		t.Deny = d.Deny
	}
	if t.Alarm == 0 {
		t.Alarm = d.Alarm
	}
	return t
}

// Validate checks the timings.
func (t Timing) Validate() error {
	t = t.withDefaults()
	switch {
	case t.Pulse < 0 || t.Pulse > 10*time.Second || (t.Pulse > 0 && t.Pulse < 50*time.Millisecond):
		return fmt.Errorf("gate: relay pulse %v: use 0 (hold until passage) or 50ms to 10s (a turnstile needs about 200ms to latch)", t.Pulse)
	case t.PassTimeout < 10*time.Millisecond || t.PassTimeout > 2*time.Minute:
		return fmt.Errorf("gate: pass timeout %v: use 10ms to 2m", t.PassTimeout)
	case t.Pulse > t.PassTimeout:
		return fmt.Errorf("gate: relay pulse %v is longer than the pass timeout %v", t.Pulse, t.PassTimeout)
	case t.PassMax < t.PassTimeout || t.PassMax > 10*time.Minute:
		return fmt.Errorf("gate: passage max %v: use the pass timeout (%v) up to 10m", t.PassMax, t.PassTimeout)
	case t.Deny < 0 || t.Deny > time.Minute || t.Alarm < 0 || t.Alarm > 10*time.Minute:
		return fmt.Errorf("gate: deny %v / alarm %v out of range (up to 1m / 10m)", t.Deny, t.Alarm)
	}
	return nil
}

// Config is what New needs.
type Config struct {
	Verifier  Verifier
	Log       Log
	Board     *hw.Board
	Direction verify.Direction
	Timing    Timing
	// Clock drives the gate's timers. Default the real clock.
	Clock clockwork.Clock
	// Now stamps events: the gate's corrected clock (keysync's). Default
	// Clock.Now.
	Now func() time.Time
	// Logger; default discards. Scan texts are never logged.
	Logger *slog.Logger
	// Observe, when set, is called on Run's goroutine after each outcome.
	// It must not block.
	Observe func(Outcome)
	// Peers, when set, are the station's other gates (see Peers).
	Peers Peers
	// Foreground, when set, is called as the gate begins a decision on
	// a scan, and what it returns once the decision is made (recorded,
	// the relay set): the key cache's Foreground, which holds the
	// cache's own writes back meanwhile, so that a grant's fsync does
	// not queue behind a feed batch's or the maintenance's.
	Foreground func() (done func())
}

// Controller runs one gate.
type Controller struct {
	cfg   Config
	t     Timing
	clock clockwork.Clock
	log   *slog.Logger

	// Run's state; touched only by Run's goroutine.
	state     state
	emergency bool
	relayOn   bool
	grant     verify.Decision
	pulse     clockwork.Timer
	pass      clockwork.Timer
	sig       pattern
	sigTimer  clockwork.Timer
	alarming  bool // an alarm pattern is playing: other signals wait
	malformed malformedLimiter
	// clockOff holds the certificates whose authentic codes were refused
	// in a row for the clock (CODE_STALE, CODE_FROM_FUTURE), with no
	// authentic code on time between them (see ClockDispute).
	clockOff map[verify.CertID]struct{}
	// repeats holds back the log lines a flood of scans would repeat
	// (malformed codes, scans while busy); quiet is the one timer that
	// writes their counts and the count of malformed decisions left out
	// of the event log, at quietAt.
	repeats *logging.Repeats
	quiet   clockwork.Timer
	quietAt time.Time
	// relayWant is the level the relay should be at; when driving it
	// failed, relayRetry tries again until it is.
	relayWant  bool
	relayRetry clockwork.Timer
	relayFault bool
	// fault, when set, takes the gate out of service: every scan is
	// refused (a watched input died).
	fault     string
	lastFault time.Time // when a fault decision was last logged as an error
	// recErr is the last failed write of the event log, nil once a write
	// succeeds: while writes fail no grant can be recorded, so none is
	// made. recProbe tries a small write (the outage's own alarm event)
	// every RecordProbe, so that the gate recovers by itself even when
	// nobody scans.
	recErr   error
	recSince time.Time
	recLost  int // events not recorded since recSince
	recProbe clockwork.Timer
	// passage is the passage sensor's last level: only a change counts.
	passage bool
	// test is the technician's test under way (state testing).
	test *techTest

	ping    chan chan struct{}
	testReq chan *testRequest

	// waiter is the technician waiting for the next scan (NextScan);
	// guarded by waitMu (taken before mu, never after), so that a waiter
	// that gives up and a scan handed to it cannot cross.
	waitMu sync.Mutex
	waiter *scanWaiter

	mu     sync.Mutex
	status Status
}

type state uint8

const (
	idle    state = iota
	granted       // unlocked, waiting for the passenger to enter
	passing       // the passenger is in the passage
	testing       // a technician's test of the outputs (Test)
)

func (s state) String() string {
	return [...]string{"idle", "granted", "passing", "testing"}[s]
}

// New checks the config and returns a controller.
func New(cfg Config) (*Controller, error) {
	switch {
	case cfg.Verifier == nil:
		return nil, errors.New("gate: no verifier")
	case cfg.Log == nil:
		return nil, errors.New("gate: no event log")
	case cfg.Board == nil:
		return nil, errors.New("gate: no board")
	case cfg.Direction != verify.Entry && cfg.Direction != verify.Exit:
		return nil, fmt.Errorf("gate: direction %v: must be entry or exit", cfg.Direction)
	}
	if err := cfg.Board.Validate(); err != nil {
		return nil, fmt.Errorf("gate: %w", err)
	}
	if err := cfg.Timing.Validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clockwork.NewRealClock()
	}
	if cfg.Now == nil {
		cfg.Now = cfg.Clock.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Controller{cfg: cfg, t: cfg.Timing.withDefaults(), clock: cfg.Clock, log: cfg.Logger,
		repeats: logging.NewRepeats(cfg.Logger, RepeatEvery, cfg.Clock.Now),
		ping:    make(chan chan struct{}), testReq: make(chan *testRequest)}
	c.status.Reasons = map[string]uint64{}
	c.status.Outcomes = map[string]uint64{}
	return c, nil
}

// Run handles scans, inputs and technicians' requests until ctx ends, then
// locks the gate and turns its signals off. Every output is driven off as
// Run starts; the relay moves nowhere else but on a grant, the emergency
// input or a technician's test.
func (c *Controller) Run(ctx context.Context, scans <-chan Scan) error {
	b := c.cfg.Board
	if err := b.Safe(); err != nil {
		return fmt.Errorf("gate: start: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		// A test under way ends (recorded, its caller told), then the
		// gate locks, then the input watchers are waited for.
		if c.test != nil {
			c.endTest(fmt.Errorf("%w: the gate controller stopped", ErrInterrupted))
		}
		if c.state == granted {
			c.release() // the gate locks: that passenger will not pass here
		}
		stop(&c.relayRetry)
		stop(&c.recProbe)
		stop(&c.quiet)
		c.flushMalformed(true)
		c.repeats.Close()
		if err := b.Safe(); err != nil {
			c.log.Error("could not lock the gate at shutdown", "err", err)
		}
		cancel()
		wg.Wait()
		c.setStatus(func(s *Status) { s.State, s.Emergency = idle.String(), false })
	}()
	dead := make(chan string, 4)
	watch := func(in hw.Input) <-chan bool {
		if in == nil {
			return nil
		}
		ch := make(chan bool, 16)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Watch(wctx, ch); err != nil && wctx.Err() == nil {
				c.log.Error("input watch stopped: the gate cannot see this line; check its wiring and run gateagent diag", "line", in.Name(), "err", err)
				select {
				case dead <- in.Name():
				case <-wctx.Done():
				}
			}
		}()
		return ch
	}
	// The passage sensor's level at start is where changes count from: a
	// person standing in the passage at boot is not a forced passage.
	if c.passage, _ = b.Passage.Active(); c.passage {
		c.log.Warn("passage sensor active at start: someone is in the passage, or the sensor is blocked or faulty")
	}
	passage := watch(b.Passage)
	emergency := watch(b.Emergency)
	c.setStatus(func(s *Status) { s.State = idle.String() })

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case s, ok := <-scans:
			if !ok {
				scans = nil // the scanner stopped; inputs still matter
				continue
			}
			c.onScan(s)
		case active := <-passage:
			c.onPassage(active)
		case active := <-emergency:
			c.onEmergency(active)
		case <-timerC(c.pulse):
			c.pulse = nil
			if c.state != idle && !c.emergency {
				c.setRelay(false)
			}
		case <-timerC(c.pass):
			c.pass = nil
			c.onPassTimeout()
		case <-timerC(c.sigTimer):
			c.nextSignal()
		case <-timerC(c.relayRetry):
			c.relayRetry = nil
			c.driveRelay()
		case <-timerC(c.recProbe):
			c.recProbe = nil
			c.probeRecord()
		case <-timerC(c.quiet):
			c.quiet, c.quietAt = nil, time.Time{}
			c.repeats.Flush()
			c.flushMalformed(false)
			c.armQuiet()
		case name := <-dead:
			c.onInputDead(name)
		case reply := <-c.ping:
			close(reply)
		case req := <-c.testReq:
			c.startTest(req)
		case <-c.testTimerC():
			c.onTestTimer()
		case <-c.testCtxDone():
			c.endTest(fmt.Errorf("gate: technician test cancelled: %w", c.test.req.ctx.Err()))
		}
	}
}

func timerC(t clockwork.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.Chan()
}

func stop(t *clockwork.Timer) {
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
}

// Ping returns nil once Run's loop has answered, or an error when it has
// not answered within timeout: the watchdog's health check.
func (c *Controller) Ping(timeout time.Duration) error {
	reply := make(chan struct{})
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case c.ping <- reply:
	case <-t.C:
		return fmt.Errorf("gate: controller loop unresponsive for %v", timeout)
	}
	select {
	case <-reply:
		return nil
	case <-t.C:
		return fmt.Errorf("gate: controller loop unresponsive for %v", timeout)
	}
}

func (c *Controller) onScan(s Scan) {
	if s.Release != nil {
		defer s.Release() // after the decision's own mark, below, is taken
	}
	if c.handOver(s) {
		return
	}
	switch {
	case c.emergency:
		c.observe(Outcome{Kind: Ignored, ScanAt: s.At, Note: "the emergency input holds the gate open: no scan needed"})
		return
	case c.state == testing:
		// No beep: it would mix with an indicator test's.
		c.repeat(slog.LevelInfo, "testing", "scan during a technician test not checked", "test", c.test.res.Kind.String())
		c.observe(Outcome{Kind: Ignored, ScanAt: s.At, Note: "technician test under way"})
		return
	case c.fault != "":
		c.logFault("gate out of service: "+c.fault, nil)
		c.signal(denySignal(verify.FamilyFault, c.t.Deny))
		c.observe(Outcome{Kind: Denied, ScanAt: s.At, At: c.clock.Now(), Err: errors.New("gate out of service: " + c.fault)})
		return
	case c.state != idle:
		c.repeat(slog.LevelInfo, "busy", "scan during a passage not checked: the passenger should scan once the gate has closed", "state", c.state.String())
		c.signal(sigBusy)
		c.observe(Outcome{Kind: Ignored, ScanAt: s.At, Note: "a passenger is passing: scan again once the gate has closed"})
		return
	}
	if f := c.cfg.Foreground; f != nil {
		defer f()()
	}
	d, err := c.cfg.Verifier.Verify(s.Text)
	st := Stages{Decode: d.Stages.Decode, Lookup: d.Stages.Lookup, Tag: d.Stages.Tag}
	if !s.Began.IsZero() && s.At.After(s.Began) {
		st.Read = s.At.Sub(s.Began)
	}
	ev := event.Event{
		Time: d.At, Kind: event.Decision, Reason: d.Reason, Direction: c.cfg.Direction,
		CertID: d.CertID, StepOffset: d.StepOffset, Detail: d.Detail,
	}
	if ev.Time.IsZero() {
		ev.Time = c.cfg.Now()
	}
	if d.Reason == verify.Passback && d.SeenAt != "" {
		ev.Detail = seenDetail(&d)
	}
	if err != nil || d.Reason == verify.Undecided {
		c.logFault("cannot check tokens: the gate refuses everyone until this is fixed; run gateagent diag", err)
		if ev.Detail == "" && err != nil {
			ev.Detail = truncate(err.Error())
		}
		st.Record = c.timedRecord(ev)
		c.deny(d, s, err, st)
		return
	}
	if !d.Granted() {
		if d.Reason == verify.Malformed {
			var ok bool
			if ev.Detail, ok = c.malformed.admit(c.clock.Now(), ev.Detail); ok {
				st.Record = c.timedRecord(ev)
			} else {
				c.armQuiet()
			}
		} else {
			st.Record = c.timedRecord(ev)
		}
		c.deny(d, s, nil, st)
		return
	}
	// Grant: durable record first, then the relay. The stages are real
	// latencies: timed on the monotonic clock, not on c.clock.
	mark := time.Now()
	c.stamp(&ev)
	err = c.append(ev)
	st.Record = time.Since(mark)
	if err != nil {
		c.log.Error("grant not recorded, so the gate stays shut: the event log cannot be written; check the disk and run gateagent diag", "cert", d.CertID, "err", err)
		c.deny(verify.Decision{Reason: verify.Undecided, CertID: d.CertID, At: d.At}, s, err, st)
		return
	}
	mark = time.Now()
	err = c.setRelay(true)
	st.Relay = time.Since(mark)
	if err != nil {
		c.record(event.Event{Kind: event.Alarm, Direction: c.cfg.Direction, CertID: d.CertID,
			Detail: "granted but the relay could not be unlocked: the passenger was turned away"})
		_ = c.setRelay(false) // stop retrying the unlock: drive it locked
		c.deny(verify.Decision{Reason: verify.Undecided, CertID: d.CertID, At: d.At}, s, err, st)
		return
	}
	relayAt := c.clock.Now()
	c.state, c.grant = granted, d
	c.setGreen(true)
	c.signal(sigGranted)
	stop(&c.pass)
	c.pass = c.clock.NewTimer(c.t.PassTimeout)
	if c.t.Pulse > 0 {
		stop(&c.pulse)
		c.pulse = c.clock.NewTimer(c.t.Pulse)
	}
	c.log.Info("granted", "cert", d.CertID, "step_offset", d.StepOffset)
	c.observe(Outcome{Kind: Granted, Decision: d, ScanAt: s.At, Stages: st, At: relayAt})
	// The station's other gates hold the certificate from now: after the
	// relay, so that telling them never delays it.
	if p := c.cfg.Peers; p != nil {
		p.Hold(d.CertID, c.cfg.Direction, d.At, d.At.Add(c.t.PassTimeout))
	}
}

// seenDetail is the event detail of a refusal for a passage or a hold at
// another gate of the station.
func seenDetail(d *verify.Decision) string {
	if d.Held {
		return truncate("held at gate " + d.SeenAt + ": its passenger has a grant there")
	}
	return truncate("seen at gate " + d.SeenAt)
}

// release tells the peers that the grant lapsed unused.
func (c *Controller) release() {
	if p := c.cfg.Peers; p != nil {
		p.Release(c.grant.CertID, c.cfg.Direction, c.cfg.Now())
	}
}

// stamp notes in an event that the gate is isolated from its station
// peers, when it is.
func (c *Controller) stamp(e *event.Event) {
	if c.cfg.Peers == nil || !c.cfg.Peers.Isolated() {
		return
	}
	const sep = "; "
	if e.Detail == "" {
		e.Detail = IsolatedNote
		return
	}
	e.Detail = truncateTo(e.Detail, event.MaxDetail-len(sep+IsolatedNote)) + sep + IsolatedNote
}

func (c *Controller) deny(d verify.Decision, s Scan, err error, st Stages) {
	fam := d.Reason.Family()
	if err != nil {
		fam = verify.FamilyFault
	}
	c.signal(denySignal(fam, c.t.Deny))
	switch {
	case err == nil && fam == verify.FamilyFault:
		c.logFault("the gate cannot check tokens ("+d.Reason.String()+"): everyone is refused; run gateagent diag", nil)
	case err == nil && d.Reason == verify.Malformed:
		// A scanner sending garbage would write a line per line.
		c.repeat(slog.LevelInfo, "malformed", "denied", "reason", d.Reason.String(), "length", len(s.Text))
	case err == nil && d.Reason == verify.BadTag:
		// Forged codes come in floods too (a screen cycling through them):
		// the log counts them, the event log keeps every one, with its
		// certificate, for the auditor.
		c.repeat(slog.LevelInfo, "bad_tag", "denied", "reason", d.Reason.String(), "cert", d.CertID)
	case err == nil && d.SeenAt != "":
		c.log.Info("denied", "reason", d.Reason.String(), "cert", d.CertID, "seen_at", d.SeenAt, "held", d.Held)
	case err == nil:
		c.log.Info("denied", "reason", d.Reason.String(), "cert", d.CertID)
	}
	c.observe(Outcome{Kind: Denied, Decision: d, ScanAt: s.At, Stages: st, At: c.clock.Now(), Err: err})
}

func (c *Controller) onPassage(active bool) {
	c.setStatus(func(s *Status) { s.Passage = active })
	if active == c.passage {
		return // the watcher's first report repeats the level read at start
	}
	c.passage = active
	if c.emergency {
		if active {
			c.observe(Outcome{Kind: FreePassage, At: c.clock.Now()})
		}
		return
	}
	if c.state == testing && c.testPassage(active) {
		return
	}
	switch {
	case c.state == granted && active:
		ev := event.Event{Time: c.cfg.Now(), Kind: event.Passage, Direction: c.cfg.Direction, CertID: c.grant.CertID, Reason: verify.OK}
		c.stamp(&ev)
		_, err := c.cfg.Log.RecordPassage(c.grant.CertID, c.cfg.Direction, ev)
		c.wrote(err)
		if err != nil {
			c.log.Error("passage not recorded: anti-passback will not know this passenger; check the disk and run gateagent diag", "cert", c.grant.CertID, "err", err)
		}
		if p := c.cfg.Peers; p != nil {
			p.Passed(c.grant.CertID, c.cfg.Direction, ev.Time)
		}
		c.state = passing
		stop(&c.pass)
		c.pass = c.clock.NewTimer(c.t.PassMax)
		c.log.Info("passed", "cert", c.grant.CertID)
		c.observe(Outcome{Kind: Passed, Decision: c.grant, At: c.clock.Now()})
	case c.state == passing && !active:
		c.lock()
		c.observe(Outcome{Kind: Closed, Decision: c.grant, At: c.clock.Now()})
	case c.state == idle && active:
		c.record(event.Event{Time: c.cfg.Now(), Kind: event.ForcedPassage, Direction: c.cfg.Direction, Detail: "passage without a grant"})
		c.alarm(c.t.Alarm)
		c.log.Warn("forced passage: someone passed without a valid code")
		c.observe(Outcome{Kind: Forced, At: c.clock.Now()})
	}
}

func (c *Controller) onPassTimeout() {
	switch c.state {
	case granted:
		c.lock()
		c.release()
		c.record(event.Event{Time: c.cfg.Now(), Kind: event.Lapsed, Reason: verify.OK, Direction: c.cfg.Direction, CertID: c.grant.CertID,
			Detail: fmt.Sprintf("granted but not used: nobody entered within %v", c.t.PassTimeout)})
		c.log.Info("grant lapsed: the passenger did not enter in time; gate locked", "cert", c.grant.CertID, "timeout", c.t.PassTimeout)
		c.observe(Outcome{Kind: Lapsed, Decision: c.grant, At: c.clock.Now()})
	case passing:
		c.lock()
		c.record(event.Event{Time: c.cfg.Now(), Kind: event.Alarm, Direction: c.cfg.Direction, Detail: "passage sensor active too long: gate locked"})
		c.alarm(c.t.Alarm)
		c.log.Warn("passage sensor active too long: gate locked; someone is standing in the passage or the sensor is faulty", "max", c.t.PassMax)
		c.observe(Outcome{Kind: Blocked, Decision: c.grant, At: c.clock.Now()})
	}
}

func (c *Controller) onEmergency(active bool) {
	if active == c.emergency {
		return
	}
	c.emergency = active
	c.setStatus(func(s *Status) { s.Emergency = active })
	if active {
		// A test under way ends, its relay left energised: the emergency
		// holds it so.
		if c.test != nil {
			c.endTest(fmt.Errorf("%w: the emergency input engaged; the gate is held open", ErrInterrupted))
		}
		// Open first: in an emergency the way out matters more than the log.
		stop(&c.pulse)
		stop(&c.pass)
		if c.state == granted {
			c.release() // passages are free now: the grant is moot
		}
		c.state = idle
		_ = c.setRelay(true) // on failure it retries while the emergency lasts
		c.setGreen(true)
		c.stopSignal()
		c.record(event.Event{Time: c.cfg.Now(), Kind: event.Emergency, Direction: c.cfg.Direction, Detail: "engaged: gate held open"})
		c.log.Warn("emergency input engaged: gate held open for free passage")
		c.observe(Outcome{Kind: EmergencyOn, At: c.clock.Now()})
		return
	}
	c.lock()
	c.record(event.Event{Time: c.cfg.Now(), Kind: event.Emergency, Direction: c.cfg.Direction, Detail: "released: gate locked"})
	c.log.Warn("emergency input released: gate locked, back in service")
	c.observe(Outcome{Kind: EmergencyOff, At: c.clock.Now()})
}

// lock ends a grant: relay off, green off, back to idle.
func (c *Controller) lock() {
	stop(&c.pulse)
	stop(&c.pass)
	c.setRelay(false)
	c.setGreen(false)
	c.state = idle
	c.setStatus(func(s *Status) { s.State = idle.String() })
}

// setRelay drives the relay to on. When that fails it logs and records an
// alarm, and a retry timer drives it again every second until it works
// (driveRelay); a failed unlock is reported to the caller, which must not
// count on the gate being open.
func (c *Controller) setRelay(on bool) error {
	c.relayWant = on
	stop(&c.relayRetry)
	return c.driveRelay()
}

// driveRelay drives the relay to relayWant.
func (c *Controller) driveRelay() error {
	on := c.relayWant
	if on == c.relayOn && !c.relayFault {
		return nil
	}
	err := c.cfg.Board.Relay.Set(on)
	if err != nil {
		if !c.relayFault {
			c.relayFault = true
			c.setStatus(func(s *Status) { s.RelayFault = true })
			c.log.Error("relay output failed: retrying every second; check the relay wiring and run gateagent diag", "on", on, "err", err)
			c.record(event.Event{Kind: event.Alarm, Direction: c.cfg.Direction, Detail: truncate("relay output failed: " + err.Error())})
		}
		if !on {
			c.relayOn = true // unknown: assume the worst and keep trying to lock
		}
		c.relayRetry = c.clock.NewTimer(time.Second)
		return err
	}
	if c.relayFault {
		c.relayFault = false
		c.setStatus(func(s *Status) { s.RelayFault = false })
		c.log.Warn("relay output works again", "on", on)
		c.record(event.Event{Kind: event.Alarm, Direction: c.cfg.Direction, Detail: "relay output works again"})
	}
	c.relayOn = on
	return nil
}

// onInputDead takes the gate out of service when its passage sensor can
// no longer be watched: without it no passage (and no anti-passback) can
// be recorded.
func (c *Controller) onInputDead(name string) {
	c.record(event.Event{Kind: event.Alarm, Direction: c.cfg.Direction, Detail: "input " + name + " unreadable"})
	if name == c.cfg.Board.Passage.Name() && c.test != nil {
		c.endTest(fmt.Errorf("%w: the passage sensor cannot be read", ErrInterrupted))
	}
	if name == c.cfg.Board.Passage.Name() && c.fault == "" {
		c.fault = "the passage sensor cannot be read"
		c.setStatus(func(s *Status) { s.Fault = c.fault })
		c.lock()
	}
}

// logFault logs that the gate cannot decide, as an error at most once a
// minute (every scan would repeat it).
func (c *Controller) logFault(msg string, err error) {
	now := c.clock.Now()
	if !c.lastFault.IsZero() && now.Sub(c.lastFault) < time.Minute {
		return
	}
	c.lastFault = now
	c.log.Error(msg, "err", err)
}

func (c *Controller) setGreen(on bool) {
	if err := c.cfg.Board.Green.Set(on); err != nil {
		c.log.Warn("green lamp output failed", "err", err)
	}
}

// signal starts a red/buzzer pattern, replacing the one playing, except
// an alarm: nothing cuts an alarm short (someone who forced the gate cannot
// silence it by scanning).
func (c *Controller) signal(p pattern) {
	if c.alarming {
		return
	}
	c.stopSignal()
	c.sig = p
	c.nextSignal()
}

// alarm starts an alarm pattern for d.
func (c *Controller) alarm(d time.Duration) {
	c.alarming = false
	c.signal(alarmSignal(d))
	c.alarming = len(c.sig) > 0 || c.sigTimer != nil
}

func (c *Controller) nextSignal() {
	c.sigTimer = nil
	if len(c.sig) == 0 {
		c.alarming = false
		c.setSignal(false, false)
		return
	}
	s := c.sig[0]
	c.sig = c.sig[1:]
	c.setSignal(s.red, s.buzz)
	c.sigTimer = c.clock.NewTimer(s.dur)
}

func (c *Controller) stopSignal() {
	stop(&c.sigTimer)
	c.sig = nil
	c.alarming = false
	c.setSignal(false, false)
}

func (c *Controller) setSignal(red, buzz bool) {
	if err := c.cfg.Board.Red.Set(red); err != nil {
		c.log.Warn("red lamp output failed", "err", err)
	}
	if err := c.cfg.Board.Buzzer.Set(buzz); err != nil {
		c.log.Warn("buzzer output failed", "err", err)
	}
}

// timedRecord is record, timed on the monotonic clock (the Record stage).
func (c *Controller) timedRecord(e event.Event) time.Duration {
	mark := time.Now()
	c.record(e)
	return time.Since(mark)
}

// record appends an event, logging a failure (the gate goes on: only a
// grant depends on its record).
func (c *Controller) record(e event.Event) {
	if e.Time.IsZero() {
		e.Time = c.cfg.Now()
	}
	c.stamp(&e)
	if err := c.append(e); err != nil {
		c.log.Error("event not recorded: check the disk and run gateagent diag", "kind", e.Kind.String(), "err", err)
	}
}

// RecordProbe is how often a gate whose event log cannot be written tries
// again, with the outage's alarm event, when nothing else writes.
const RecordProbe = 2 * time.Second

// append writes one event and keeps the record fault.
func (c *Controller) append(e event.Event) error {
	_, err := c.cfg.Log.AppendEvent(e)
	c.wrote(err)
	return err
}

// wrote keeps the record fault after a write of the event log: a failure
// sets it (the gate refuses grants it cannot record), a success clears it.
func (c *Controller) wrote(err error) {
	if err == nil {
		if c.recErr != nil {
			c.recordWorks(false)
		}
		return
	}
	c.recLost++
	if c.recErr == nil {
		c.recSince = c.clock.Now()
		c.log.Error("the event log cannot be written: grants are refused until it can, and it is tried again every few seconds; check the disk and run gateagent diag", "err", err)
		c.recProbe = c.clock.NewTimer(RecordProbe)
	}
	c.recErr = err
	c.setStatus(func(s *Status) {
		s.RecordFault, s.RecordErr, s.RecordFaultSince = truncate(err.Error()), err, c.recSince
	})
}

// recordWorks clears the record fault: the event log took a write again.
// Unless the write was the probe's own outage event, that event follows.
func (c *Controller) recordWorks(probed bool) {
	stop(&c.recProbe)
	outage := c.outageEvent()
	lost := c.recLost
	c.recErr, c.recLost = nil, 0
	c.setStatus(func(s *Status) { s.RecordFault, s.RecordErr, s.RecordFaultSince = "", nil, time.Time{} })
	c.log.Warn("the event log can be written again: the gate grants again", "after", c.clock.Since(c.recSince).Round(time.Millisecond), "not_recorded", lost)
	if !probed {
		c.record(outage)
	}
}

// outageEvent is the alarm that records a stretch of failed writes.
func (c *Controller) outageEvent() event.Event {
	return event.Event{Kind: event.Alarm, Direction: c.cfg.Direction, Detail: truncate(fmt.Sprintf(
		"event log could not be written from %s for %s: %s not recorded, grants refused meanwhile",
		c.recSince.UTC().Format(time.RFC3339), c.clock.Since(c.recSince).Round(time.Second), plural.N(c.recLost, "event", "events")))}
}

// probeRecord tries the outage's alarm event: the smallest write that is
// worth keeping. It succeeds once the disk takes writes again.
func (c *Controller) probeRecord() {
	e := c.outageEvent()
	e.Time = c.cfg.Now()
	if _, err := c.cfg.Log.AppendEvent(e); err != nil {
		c.recErr = err
		c.setStatus(func(s *Status) { s.RecordFault, s.RecordErr = truncate(err.Error()), err })
		c.recProbe = c.clock.NewTimer(RecordProbe)
		return
	}
	c.recordWorks(true)
}

// truncate cuts s to what an event's detail holds, on a character boundary.
func truncate(s string) string { return truncateTo(s, event.MaxDetail) }

// truncateTo cuts s to at most n bytes, on a character boundary.
func truncateTo(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// RepeatEvery is the interval over which the controller counts a repeated
// log line (a malformed code, a scan while busy) instead of writing it.
const RepeatEvery = 10 * time.Second

// MalformedEvery is the interval over which at most one malformed
// decision is recorded in the event log.
const MalformedEvery = time.Second

// repeat logs through the repeats and sets the timer that writes their
// counts.
func (c *Controller) repeat(level slog.Level, key, msg string, args ...any) {
	c.repeats.Log(level, key, msg, args...)
	c.armQuiet()
}

// armQuiet sets the quiet timer for the earliest moment a count is due:
// the end of a run of repeated lines, or of a malformed interval with
// decisions left out.
func (c *Controller) armQuiet() {
	next := c.repeats.Next()
	if due := c.malformed.due(); !due.IsZero() && (next.IsZero() || due.Before(next)) {
		next = due
	}
	if next.IsZero() || c.quiet != nil && !next.Before(c.quietAt) {
		return
	}
	stop(&c.quiet)
	c.quiet, c.quietAt = c.clock.NewTimer(max(next.Sub(c.clock.Now()), 0)), next
}

// flushMalformed records how many malformed decisions the last interval
// left out, once it has ended (or at once, at shutdown).
func (c *Controller) flushMalformed(now bool) {
	t := c.clock.Now()
	if due := c.malformed.due(); due.IsZero() || !now && t.Before(due) {
		return
	}
	n := c.malformed.take()
	c.record(event.Event{Time: c.cfg.Now(), Kind: event.Decision, Reason: verify.Malformed, Direction: c.cfg.Direction,
		Detail: plural.N(n, "more malformed scan", "more malformed scans") + " not recorded"})
}

// malformedLimiter keeps a scanner that sends garbage from wearing out the
// flash: at most one malformed decision per MalformedEvery is recorded;
// the count of those left out is recorded when the interval ends (by the
// controller's quiet timer), or with the next one recorded, whichever
// comes first.
type malformedLimiter struct {
	last    time.Time
	skipped int
}

func (m *malformedLimiter) admit(now time.Time, detail string) (string, bool) {
	if !m.last.IsZero() && now.Sub(m.last) < MalformedEvery && now.Sub(m.last) >= 0 {
		m.skipped++
		return "", false
	}
	m.last = now
	if m.skipped > 0 {
		detail = fmt.Sprintf("%s (+%s not recorded)", detail, plural.N(m.skipped, "more malformed scan", "more malformed scans"))
		m.skipped = 0
	}
	return truncate(detail), true
}

// due is when the count of the decisions left out is to be recorded: the
// end of the interval that left them out; zero when none was.
func (m *malformedLimiter) due() time.Time {
	if m.skipped == 0 {
		return time.Time{}
	}
	return m.last.Add(MalformedEvery)
}

// take returns the count of the decisions left out and clears it.
func (m *malformedLimiter) take() int {
	n := m.skipped
	m.skipped = 0
	return n
}
