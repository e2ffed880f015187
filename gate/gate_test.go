package gate_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/hw/hwtest"
	"gateagent/internal/syncbuf"
	"gateagent/verify"
)

// The relay is wired active-low, as most relay boards are: locked is High.
const (
	locked   = gpio.High
	unlocked = gpio.Low
)

// rig is one gate on fake pins with a real cache file and a fake clock.
// The tests run it in a synctest bubble: the controller, its input
// watchers and the pins' timers run there, so settle (synctest.Wait)
// proves them all idle, and a test can assert what did not happen as soon
// as it has settled, without waiting for it. TestOutcomeStages runs
// outside one: its stages are real latencies, and a bubble's clock stands
// still while code runs.
type rig struct {
	t        *testing.T
	pins     *hwtest.Board
	board    *hw.Board
	store    *cache.Store
	log      *faultyLog
	clock    clockwork.FakeClock
	ctrl     *gate.Controller
	scans    chan gate.Scan
	outcomes chan gate.Outcome
	certs    []verify.Cert
	logs     *syncbuf.Buffer // the controller's log, as text
	cancel   context.CancelFunc
	done     chan error
}

// faultyLog is the journal, with writes made to fail on demand.
type faultyLog struct {
	*cache.Journal
	mu   sync.Mutex
	fail error
	// relayAtAppend is the relay pin's level each time an event was
	// appended: a grant must be on disk before the relay moves.
	relayAtAppend []gpio.Level
	relay         *hwtest.Pin
}

func (l *faultyLog) AppendEvent(e event.Event) (uint64, error) {
	l.mu.Lock()
	err := l.fail
	l.relayAtAppend = append(l.relayAtAppend, l.relay.Level())
	l.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return l.Journal.AppendEvent(e)
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
		scans: make(chan gate.Scan), outcomes: make(chan gate.Outcome, 64), logs: &syncbuf.Buffer{}}
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
	r.store = cachetest.OpenStore(t)
	b := cachetest.Batch(0, 4, 4)
	b.Revokes = []verify.CertID{b.Upserts[3].ID}
	if _, err := r.store.Cache.Apply(b); err != nil {
		t.Fatal(err)
	}
	r.certs = b.Upserts
	r.log = &faultyLog{Journal: r.store.Journal, relay: r.pins.Pins[hwtest.Relay]}
	v, err := verify.New(verify.Config{Store: r.store, Clock: verify.ClockFunc(r.clock.Now),
		Policy: verify.DefaultPolicy(verify.Entry), TrustedAfter: cachetest.Epoch.Add(-24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var gv gate.Verifier = v
	if wrap != nil {
		gv = wrap(v)
	}
	cfg := gate.Config{Verifier: gv, Log: r.log, Board: r.board, Direction: verify.Entry,
		Timing: timing, Clock: r.clock, Observe: func(o gate.Outcome) { r.outcomes <- o },
		Logger: slog.New(slog.NewTextHandler(r.logs, nil))}
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

func (r *rig) events() []event.Event {
	r.t.Helper()
	ev, err := r.store.Journal.Events(0, 1000)
	if err != nil {
		r.t.Fatal(err)
	}
	return ev
}

// kinds returns the kinds of the recorded events, in order.
func (r *rig) kinds() []event.Kind {
	var k []event.Kind
	for _, e := range r.events() {
		k = append(k, e.Kind)
	}
	return k
}

// walkThrough is a passenger through the open gate: the passage sensor
// sees them, then clears; the gate reports the passage, then closes.
func (r *rig) walkThrough() {
	r.t.Helper()
	r.input(hwtest.Passage, true)
	r.want(gate.Passed)
	r.input(hwtest.Passage, false)
	r.want(gate.Closed)
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
	synctest.Test(t, func(t *testing.T) {
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
		if len(ev) != 1 || ev[0].Kind != event.Decision || ev[0].Reason != verify.OK {
			t.Fatalf("events %+v, want one OK decision", ev)
		}
		if r.log.relayAtAppend[0] != locked {
			t.Fatal("the grant's event was written after the relay moved")
		}
		r.walkThrough()
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay driven %v, want [locked unlocked locked]", outs)
		}
		ev = r.events()
		if len(ev) != 2 || ev[1].Kind != event.Passage || ev[1].CertID != r.certs[0].ID {
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
	})
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
			synctest.Test(t, func(t *testing.T) {
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
				if len(ev) != 1 || ev[0].Reason != tc.reason || ev[0].Kind != event.Decision {
					t.Fatalf("events %+v, want one %v decision", ev, tc.reason)
				}
				// The red lamp goes out after the deny time.
				// (Each step of the pattern counts from the fake time the one before
				// it was seen to end: the clock moves in steps, so allow a second.)
				r.advanceUntil(3*time.Second, "red lamp and buzzer off after the deny time (2 s)", func() bool {
					return r.pins.Pins[hwtest.Red].Level() == gpio.Low && r.pins.Pins[hwtest.Buzzer].Level() == gpio.Low
				})
			})
		})
	}
}

func TestDenialSignalsTellFamiliesApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Count the buzzer's beeps for each family.
		beeps := func(tok func(r *rig) []byte) int {
			r := newRig(t, gate.Timing{})
			buzz := r.pins.WaitOut(hwtest.Buzzer)
			r.scan(tok(r))
			r.want(gate.Denied)
			n := 0
			for range 40 {
				r.advance(100 * time.Millisecond)
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
	})
}

func TestGrantLapsesWithoutPassage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{PassTimeout: 8 * time.Second})
		r.scan(r.token(1, verify.StepOf(now0)))
		r.want(gate.Granted)
		r.clock.Advance(8 * time.Second)
		r.want(gate.Lapsed)
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay %v, want [locked unlocked locked]", outs)
		}
		// The issuer learns that the grant was not used.
		ev := r.events()
		if len(ev) != 2 || ev[1].Kind != event.Lapsed || ev[1].Reason != verify.OK || ev[1].CertID != r.certs[1].ID ||
			ev[1].Detail != "granted but not used: nobody entered within 8s" {
			t.Fatalf("events %+v, want the grant then its lapse", ev)
		}
		// No passage was recorded, so the passenger may scan again.
		r.scan(r.token(1, verify.StepOf(now0)))
		r.want(gate.Granted)
	})
}

func TestPulseReleasesTheRelayBeforePassage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
		r.walkThrough()
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay %v, want one pulse", outs)
		}
	})
}

func TestScanDuringPassageIsReportedNotQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		r.scan(r.token(0, verify.StepOf(now0)))
		r.want(gate.Granted)
		r.scan(r.token(1, verify.StepOf(now0)))
		if o := r.want(gate.Ignored); !strings.Contains(o.Note, "passing") {
			t.Fatalf("note %q", o.Note)
		}
		r.walkThrough()
		r.noOutcome() // the ignored scan does not come back once the gate is idle
		if ev := r.events(); len(ev) != 2 {
			t.Fatalf("%d events, want the grant and the passage only", len(ev))
		}
	})
}

func TestForcedPassageRaisesAlarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		r.input(hwtest.Passage, true)
		r.want(gate.Forced)
		ev := r.events()
		if len(ev) != 1 || ev[0].Kind != event.ForcedPassage {
			t.Fatalf("events %+v, want a forced passage", ev)
		}
		if r.pins.Pins[hwtest.Buzzer].Level() != gpio.High || r.pins.Pins[hwtest.Red].Level() != gpio.High {
			t.Fatal("no alarm on forced passage")
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked) {
			t.Fatalf("relay moved: %v", outs)
		}
	})
}

func TestPassageSensorStuckLocksAndAlarms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
		if last := ev[len(ev)-1]; last.Kind != event.Alarm {
			t.Fatalf("last event %+v, want an alarm", last)
		}
	})
}

func TestEmergencyHoldsTheGateOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
		r.advance(time.Hour) // held open however long it lasts
		if r.pins.Pins[hwtest.Relay].Level() != unlocked {
			t.Fatal("relay locked while the emergency input is still active")
		}
		r.input(hwtest.Emergency, false)
		r.want(gate.EmergencyOff)
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay %v, want [locked unlocked locked]", outs)
		}
		if kinds := r.kinds(); !slices.Equal(kinds, []event.Kind{event.Emergency, event.Emergency}) {
			t.Fatalf("events %v, want emergency engaged and released only", kinds)
		}
	})
}

func TestGrantNotRecordedKeepsTheGateShut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
	})
}

// TestRecordFaultClearsByItself: a gate whose event log cannot be written
// reports it (gate.Status) from the first unrecorded grant, and once the
// disk takes writes again it recovers with nobody scanning: its probe
// writes the outage's alarm event.
func TestRecordFaultClearsByItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		full := fmt.Errorf("write cache.db: %w", syscall.ENOSPC)
		r.log.setFail(full)
		r.scan(r.token(0, verify.StepOf(now0)))
		if o := r.want(gate.Denied); o.Err == nil {
			t.Fatal("an unrecorded grant was not refused with its error")
		}
		st := r.ctrl.Status()
		if st.RecordFault == "" || !errors.Is(st.RecordErr, syscall.ENOSPC) || !st.RecordFaultSince.Equal(now0) {
			t.Fatalf("status after the failed write: %q %v %v", st.RecordFault, st.RecordErr, st.RecordFaultSince)
		}
		// Still failing: the probe keeps the fault.
		r.advance(gate.RecordProbe)
		if st := r.ctrl.Status(); st.RecordFault == "" {
			t.Fatal("record fault cleared while writes still fail")
		}
		r.log.setFail(nil)
		r.advanceUntil(gate.RecordProbe, "the record fault cleared with nobody scanning", func() bool { return r.ctrl.Status().RecordFault == "" })
		var outage []string
		for _, e := range r.events() {
			if e.Kind == event.Alarm {
				outage = append(outage, e.Detail)
			}
		}
		if len(outage) != 1 || !strings.Contains(outage[0], "event log could not be written") || !strings.Contains(outage[0], "1 event not recorded") {
			t.Fatalf("alarm events %q, want the one outage", outage)
		}
		r.scan(r.token(0, verify.StepOf(now0)))
		r.want(gate.Granted)
	})
}

// TestRecordFaultClearsOnTheNextWrite: a write that succeeds clears the
// fault at once, and the outage is recorded after it.
func TestRecordFaultClearsOnTheNextWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		r.log.setFail(errors.New("EIO"))
		r.scan(r.token(1, verify.StepOf(now0)-5)) // stale: a denial whose record fails
		r.want(gate.Denied)
		if r.ctrl.Status().RecordFault == "" {
			t.Fatal("a failed denial record did not set the record fault")
		}
		r.log.setFail(nil)
		r.scan(r.token(0, verify.StepOf(now0)))
		r.want(gate.Granted)
		if st := r.ctrl.Status(); st.RecordFault != "" || st.RecordErr != nil || !st.RecordFaultSince.IsZero() {
			t.Fatalf("record fault not cleared by a grant that was recorded: %+v", st)
		}
		ev := r.events()
		if len(ev) != 2 || ev[0].Reason != verify.OK || ev[1].Kind != event.Alarm || !strings.Contains(ev[1].Detail, "1 event not recorded") {
			t.Fatalf("events %+v, want the grant then the outage", ev)
		}
	})
}

func TestShutdownDuringGrantLocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
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
	})
}

// TestGarbageFloodIsRecordedSparingly: a scanner sending 10,000 garbage
// lines in half a second leaves one malformed decision in the event log
// and one line in the log; the quiet timer alone (nobody scans any more)
// records how many decisions were left out when the second ends, and
// logs how many lines were held back when the log's interval ends.
func TestGarbageFloodIsRecordedSparingly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		for i := range 10000 {
			r.scan([]byte("garbage"))
			r.want(gate.Denied)
			if i%20 == 19 {
				r.clock.Advance(time.Millisecond) // 10,000 lines in 0.5 s
			}
		}
		denied := func() []string {
			var out []string
			for _, l := range strings.Split(r.logs.String(), "\n") {
				if strings.Contains(l, "msg=denied") {
					out = append(out, l)
				}
			}
			return out
		}
		if ev := r.events(); len(ev) != 1 {
			t.Fatalf("%d events for 10,000 malformed scans in one second, want 1", len(ev))
		}
		if d := denied(); len(d) != 1 || !strings.Contains(d[0], "reason=MALFORMED length=7") || strings.Contains(d[0], "cert=") {
			t.Fatalf("log lines for the flood: %q, want one, with the length and no cert", d)
		}
		r.advance(500 * time.Millisecond) // the second ends; nobody scans
		ev := r.events()
		if len(ev) != 2 || ev[1].Reason != verify.Malformed || ev[1].Detail != "9999 more malformed scans not recorded" || ev[1].CertID != (verify.CertID{}) {
			t.Fatalf("events %+v, want the timer's count of the 9,999 left out", ev)
		}
		r.advance(9 * time.Second) // the log's interval ends
		if d := denied(); len(d) != 2 || !strings.Contains(d[1], "repeated=9999 over=10s") {
			t.Fatalf("log lines %q, want the timer's line with repeated=9999", d)
		}
		// A quiet interval ends the run: the next garbage line is logged
		// and recorded at once, and a valid code still opens the gate.
		r.advance(10 * time.Second)
		r.scan([]byte("garbage"))
		r.want(gate.Denied)
		if ev, d := r.events(), denied(); len(ev) != 3 || len(d) != 3 || strings.Contains(d[2], "repeated") {
			t.Fatalf("after the flood: %d events, log %q; want a third event and line", len(ev), d)
		}
		r.scan(r.token(0, verify.StepOf(r.clock.Now())))
		r.want(gate.Granted)
	})
}

// TestForgedFloodLogsCountedEventsKept: 1,000 forged codes (a valid
// certificate's ID, a tag under another key) in one second: every one is
// refused BAD_TAG and recorded, with its certificate, in the event log;
// the log writes the first and then counts the rest when its interval
// ends; a valid code still opens the gate.
func TestForgedFloodLogsCountedEventsKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		forger := cachetest.Cert(99, 100)
		step := verify.StepOf(r.clock.Now())
		forged := []byte(verify.NewToken(&forger.Key, r.certs[0].ID, step).String())
		for i := range 1000 {
			r.scan(forged)
			if o := r.want(gate.Denied); o.Decision.Reason != verify.BadTag {
				t.Fatalf("forged code %d: %v, want BAD_TAG", i, o.Decision.Reason)
			}
			r.clock.Advance(time.Millisecond)
		}
		ev := r.events()
		if len(ev) != 1000 {
			t.Fatalf("%d events for 1,000 forged codes, want every one", len(ev))
		}
		for _, e := range ev {
			if e.Reason != verify.BadTag || e.CertID != r.certs[0].ID {
				t.Fatalf("event %+v, want BAD_TAG with the certificate", e)
			}
		}
		lines := func() []string {
			var out []string
			for _, l := range strings.Split(r.logs.String(), "\n") {
				if strings.Contains(l, "reason=BAD_TAG") {
					out = append(out, l)
				}
			}
			return out
		}
		if l := lines(); len(l) != 1 {
			t.Fatalf("%d log lines during the flood, want the first alone:\n%s", len(l), strings.Join(l, "\n"))
		}
		r.advance(10 * time.Second)
		if l := lines(); len(l) != 2 || !strings.Contains(l[1], "repeated=999") {
			t.Fatalf("log lines after the interval %q, want the count of the 999 held back", l)
		}
		r.scan(r.token(0, verify.StepOf(r.clock.Now())))
		r.want(gate.Granted)
	})
}

// TestClockDisputedByPassengers: authentic codes refused for the clock
// count once per passenger (one retrying an old screenshot is one); at
// gate.ClockDispute passengers in a row the status says so; a code from
// before the clock checks (garbage) changes nothing; the next authentic
// code on time clears it.
func TestClockDisputedByPassengers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		step := verify.StepOf(r.clock.Now())
		refused := func() int { return r.ctrl.Status().ClockRefused }
		for range 3 {
			r.scan(r.token(0, step-3)) // one passenger, an old screenshot
			r.want(gate.Denied)
		}
		if n := refused(); n != 1 {
			t.Fatalf("one passenger's stale codes counted %d, want 1", n)
		}
		r.scan([]byte("garbage"))
		r.want(gate.Denied)
		r.scan(r.token(1, step+3)) // a second passenger, from the future
		r.want(gate.Denied)
		if n := refused(); n != 2 {
			t.Fatalf("two passengers counted %d", n)
		}
		r.scan(r.token(2, step-3))
		r.want(gate.Denied)
		st := r.ctrl.Status()
		if st.ClockRefused != gate.ClockDispute || st.ClockRefusedSince.IsZero() {
			t.Fatalf("three passengers refused for the clock: status %d since %v, want %d", st.ClockRefused, st.ClockRefusedSince, gate.ClockDispute)
		}
		r.scan(r.token(0, step)) // on time: granted
		r.want(gate.Granted)
		if n := refused(); n != 0 {
			t.Fatalf("a code on time left %d counted", n)
		}
	})
}

var moreRE = regexp.MustCompile(`(\d+) more malformed scans? not recorded`)

// TestMalformedCountWithTheNextRecord: a malformed scan after the second
// ended, before the timer, carries the count itself; nothing is counted
// twice.
func TestMalformedCountWithTheNextRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		for range 3 {
			r.scan([]byte("garbage"))
			r.want(gate.Denied)
		}
		r.clock.Advance(2 * time.Second)
		r.scan([]byte("garbage"))
		r.want(gate.Denied)
		r.advance(2 * time.Second)
		r.stop() // at shutdown any count left is recorded
		left := 0
		for _, e := range r.events() {
			if m := moreRE.FindStringSubmatch(e.Detail); m != nil {
				n, _ := strconv.Atoi(m[1])
				left += n
			}
		}
		if left != 2 {
			t.Fatalf("events %+v count %d left out, want 2", r.events(), left)
		}
	})
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

// settle returns once the controller and its input watchers are idle:
// all they were given (a scan, an input's change, a timer that fired) has
// been acted on. In a bubble only.
func (r *rig) settle() { synctest.Wait() }

// advance moves the fake clock by d and settles: the timers due by then
// have fired and the controller has acted on them.
func (r *rig) advance(d time.Duration) {
	r.clock.Advance(d)
	r.settle()
}

// advanceUntil moves the fake clock in steps of 100ms, settling after
// each, until cond holds; it fails when cond does not hold within the
// gate's time given.
func (r *rig) advanceUntil(within time.Duration, what string, cond func() bool) {
	r.t.Helper()
	const step = 100 * time.Millisecond
	for waited := time.Duration(0); ; waited += step {
		r.settle()
		if cond() {
			return
		}
		if waited >= within {
			r.t.Fatalf("%s: not within %v on the gate's clock", what, within)
		}
		r.clock.Advance(step)
	}
}

// holds settles, then fails unless cond holds.
func (r *rig) holds(what string, cond func() bool) {
	r.t.Helper()
	r.settle()
	if !cond() {
		r.t.Fatalf("not so once the gate settled: %s", what)
	}
}

// noOutcome settles, then fails if the controller reported an outcome.
func (r *rig) noOutcome() {
	r.t.Helper()
	r.settle()
	select {
	case o := <-r.outcomes:
		r.t.Fatalf("unexpected outcome %v (%s)", o.Kind, o.Note)
	default:
	}
}

func (r *rig) alarms() int {
	n := 0
	for _, e := range r.events() {
		if e.Kind == event.Alarm {
			n++
		}
	}
	return n
}

func TestFailedLockIsRetriedUntilLocked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var relay *flaky
		r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { relay = &flaky{Output: b.Relay}; b.Relay = relay })
		r.scan(r.token(0, verify.StepOf(now0)))
		r.want(gate.Granted)
		relay.failNext(false, 2)
		r.walkThrough()
		if r.pins.Pins[hwtest.Relay].Level() != unlocked {
			t.Fatal("the injected failure did not happen")
		}
		if !r.ctrl.Status().RelayFault {
			t.Error("the relay's failure is not in the gate's status")
		}
		r.advanceUntil(2*time.Second, "relay locked after the failures (retried every second)", func() bool { return r.pins.Pins[hwtest.Relay].Level() == locked })
		if r.ctrl.Status().RelayFault {
			t.Error("the relay fault stayed in the status after the relay worked again")
		}
		if n := r.alarms(); n != 2 {
			t.Fatalf("%d alarm events, want 2 (failed, works again)", n)
		}
	})
}

func TestFailedEmergencyOpenIsRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var relay *flaky
		r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { relay = &flaky{Output: b.Relay}; b.Relay = relay })
		relay.failNext(true, 1)
		r.input(hwtest.Emergency, true)
		r.want(gate.EmergencyOn)
		r.advanceUntil(time.Second, "relay held open (retried every second)", func() bool { return r.pins.Pins[hwtest.Relay].Level() == unlocked })
		r.input(hwtest.Emergency, false)
		r.want(gate.EmergencyOff)
		if r.pins.Pins[hwtest.Relay].Level() != locked {
			t.Fatal("relay not locked after the emergency")
		}
	})
}

func TestFailedUnlockTurnsThePassengerAwayForGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var relay *flaky
		r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { relay = &flaky{Output: b.Relay}; b.Relay = relay })
		relay.failNext(true, 1)
		r.scan(r.token(0, verify.StepOf(now0)))
		if o := r.want(gate.Denied); o.Err == nil {
			t.Fatal("denial without the relay's error")
		}
		for range 50 { // no retry may unlock it later
			r.advance(100 * time.Millisecond)
		}
		if got := levels(r); got != "L" {
			t.Fatalf("relay went %s, want it never unlocked", got)
		}
		var alarm bool
		for _, e := range r.events() {
			alarm = alarm || (e.Kind == event.Alarm && strings.Contains(e.Detail, "turned away"))
		}
		if !alarm {
			t.Fatal("no event says the granted passenger was turned away")
		}
	})
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
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{Alarm: 5 * time.Second, Deny: 2 * time.Second})
		r.input(hwtest.Passage, true)
		r.want(gate.Forced)
		r.scan([]byte("anything"))
		r.want(gate.Denied)
		for range 30 { // 3 s: past the deny pattern, within the alarm
			r.advance(100 * time.Millisecond)
		}
		if r.pins.Pins[hwtest.Red].Level() != gpio.High {
			t.Fatal("the alarm stopped early after a scan")
		}
		r.advanceUntil(2*time.Second, "alarm over 5 s after the forced passage", func() bool { return r.pins.Pins[hwtest.Red].Level() == gpio.Low })
	})
}

func TestSomeoneInThePassageAtBootIsNotForced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRigWith(t, gate.Timing{}, func(p *hwtest.Board) { p.Set(hwtest.Passage, gpio.High) }, nil)
		r.holds("the controller has the passage sensor's first report", func() bool { return r.ctrl.Status().Passage })
		r.input(hwtest.Passage, false) // they walk out
		r.scan(r.token(0, verify.StepOf(now0)))
		r.want(gate.Granted) // the first outcome: no forced passage before it
		if ev := r.events(); len(ev) != 1 {
			t.Fatalf("events %+v, want only the grant", ev)
		}
	})
}

// deadInput is an input whose watch fails at once.
type deadInput struct{ hw.Input }

func (deadInput) Watch(ctx context.Context, ch chan<- bool) error { return errors.New("EIO") }

func TestDeadPassageSensorTakesTheGateOutOfService(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRigWith(t, gate.Timing{}, nil, func(b *hw.Board) { b.Passage = deadInput{b.Passage} })
		r.holds("an alarm for the dead sensor", func() bool { return r.alarms() == 1 })
		r.scan(r.token(0, verify.StepOf(now0)))
		if o := r.want(gate.Denied); o.Err == nil || !strings.Contains(o.Err.Error(), "passage sensor") {
			t.Fatalf("outcome %+v, want out of service", o)
		}
		if f := r.ctrl.Status().Fault; !strings.Contains(f, "passage sensor") {
			t.Fatalf("status fault %q, want the passage sensor", f)
		}
		if got := levels(r); got != "L" {
			t.Fatalf("relay went %s", got)
		}
	})
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

// watchedVerifier and watchedLog note whether the gate's decision was
// marked under way (Config.Foreground) when they were called.
type watchedVerifier struct {
	gate.Verifier
	active *atomic.Int32
	seen   []int32
}

func (v *watchedVerifier) Verify(token []byte) (verify.Decision, error) {
	v.seen = append(v.seen, v.active.Load())
	return v.Verifier.Verify(token)
}

type watchedLog struct {
	gate.Log
	active *atomic.Int32
	seen   []int32
}

func (l *watchedLog) AppendEvent(e event.Event) (uint64, error) {
	if e.Kind == event.Decision {
		l.seen = append(l.seen, l.active.Load())
	}
	return l.Log.AppendEvent(e)
}

// TestDecisionIsForeground: the gate marks each decision under way, from
// before the token is checked until its record is written and the relay
// set (the key cache holds its own writes back meanwhile), for a grant as
// for a refusal, and ends the mark once.
func TestDecisionIsForeground(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var active, begun, ended atomic.Int32
		var wv *watchedVerifier
		var wl *watchedLog
		r := newRigFull(t, gate.Timing{PassTimeout: 8 * time.Second}, nil, nil,
			func(v gate.Verifier) gate.Verifier { wv = &watchedVerifier{Verifier: v, active: &active}; return wv },
			func(c *gate.Config) {
				wl = &watchedLog{Log: c.Log, active: &active}
				c.Log = wl
				c.Foreground = func() func() {
					begun.Add(1)
					active.Add(1)
					return func() { ended.Add(1); active.Add(-1) }
				}
			})
		// Each scan's arrival mark (Scan.Release) ends once the scan is
		// dealt with: after its decision's own mark was taken, so that the
		// cache's writes are never let go between the two.
		var released []int32 // decisions begun when each scan was released
		scan := func(text []byte) {
			r.send(gate.Scan{Text: text, At: r.clock.Now(), Release: func() { released = append(released, begun.Load()) }})
		}
		scan(r.token(1, verify.StepOf(now0)))
		o := r.want(gate.Granted)
		synctest.Wait() // the outcome is observed before the decision's end is marked
		if active.Load() != 0 || begun.Load() != 1 || ended.Load() != 1 {
			t.Fatalf("after the grant: %d decisions under way, %d begun, %d ended; want 0, 1, 1", active.Load(), begun.Load(), ended.Load())
		}
		scan(r.token(1, verify.StepOf(now0))) // during the passage: not checked
		r.want(gate.Ignored)
		r.clock.Advance(8 * time.Second)
		r.want(gate.Lapsed)
		scan(r.token(3, verify.StepOf(now0))) // revoked
		if o = r.want(gate.Denied); o.Decision.Reason != verify.Revoked {
			t.Fatalf("reason %v, want REVOKED", o.Decision.Reason)
		}
		synctest.Wait()
		if begun.Load() != 2 || ended.Load() != 2 {
			t.Fatalf("after a grant and a refusal: %d begun, %d ended; want 2 and 2", begun.Load(), ended.Load())
		}
		if want := []int32{1, 1, 2}; !slices.Equal(released, want) {
			t.Errorf("decisions begun as each scan's arrival mark was released: %v, want %v (a grant, a scan not checked, a refusal)", released, want)
		}
		if len(wv.seen) != 2 || wv.seen[0] != 1 || wv.seen[1] != 1 {
			t.Errorf("decisions under way when each token was checked: %v, want [1 1]", wv.seen)
		}
		if len(wl.seen) != 2 || wl.seen[0] != 1 || wl.seen[1] != 1 {
			t.Errorf("decisions under way when each decision was recorded: %v, want [1 1]", wl.seen)
		}
	})
}
