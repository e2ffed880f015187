package gate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/hw/hwtest"
	"gateagent/verify"
)

// The relay is wired active-low, as most relay boards are: locked is High.
const (
	locked   = gpio.High
	unlocked = gpio.Low
)

// rig is one gate on fake pins with a real cache file and a fake clock.
type rig struct {
	t        *testing.T
	pins     *hwtest.Board
	board    *hw.Board
	cache    *cache.Cache
	log      *faultyLog
	clock    clockwork.FakeClock
	ctrl     *gate.Controller
	scans    chan gate.Scan
	outcomes chan gate.Outcome
	certs    []verify.Cert
	cancel   context.CancelFunc
	done     chan error
}

// faultyLog is the cache, with writes made to fail on demand.
type faultyLog struct {
	*cache.Cache
	mu   sync.Mutex
	fail error
	// relayAtAppend is the relay pin's level each time an event was
	// appended: a grant must be on disk before the relay moves.
	relayAtAppend []gpio.Level
	relay         *hwtest.Pin
}

func (l *faultyLog) AppendEvent(e cache.Event) (uint64, error) {
	l.mu.Lock()
	err := l.fail
	l.relayAtAppend = append(l.relayAtAppend, l.relay.Level())
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return l.Cache.AppendEvent(e)
}

func (l *faultyLog) setFail(err error) {
	l.mu.Lock()
	l.fail = err
	l.mu.Unlock()
}

var now0 = cachetest.Epoch.Add(2 * time.Hour)

func newRig(t *testing.T, timing gate.Timing) *rig {
	t.Helper()
	return newRigWith(t, timing, nil, nil)
}

// newRigWith lets pre set the pins before the board is opened (someone in
// the passage at boot) and mod replace lines of the board (faulty outputs,
// dead inputs) before the controller starts.
func newRigWith(t *testing.T, timing gate.Timing, pre func(*hwtest.Board), mod func(*hw.Board)) *rig {
	t.Helper()
	return newRigFull(t, timing, pre, mod, nil)
}

// newRigFull is newRigWith, with wrap (when not nil) wrapping the
// verifier the controller uses, and cfgs changing its config.
func newRigFull(t *testing.T, timing gate.Timing, pre func(*hwtest.Board), mod func(*hw.Board), wrap func(gate.Verifier) gate.Verifier, cfgs ...func(*gate.Config)) *rig {
	t.Helper()
	r := &rig{t: t, pins: hwtest.NewBoard(), clock: clockwork.NewFakeClockAt(now0),
		scans: make(chan gate.Scan), outcomes: make(chan gate.Outcome, 64)}
	if pre != nil {
		pre(r.pins)
	}
	var err error
	if r.board, err = r.pins.Open(hwtest.Wiring(true)); err != nil {
		t.Fatal(err)
	}
	if mod != nil {
		mod(r.board)
	}
	r.cache = cachetest.Open(t, nil)
	b := cachetest.Batch(0, 4, 4)
	b.Revokes = []verify.CertID{b.Upserts[3].ID}
	if _, err := r.cache.Apply(b); err != nil {
		t.Fatal(err)
	}
	r.certs = b.Upserts
	r.log = &faultyLog{Cache: r.cache, relay: r.pins.Pins[hwtest.Relay]}
	v, err := verify.New(verify.Config{Store: r.cache, Clock: verify.ClockFunc(r.clock.Now),
		Policy: verify.DefaultPolicy(verify.Entry), TrustedAfter: cachetest.Epoch.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var gv gate.Verifier = v
	if wrap != nil {
		gv = wrap(v)
	}
	cfg := gate.Config{Verifier: gv, Log: r.log, Board: r.board, Direction: verify.Entry,
		Timing: timing, Clock: r.clock, Observe: func(o gate.Outcome) { r.outcomes <- o }}
	for _, f := range cfgs {
		f(&cfg)
	}
	r.ctrl, err = gate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel, r.done = cancel, make(chan error, 1)
	go func() { r.done <- r.ctrl.Run(ctx, r.scans) }()
	t.Cleanup(r.stop)
	// Wait until the loop runs (and has watched its inputs once).
	if err := r.ctrl.Ping(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if !errors.Is(err, context.Canceled) {
			r.t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		r.t.Fatal("Run did not return after cancel")
	}
}

func (r *rig) token(i int, step uint32) []byte {
	c := r.certs[i]
	return []byte(verify.NewToken(&c.Key, c.ID, step).String())
}

func (r *rig) scan(text []byte) {
	r.t.Helper()
	select {
	case r.scans <- gate.Scan{Text: text, At: r.clock.Now()}:
	case <-time.After(5 * time.Second):
		r.t.Fatal("controller did not take the scan")
	}
}

func (r *rig) want(kind gate.OutcomeKind) gate.Outcome {
	r.t.Helper()
	select {
	case o := <-r.outcomes:
		if o.Kind != kind {
			r.t.Fatalf("outcome %v (reason %v, err %v), want %v", o.Kind, o.Decision.Reason, o.Err, kind)
		}
		return o
	case <-time.After(5 * time.Second):
		r.t.Fatalf("no outcome, want %v", kind)
	}
	return gate.Outcome{}
}

func (r *rig) relayOuts() []gpio.Level { return r.pins.Journal.Levels(hwtest.Relay) }

func (r *rig) events() []cache.Event {
	r.t.Helper()
	ev, err := r.cache.Events(0, 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	return ev
}

func (r *rig) input(name string, active bool) {
	l := gpio.Low
	if active {
		l = gpio.High
	}
	r.pins.Set(name, l)
}

func eqLevels(a []gpio.Level, b ...gpio.Level) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestGrantOpensOnceThenLocksAfterPassage(t *testing.T) {
	r := newRig(t, gate.Timing{})
	r.scan(r.token(0, verify.StepOf(now0)))
	o := r.want(gate.Granted)
	if o.Decision.CertID != r.certs[0].ID {
		t.Fatalf("granted cert %v, want %v", o.Decision.CertID, r.certs[0].ID)
	}
	if got := r.pins.Pins[hwtest.Relay].Level(); got != unlocked {
		t.Fatalf("relay %v after grant, want %v (unlocked)", got, unlocked)
	}
	if got := r.pins.Pins[hwtest.Green].Level(); got != gpio.High {
		t.Fatal("green not lit after grant")
	}
	ev := r.events()
	if len(ev) != 1 || ev[0].Kind != cache.EventDecision || ev[0].Reason != verify.OK {
		t.Fatalf("events %+v, want one OK decision", ev)
	}
	if r.log.relayAtAppend[0] != locked {
		t.Fatal("the grant's event was written after the relay moved")
	}
	r.input(hwtest.Passage, true)
	r.want(gate.Passed)
	r.input(hwtest.Passage, false)
	r.want(gate.Closed)
	if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
		t.Fatalf("relay driven %v, want [locked unlocked locked]", outs)
	}
	ev = r.events()
	if len(ev) != 2 || ev[1].Kind != cache.EventPassage || ev[1].CertID != r.certs[0].ID {
		t.Fatalf("events %+v, want the decision then the passage", ev)
	}
	// The same passenger again: anti-passback, and the relay stays put.
	r.scan(r.token(0, verify.StepOf(now0)))
	if o := r.want(gate.Denied); o.Decision.Reason != verify.Passback {
		t.Fatalf("second scan: %v, want PASSBACK", o.Decision.Reason)
	}
	if outs := r.relayOuts(); len(outs) != 3 {
		t.Fatalf("relay moved on a denial: %v", outs)
	}
}

func TestEveryDenialLeavesTheRelayAlone(t *testing.T) {
	step := verify.StepOf(now0)
	other := cachetest.Cert(99, 100)
	cases := []struct {
		reason verify.Reason
		token  func(r *rig) []byte
	}{
		{verify.Malformed, func(r *rig) []byte { return []byte("hello\x00world") }},
		{verify.UnknownCert, func(r *rig) []byte { return []byte(verify.NewToken(&other.Key, other.ID, step).String()) }},
		{verify.BadTag, func(r *rig) []byte {
			return []byte(verify.NewToken(&other.Key, r.certs[0].ID, step).String())
		}},
		{verify.CodeStale, func(r *rig) []byte { return r.token(0, step-2) }},
		{verify.CodeFromFuture, func(r *rig) []byte { return r.token(0, step+2) }},
		{verify.Revoked, func(r *rig) []byte { return r.token(3, step) }},
	}
	for _, tc := range cases {
		t.Run(tc.reason.String(), func(t *testing.T) {
			r := newRig(t, gate.Timing{})
			r.scan(tc.token(r))
			o := r.want(gate.Denied)
			if o.Decision.Reason != tc.reason {
				t.Fatalf("reason %v, want %v", o.Decision.Reason, tc.reason)
			}
			if got := r.pins.Pins[hwtest.Red].Level(); got != gpio.High {
				t.Error("red lamp not lit on a denial")
			}
			if outs := r.relayOuts(); !eqLevels(outs, locked) {
				t.Fatalf("relay driven %v on a denial, want only its safe level at start", outs)
			}
			ev := r.events()
			if len(ev) != 1 || ev[0].Reason != tc.reason || ev[0].Kind != cache.EventDecision {
				t.Fatalf("events %+v, want one %v decision", ev, tc.reason)
			}
			// The red lamp goes out after the deny time.
			r.clock.Advance(3 * time.Second)
			deadline := time.Now().Add(2 * time.Second)
			for r.pins.Pins[hwtest.Red].Level() != gpio.Low || r.pins.Pins[hwtest.Buzzer].Level() != gpio.Low {
				if time.Now().After(deadline) {
					t.Fatal("red lamp or buzzer still on after the deny time")
				}
				r.clock.Advance(100 * time.Millisecond)
				time.Sleep(time.Millisecond)
			}
		})
	}
}

func TestDenialSignalsTellFamiliesApart(t *testing.T) {
	// Count the buzzer's beeps for each family.
	beeps := func(tok func(r *rig) []byte) int {
		r := newRig(t, gate.Timing{})
		buzz := r.pins.WaitOut(hwtest.Buzzer)
		r.scan(tok(r))
		r.want(gate.Denied)
		n := 0
		for i := 0; i < 40; i++ {
			r.clock.Advance(100 * time.Millisecond)
			_ = r.ctrl.Ping(time.Second)
		}
		for {
			select {
			case l := <-buzz:
				if l == gpio.High {
					n++
				}
			default:
				return n
			}
		}
	}
	step := verify.StepOf(now0)
	refresh := beeps(func(r *rig) []byte { return r.token(0, step-2) })
	invalid := beeps(func(r *rig) []byte { return r.token(3, step) })
	manual := beeps(func(r *rig) []byte {
		c := cachetest.Cert(99, 100)
		return []byte(verify.NewToken(&c.Key, c.ID, step).String())
	})
	if refresh != 2 || invalid != 3 || manual != 1 {
		t.Fatalf("beeps: refresh %d, invalid %d, manual %d; want 2, 3, 1", refresh, invalid, manual)
	}
}

func TestGrantLapsesWithoutPassage(t *testing.T) {
	r := newRig(t, gate.Timing{PassTimeout: 8 * time.Second})
	r.scan(r.token(1, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.clock.Advance(8 * time.Second)
	r.want(gate.Lapsed)
	if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
		t.Fatalf("relay %v, want [locked unlocked locked]", outs)
	}
	// No passage was recorded, so the passenger may scan again.
	r.scan(r.token(1, verify.StepOf(now0)))
	r.want(gate.Granted)
}

func TestPulseReleasesTheRelayBeforePassage(t *testing.T) {
	r := newRig(t, gate.Timing{Pulse: 500 * time.Millisecond})
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	relay := r.pins.WaitOut(hwtest.Relay)
	r.clock.Advance(500 * time.Millisecond)
	select {
	case l := <-relay:
		if l != locked {
			t.Fatalf("relay %v after the pulse, want locked", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("relay not released after the pulse")
	}
	// The passage still counts: the turnstile latched one passage.
	r.input(hwtest.Passage, true)
	r.want(gate.Passed)
	r.input(hwtest.Passage, false)
	r.want(gate.Closed)
	if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
		t.Fatalf("relay %v, want one pulse", outs)
	}
}

func TestScanDuringPassageIsReportedNotQueued(t *testing.T) {
	r := newRig(t, gate.Timing{})
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.scan(r.token(1, verify.StepOf(now0)))
	if o := r.want(gate.Ignored); !strings.Contains(o.Note, "passing") {
		t.Fatalf("note %q", o.Note)
	}
	r.input(hwtest.Passage, true)
	r.want(gate.Passed)
	r.input(hwtest.Passage, false)
	r.want(gate.Closed)
	select {
	case o := <-r.outcomes:
		t.Fatalf("the ignored scan came back later as %v", o.Kind)
	case <-time.After(50 * time.Millisecond):
	}
	if ev := r.events(); len(ev) != 2 {
		t.Fatalf("%d events, want the grant and the passage only", len(ev))
	}
}

func TestForcedPassageRaisesAlarm(t *testing.T) {
	r := newRig(t, gate.Timing{})
	r.input(hwtest.Passage, true)
	r.want(gate.Forced)
	ev := r.events()
	if len(ev) != 1 || ev[0].Kind != cache.EventForcedPassage {
		t.Fatalf("events %+v, want a forced passage", ev)
	}
	if r.pins.Pins[hwtest.Buzzer].Level() != gpio.High || r.pins.Pins[hwtest.Red].Level() != gpio.High {
		t.Fatal("no alarm on forced passage")
	}
	if outs := r.relayOuts(); !eqLevels(outs, locked) {
		t.Fatalf("relay moved: %v", outs)
	}
}

func TestPassageSensorStuckLocksAndAlarms(t *testing.T) {
	r := newRig(t, gate.Timing{PassMax: 30 * time.Second})
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.input(hwtest.Passage, true)
	r.want(gate.Passed)
	r.clock.Advance(30 * time.Second)
	r.want(gate.Blocked)
	if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
		t.Fatalf("relay %v, want locked again", outs)
	}
	ev := r.events()
	if last := ev[len(ev)-1]; last.Kind != cache.EventAlarm {
		t.Fatalf("last event %+v, want an alarm", last)
	}
}

func TestEmergencyHoldsTheGateOpen(t *testing.T) {
	r := newRig(t, gate.Timing{})
	r.input(hwtest.Emergency, true)
	r.want(gate.EmergencyOn)
	if r.pins.Pins[hwtest.Relay].Level() != unlocked {
		t.Fatal("relay not unlocked by the emergency input")
	}
	// Free passage: no alarm, and scans are not needed.
	r.input(hwtest.Passage, true)
	r.want(gate.FreePassage)
	r.input(hwtest.Passage, false)
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Ignored)
	r.clock.Advance(time.Hour) // held open however long it lasts
	if r.pins.Pins[hwtest.Relay].Level() != unlocked {
		t.Fatal("relay locked while the emergency input is still active")
	}
	r.input(hwtest.Emergency, false)
	r.want(gate.EmergencyOff)
	if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
		t.Fatalf("relay %v, want [locked unlocked locked]", outs)
	}
	var kinds []cache.EventKind
	for _, e := range r.events() {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) != 2 || kinds[0] != cache.EventEmergency || kinds[1] != cache.EventEmergency {
		t.Fatalf("events %v, want emergency engaged and released only", kinds)
	}
}

func TestGrantNotRecordedKeepsTheGateShut(t *testing.T) {
	r := newRig(t, gate.Timing{})
	r.log.setFail(errors.New("disk full"))
	r.scan(r.token(0, verify.StepOf(now0)))
	o := r.want(gate.Denied)
	if o.Err == nil {
		t.Fatal("no error on the outcome")
	}
	if outs := r.relayOuts(); !eqLevels(outs, locked) {
		t.Fatalf("relay moved without a durable record: %v", outs)
	}
	r.log.setFail(nil)
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
}

func TestShutdownDuringGrantLocks(t *testing.T) {
	r := newRig(t, gate.Timing{})
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.stop()
	for _, n := range []string{hwtest.Relay, hwtest.Green, hwtest.Red, hwtest.Buzzer} {
		want := gpio.Low
		if n == hwtest.Relay {
			want = locked
		}
		if got := r.pins.Pins[n].Level(); got != want {
			t.Errorf("%s at %v after shutdown, want %v", n, got, want)
		}
	}
}

func TestGarbageFloodIsRecordedSparingly(t *testing.T) {
	r := newRig(t, gate.Timing{})
	for i := 0; i < 100; i++ {
		r.scan([]byte("garbage"))
		r.want(gate.Denied)
	}
	if ev := r.events(); len(ev) != 1 {
		t.Fatalf("%d events for 100 malformed scans in one second, want 1", len(ev))
	}
	r.clock.Advance(2 * time.Second)
	r.scan([]byte("garbage"))
	r.want(gate.Denied)
	ev := r.events()
	if len(ev) != 2 || !strings.Contains(ev[1].Detail, "+99 more") {
		t.Fatalf("events %+v, want a second one counting the 99 left out", ev)
	}
	// And a valid code still opens the gate.
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
}

func TestTimingValidate(t *testing.T) {
	for _, tm := range []gate.Timing{
		{Pulse: -1}, {Pulse: time.Minute}, {PassTimeout: time.Millisecond}, {PassTimeout: time.Hour},
		{Pulse: 9 * time.Second, PassTimeout: 5 * time.Second}, {PassMax: time.Second}, {Deny: -time.Second},
	} {
		if err := tm.Validate(); err == nil {
			t.Errorf("%+v accepted", tm)
		}
	}
	if err := (gate.Timing{}).Validate(); err != nil {
		t.Errorf("defaults refused: %v", err)
	}
}

// flaky is an output whose next n drives to level fail.
type flaky struct {
	hw.Output
	mu    sync.Mutex
	level bool
	n     int
}

func (f *flaky) Set(on bool) error {
	f.mu.Lock()
	fail := f.n > 0 && on == f.level
	if fail {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		return errors.New("EIO")
	}
	return f.Output.Set(on)
}

func (f *flaky) failNext(level bool, n int) {
	f.mu.Lock()
	f.level, f.n = level, n
	f.mu.Unlock()
}

// eventually advances the fake clock in small steps until cond holds,
// giving the input watchers (real goroutines, slow under qemu) real time
// too; it gives up after 10 s.
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("never: %s", what)
		}
		r.clock.Advance(100 * time.Millisecond)
		_ = r.ctrl.Ping(time.Second)
		time.Sleep(time.Millisecond)
	}
}

func (r *rig) alarms() int {
	n := 0
	for _, e := range r.events() {
		if e.Kind == cache.EventAlarm {
			n++
		}
	}
	return n
}

func TestFailedLockIsRetriedUntilLocked(t *testing.T) {
	var relay *flaky
	r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { relay = &flaky{Output: b.Relay}; b.Relay = relay })
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	relay.failNext(false, 2)
	r.input(hwtest.Passage, true)
	r.want(gate.Passed)
	r.input(hwtest.Passage, false)
	r.want(gate.Closed)
	if r.pins.Pins[hwtest.Relay].Level() != unlocked {
		t.Fatal("the injected failure did not happen")
	}
	r.eventually("relay locked after the failures", func() bool { return r.pins.Pins[hwtest.Relay].Level() == locked })
	if n := r.alarms(); n != 2 {
		t.Fatalf("%d alarm events, want 2 (failed, works again)", n)
	}
}

func TestFailedEmergencyOpenIsRetried(t *testing.T) {
	var relay *flaky
	r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { relay = &flaky{Output: b.Relay}; b.Relay = relay })
	relay.failNext(true, 1)
	r.input(hwtest.Emergency, true)
	r.want(gate.EmergencyOn)
	r.eventually("relay held open", func() bool { return r.pins.Pins[hwtest.Relay].Level() == unlocked })
	r.input(hwtest.Emergency, false)
	r.want(gate.EmergencyOff)
	if r.pins.Pins[hwtest.Relay].Level() != locked {
		t.Fatal("relay not locked after the emergency")
	}
}

func TestFailedUnlockTurnsThePassengerAwayForGood(t *testing.T) {
	var relay *flaky
	r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { relay = &flaky{Output: b.Relay}; b.Relay = relay })
	relay.failNext(true, 1)
	r.scan(r.token(0, verify.StepOf(now0)))
	if o := r.want(gate.Denied); o.Err == nil {
		t.Fatal("denial without the relay's error")
	}
	for i := 0; i < 50; i++ { // no retry may unlock it later
		r.clock.Advance(100 * time.Millisecond)
		_ = r.ctrl.Ping(time.Second)
	}
	if got := levels(r); got != "L" {
		t.Fatalf("relay went %s, want it never unlocked", got)
	}
	var alarm bool
	for _, e := range r.events() {
		alarm = alarm || (e.Kind == cache.EventAlarm && strings.Contains(e.Detail, "turned away"))
	}
	if !alarm {
		t.Fatal("no event says the granted passenger was turned away")
	}
}

func levels(r *rig) string {
	var b strings.Builder
	for _, l := range r.relayOuts() {
		if l == locked {
			b.WriteString("L")
		} else {
			b.WriteString("U")
		}
	}
	return b.String()
}

func TestScanCannotSilenceTheAlarm(t *testing.T) {
	r := newRig(t, gate.Timing{Alarm: 5 * time.Second, Deny: 2 * time.Second})
	r.input(hwtest.Passage, true)
	r.want(gate.Forced)
	r.scan([]byte("anything"))
	r.want(gate.Denied)
	for i := 0; i < 30; i++ { // 3 s: past the deny pattern, within the alarm
		r.clock.Advance(100 * time.Millisecond)
		_ = r.ctrl.Ping(time.Second)
	}
	if r.pins.Pins[hwtest.Red].Level() != gpio.High {
		t.Fatal("the alarm stopped early after a scan")
	}
	r.eventually("alarm over", func() bool { return r.pins.Pins[hwtest.Red].Level() == gpio.Low })
}

func TestSomeoneInThePassageAtBootIsNotForced(t *testing.T) {
	r := newRigWith(t, gate.Timing{}, func(p *hwtest.Board) { p.Set(hwtest.Passage, gpio.High) }, nil)
	// Wait until the controller has the sensor's first report.
	r.eventually("the passage sensor's first report", func() bool { return r.ctrl.Status().Passage })
	r.input(hwtest.Passage, false) // they walk out
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted) // the first outcome: no forced passage before it
	if ev := r.events(); len(ev) != 1 {
		t.Fatalf("events %+v, want only the grant", ev)
	}
}

// deadInput is an input whose watch fails at once.
type deadInput struct{ hw.Input }

func (deadInput) Watch(ctx context.Context, ch chan<- bool) error { return errors.New("EIO") }

func TestDeadPassageSensorTakesTheGateOutOfService(t *testing.T) {
	r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { b.Passage = deadInput{b.Passage} })
	r.eventually("alarm for the dead sensor", func() bool { return r.alarms() == 1 })
	r.scan(r.token(0, verify.StepOf(now0)))
	if o := r.want(gate.Denied); o.Err == nil || !strings.Contains(o.Err.Error(), "passage sensor") {
		t.Fatalf("outcome %+v, want out of service", o)
	}
	if got := levels(r); got != "L" {
		t.Fatalf("relay went %s", got)
	}
}

// stagedVerifier is the verifier, reporting known stage times.
type stagedVerifier struct {
	gate.Verifier
	stages verify.Stages
}

func (v stagedVerifier) Verify(token []byte) (verify.Decision, error) {
	d, err := v.Verifier.Verify(token)
	d.Stages = v.stages
	return d, err
}

// send hands the controller a scan as the scanner would.
func (r *rig) send(s gate.Scan) {
	r.t.Helper()
	select {
	case r.scans <- s:
	case <-time.After(5 * time.Second):
		r.t.Fatal("controller did not take the scan")
	}
}

func TestOutcomeStages(t *testing.T) {
	known := verify.Stages{Decode: 3 * time.Microsecond, Lookup: 40 * time.Microsecond, Tag: 5 * time.Microsecond}
	r := newRigFull(t, gate.Timing{}, nil, nil, func(v gate.Verifier) gate.Verifier { return stagedVerifier{v, known} })
	at := r.clock.Now()
	r.send(gate.Scan{Text: r.token(0, verify.StepOf(now0)), Began: at.Add(-250 * time.Millisecond), At: at})
	st := r.want(gate.Granted).Stages
	if st.Read != 250*time.Millisecond {
		t.Errorf("read stage %v, want At − Began = 250ms", st.Read)
	}
	if st.Decode != known.Decode || st.Lookup != known.Lookup || st.Tag != known.Tag {
		t.Errorf("stages %+v: want the verifier's %+v", st, known)
	}
	if st.Record <= 0 || st.Relay <= 0 {
		t.Errorf("stages %+v: want the record (fsync) and the relay timed", st)
	}

	// A denial: recorded, no relay; a scan without Began has no read stage.
	r.clock.Advance(8 * time.Second)
	r.want(gate.Lapsed)
	r.send(gate.Scan{Text: r.token(3, verify.StepOf(now0)), At: r.clock.Now()})
	o := r.want(gate.Denied)
	if o.Decision.Reason != verify.Revoked {
		t.Fatalf("reason %v, want REVOKED", o.Decision.Reason)
	}
	if st := o.Stages; st.Read != 0 || st.Relay != 0 || st.Record <= 0 || st.Lookup != known.Lookup {
		t.Errorf("denial's stages %+v: want no read or relay stage, the record and the verifier's timed", st)
	}

	// A scan not checked has no stages.
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.send(gate.Scan{Text: r.token(1, verify.StepOf(now0)), Began: at, At: r.clock.Now()})
	if o := r.want(gate.Ignored); o.Stages != (gate.Stages{}) {
		t.Errorf("ignored scan's stages %+v, want none", o.Stages)
	}
}
