package gate_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"

	"gateagent/event"
	"gateagent/gate"
	"gateagent/hw/hwtest"
	"gateagent/verify"
)

// testRun is what a Test call returned.
type testRun struct {
	res gate.TestResult
	err error
}

// startTest runs Test in the background and returns once the controller
// has started it (its first step done, its timer set).
func (r *rig) startTest(ctx context.Context, kind gate.TestKind, pulse time.Duration) <-chan testRun {
	r.t.Helper()
	ch := make(chan testRun, 1)
	go func() {
		res, err := r.ctrl.Test(ctx, kind, pulse)
		ch <- testRun{res, err}
	}()
	r.holds("the test started", func() bool { return r.ctrl.Status().State == "testing" })
	return ch
}

// testEnded waits for the test's result.
func (r *rig) testEnded(ch <-chan testRun) testRun {
	r.t.Helper()
	select {
	case tr := <-ch:
		return tr
	case <-time.After(5 * time.Second):
		r.t.Fatal("the test did not end")
	}
	return testRun{}
}

// stillRunning checks that the test has not ended once the controller
// has acted on all it was given.
func (r *rig) stillRunning(ch <-chan testRun, when string) {
	r.t.Helper()
	r.settle()
	select {
	case tr := <-ch:
		r.t.Fatalf("%s: the test ended (%+v, %v), want it still running", when, tr.res, tr.err)
	default:
	}
}

// advanceTo moves the fake clock by d and checks that pin is at level
// once the controller has finished that step (its next timer set: a fake
// clock's timer counts from the fake time it was made at).
func (r *rig) advanceTo(d time.Duration, pin string, level gpio.Level) {
	r.t.Helper()
	r.advance(d)
	if got := r.pins.Pins[pin].Level(); got != level {
		r.t.Fatalf("%s at %v %v later, want %v", pin, got, d, level)
	}
}

// finishRelayTest runs a relay test of pulse that sees no one to its end.
func (r *rig) finishRelayTest(ch <-chan testRun, pulse time.Duration) testRun {
	r.t.Helper()
	r.advanceTo(pulse, hwtest.Relay, locked)
	r.clock.Advance(gate.TestConfirm)
	return r.testEnded(ch)
}

// finishIndicatorTest runs an indicator test to its end.
func (r *rig) finishIndicatorTest(ch <-chan testRun) testRun {
	r.t.Helper()
	r.advanceTo(time.Second, hwtest.Red, gpio.High)
	r.advanceTo(time.Second, hwtest.Buzzer, gpio.High)
	r.clock.Advance(300 * time.Millisecond)
	return r.testEnded(ch)
}

// technicianEvents returns the details of the technician events.
func (r *rig) technicianEvents() []string {
	var d []string
	for _, e := range r.events() {
		if e.Kind == event.Technician {
			d = append(d, e.Detail)
		}
	}
	return d
}

func TestRelayTestPulsesTheRelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.startTest(context.Background(), gate.TestRelay, 0) // 0: the default 500ms
		if got := r.pins.Pins[hwtest.Relay].Level(); got != unlocked {
			t.Fatalf("relay %v during the test, want %v (energised)", got, unlocked)
		}
		if s := r.ctrl.Status().State; s != "testing" {
			t.Errorf("state %q during the test, want testing", s)
		}
		r.clock.Advance(499 * time.Millisecond)
		r.stillRunning(ch, "1ms before the pulse's end")
		if got := r.pins.Pins[hwtest.Relay].Level(); got != unlocked {
			t.Fatal("relay released before the pulse's end")
		}
		r.advanceTo(time.Millisecond, hwtest.Relay, locked)
		r.clock.Advance(gate.TestConfirm - time.Millisecond)
		r.stillRunning(ch, "1ms before the confirmation window's end")
		r.clock.Advance(time.Millisecond)
		tr := r.testEnded(ch)
		if tr.err != nil {
			t.Fatal(tr.err)
		}
		if tr.res.Kind != gate.TestRelay || tr.res.PassageSeen || !tr.res.PassageAt.IsZero() {
			t.Errorf("result %+v, want a relay test that saw no one", tr.res)
		}
		if !tr.res.Started.Equal(now0) || tr.res.Ended.Sub(tr.res.Started) != 500*time.Millisecond+gate.TestConfirm {
			t.Errorf("test from %v to %v, want from %v for the pulse and the confirmation window", tr.res.Started, tr.res.Ended, now0)
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay driven %v, want [locked unlocked locked]", outs)
		}
		if d := r.technicianEvents(); len(d) != 1 || d[0] != "relay test: 500ms pulse; passage sensor saw no one" {
			t.Errorf("technician events %q", d)
		}
		if ev := r.events(); len(ev) != 1 || ev[0].Direction != verify.Entry || !ev[0].Time.Equal(r.clock.Now()) {
			t.Errorf("events %+v, want the test alone, stamped now", ev)
		}
		if s := r.ctrl.Status().State; s != "idle" {
			t.Errorf("state %q after the test, want idle", s)
		}
		r.noOutcome()
		// The gate works as before.
		r.scan(r.token(0, verify.StepOf(r.clock.Now())))
		r.want(gate.Granted)
	})
}

func TestRelayTestPassageDuringThePulseConfirms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.startTest(context.Background(), gate.TestRelay, time.Second)
		r.clock.Advance(200 * time.Millisecond)
		r.input(hwtest.Passage, true)
		r.holds("the passage seen", func() bool { return r.ctrl.Status().Passage })
		r.stillRunning(ch, "during the pulse") // the pulse runs its length
		if r.pins.Pins[hwtest.Relay].Level() != unlocked {
			t.Fatal("the passage cut the pulse short")
		}
		r.input(hwtest.Passage, false)
		r.holds("the passage clear", func() bool { return !r.ctrl.Status().Passage })
		r.advanceTo(800*time.Millisecond, hwtest.Relay, locked)
		tr := r.testEnded(ch) // at once: no confirmation window to wait for
		if tr.err != nil || !tr.res.PassageSeen || tr.res.PassageAt.Sub(tr.res.Started) != 200*time.Millisecond {
			t.Fatalf("result %+v, %v: want the passage seen 200ms into the pulse", tr.res, tr.err)
		}
		if tr.res.Ended.Sub(tr.res.Started) != time.Second {
			t.Errorf("ended %v after the start, want at the pulse's end", tr.res.Ended.Sub(tr.res.Started))
		}
		// Not a forced passage: no outcome, no alarm, no event but the test.
		r.noOutcome()
		for _, pin := range []string{hwtest.Red, hwtest.Buzzer} {
			if l := r.pins.Journal.Levels(pin); !eqLevels(l, gpio.Low) {
				t.Errorf("%s driven %v during the test, want it never on", pin, l)
			}
		}
		ev := r.events()
		if len(ev) != 1 || ev[0].Kind != event.Technician || ev[0].Detail != "relay test: 1s pulse; passage sensor confirmed at +200ms" {
			t.Fatalf("events %+v, want the test alone, confirmed", ev)
		}
		if ev[0].Reason != verify.OK {
			t.Errorf("a test that ran in full recorded with reason %v, want OK", ev[0].Reason)
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay driven %v", outs)
		}
		// After the test a passage without a grant is forced again.
		r.input(hwtest.Passage, true)
		r.want(gate.Forced)
	})
}

func TestRelayTestPassageAfterThePulseEndsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.startTest(context.Background(), gate.TestRelay, 500*time.Millisecond)
		r.advanceTo(500*time.Millisecond, hwtest.Relay, locked)
		r.clock.Advance(time.Second)
		r.stillRunning(ch, "in the confirmation window")
		r.input(hwtest.Passage, true) // the turnstile latched one passage
		tr := r.testEnded(ch)
		if tr.err != nil || !tr.res.PassageSeen || tr.res.PassageAt.Sub(tr.res.Started) != 1500*time.Millisecond ||
			!tr.res.Ended.Equal(tr.res.PassageAt) {
			t.Fatalf("result %+v, %v: want the passage 1.5s after the start, and the end with it", tr.res, tr.err)
		}
		if d := r.technicianEvents(); len(d) != 1 || !strings.Contains(d[0], "confirmed at +1.5s") {
			t.Errorf("technician events %q", d)
		}
		r.input(hwtest.Passage, false)
		r.holds("the passage clear", func() bool { return !r.ctrl.Status().Passage })
		r.noOutcome()
	})
}

func TestTechnicianTestRefusedWhenBusy(t *testing.T) {
	busy := func(t *testing.T, r *rig, kind gate.TestKind, what string) {
		t.Helper()
		before := len(r.relayOuts())
		ctx, cancel := context.WithTimeout(context.Background(), time.Second) // a test that ran: cut short
		defer cancel()
		_, err := r.ctrl.Test(ctx, kind, 0)
		if !errors.Is(err, gate.ErrBusy) || !strings.Contains(err.Error(), what) {
			t.Fatalf("Test: %v, want ErrBusy saying %q", err, what)
		}
		if len(r.relayOuts()) != before {
			t.Fatal("a refused test moved the relay")
		}
		if d := r.technicianEvents(); len(d) != 0 {
			t.Fatalf("a refused test was recorded: %q", d)
		}
	}
	t.Run("grant", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, gate.Timing{})
			r.scan(r.token(0, verify.StepOf(now0)))
			r.want(gate.Granted)
			busy(t, r, gate.TestRelay, "a passenger is passing")
			r.input(hwtest.Passage, true)
			r.want(gate.Passed)
			busy(t, r, gate.TestIndicators, "a passenger is passing")
			r.input(hwtest.Passage, false)
			r.want(gate.Closed)
			ch := r.startTest(context.Background(), gate.TestRelay, 0) // idle again: allowed
			if tr := r.finishRelayTest(ch, 500*time.Millisecond); tr.err != nil {
				t.Fatal(tr.err)
			}
		})
	})
	t.Run("emergency", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, gate.Timing{})
			r.input(hwtest.Emergency, true)
			r.want(gate.EmergencyOn)
			busy(t, r, gate.TestRelay, "emergency")
			busy(t, r, gate.TestIndicators, "emergency")
			if r.pins.Pins[hwtest.Relay].Level() != unlocked {
				t.Fatal("the emergency's relay moved")
			}
		})
	})
	t.Run("alarm", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, gate.Timing{Alarm: 5 * time.Second})
			r.input(hwtest.Passage, true)
			r.want(gate.Forced)
			busy(t, r, gate.TestIndicators, "alarm")
		})
	})
	t.Run("another test", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			r := newRig(t, gate.Timing{})
			ch := r.startTest(context.Background(), gate.TestIndicators, 0)
			busy(t, r, gate.TestRelay, "another technician test")
			if tr := r.finishIndicatorTest(ch); tr.err != nil {
				t.Fatal(tr.err)
			}
		})
	})
}

func TestRelayTestPulseOutOfRange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ctx, cancel := context.WithTimeout(context.Background(), time.Second) // a test that ran: cut short
		defer cancel()
		for _, p := range []time.Duration{-time.Second, 10 * time.Millisecond, 49 * time.Millisecond, 5*time.Second + 1, time.Minute} {
			_, err := r.ctrl.Test(ctx, gate.TestRelay, p)
			if err == nil || errors.Is(err, gate.ErrBusy) || !strings.Contains(err.Error(), "50ms to 5s") {
				t.Errorf("pulse %v: %v, want an error giving the range", p, err)
			}
		}
		if _, err := r.ctrl.Test(ctx, gate.TestKind(9), 0); err == nil {
			t.Error("an unknown test was accepted")
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked) {
			t.Fatalf("relay driven %v", outs)
		}
		if ev := r.events(); len(ev) != 0 {
			t.Fatalf("events %+v", ev)
		}
	})
}

func TestScanDuringTechnicianTestIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.startTest(context.Background(), gate.TestRelay, 0)
		r.scan(r.token(0, verify.StepOf(now0)))
		if o := r.want(gate.Ignored); o.Note != "technician test under way" {
			t.Fatalf("note %q", o.Note)
		}
		if tr := r.finishRelayTest(ch, 500*time.Millisecond); tr.err != nil {
			t.Fatal(tr.err)
		}
		if ev := r.events(); len(ev) != 1 || ev[0].Kind != event.Technician {
			t.Fatalf("events %+v, want the test alone: the scan was not checked", ev)
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay driven %v, want the test's pulse alone", outs)
		}
		// Not queued: the same code now opens the gate once.
		r.noOutcome()
		r.scan(r.token(0, verify.StepOf(r.clock.Now())))
		r.want(gate.Granted)
	})
}

func TestEmergencyDuringTechnicianTestTakesOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.startTest(context.Background(), gate.TestRelay, time.Second)
		r.clock.Advance(200 * time.Millisecond)
		r.input(hwtest.Emergency, true)
		r.want(gate.EmergencyOn)
		tr := r.testEnded(ch)
		if !errors.Is(tr.err, gate.ErrInterrupted) || !strings.Contains(tr.err.Error(), "emergency") {
			t.Fatalf("Test: %v, want ErrInterrupted by the emergency", tr.err)
		}
		r.advance(time.Minute) // the test's pulse would have ended
		if r.pins.Pins[hwtest.Relay].Level() != unlocked {
			t.Fatal("relay locked during the emergency")
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked) {
			t.Fatalf("relay driven %v, want it energised from the test on, never locked between", outs)
		}
		if s := r.ctrl.Status(); s.State != "idle" || !s.Emergency {
			t.Errorf("status %+v, want idle under the emergency", s)
		}
		r.input(hwtest.Emergency, false)
		r.want(gate.EmergencyOff)
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay driven %v", outs)
		}
		if kinds, want := r.kinds(), []event.Kind{event.Technician, event.Emergency, event.Emergency}; !slices.Equal(kinds, want) {
			t.Fatalf("events %v, want %v", kinds, want)
		}
		if reason := r.events()[0].Reason; reason != verify.Undecided {
			t.Errorf("a test cut short recorded with reason %v, want UNDECIDED", reason)
		}
	})
}

func TestCancelledRelayTestLeavesTheRelayOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch := r.startTest(ctx, gate.TestRelay, 2*time.Second)
		r.clock.Advance(200 * time.Millisecond)
		cancel()
		tr := r.testEnded(ch)
		if !errors.Is(tr.err, context.Canceled) {
			t.Fatalf("Test: %v, want context.Canceled", tr.err)
		}
		if r.pins.Pins[hwtest.Relay].Level() != locked {
			t.Fatal("relay left energised after the cancellation")
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay driven %v", outs)
		}
		if tr.res.Ended.Sub(tr.res.Started) != 200*time.Millisecond {
			t.Errorf("test ended %v after its start, want 200ms", tr.res.Ended.Sub(tr.res.Started))
		}
		if d := r.technicianEvents(); len(d) != 1 || !strings.Contains(d[0], "2s pulse; ended after 200ms") {
			t.Errorf("technician events %q", d)
		}
		if s := r.ctrl.Status().State; s != "idle" {
			t.Errorf("state %q", s)
		}
		r.advance(time.Minute) // no timer of the test is left to move the relay
		if outs := r.relayOuts(); len(outs) != 3 {
			t.Fatalf("relay driven %v after the test", outs)
		}
	})
}

func TestIndicatorTestSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		start := len(r.pins.Journal.Ops())
		ch := r.startTest(context.Background(), gate.TestIndicators, 0)
		r.holds("green on", func() bool { return r.pins.Pins[hwtest.Green].Level() == gpio.High })
		r.clock.Advance(999 * time.Millisecond)
		r.stillRunning(ch, "1ms before green's end")
		if r.pins.Pins[hwtest.Green].Level() != gpio.High || r.pins.Pins[hwtest.Red].Level() != gpio.Low {
			t.Fatal("green put out early")
		}
		r.advanceTo(time.Millisecond, hwtest.Red, gpio.High)
		r.advanceTo(time.Second, hwtest.Buzzer, gpio.High)
		r.clock.Advance(299 * time.Millisecond)
		r.stillRunning(ch, "1ms before the buzzer's end")
		r.clock.Advance(time.Millisecond)
		tr := r.testEnded(ch)
		if tr.err != nil || tr.res.Kind != gate.TestIndicators || tr.res.Ended.Sub(tr.res.Started) != 2300*time.Millisecond {
			t.Fatalf("result %+v, %v: want the indicators over 2.3s", tr.res, tr.err)
		}
		// The changes of the three outputs, in order.
		level := map[string]gpio.Level{hwtest.Green: gpio.Low, hwtest.Red: gpio.Low, hwtest.Buzzer: gpio.Low}
		var seq []string
		for _, op := range r.pins.Journal.Ops()[start:] {
			if l, ok := level[op.Pin]; ok && op.Kind == "out" && op.Level != l {
				level[op.Pin] = op.Level
				seq = append(seq, op.Pin+"="+op.Level.String())
			}
		}
		if got, want := strings.Join(seq, " "), "GREEN=High GREEN=Low RED=High RED=Low BUZZER=High BUZZER=Low"; got != want {
			t.Fatalf("outputs %s, want %s", got, want)
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked) {
			t.Fatalf("relay driven %v by the indicator test", outs)
		}
		if d := r.technicianEvents(); len(d) != 1 || d[0] != "indicator test" {
			t.Errorf("technician events %q", d)
		}
	})
}

func TestForcedPassageDuringIndicatorTestAlarms(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.startTest(context.Background(), gate.TestIndicators, 0)
		r.input(hwtest.Passage, true)
		r.want(gate.Forced)
		if tr := r.testEnded(ch); !errors.Is(tr.err, gate.ErrInterrupted) {
			t.Fatalf("Test: %v, want ErrInterrupted", tr.err)
		}
		if r.pins.Pins[hwtest.Red].Level() != gpio.High || r.pins.Pins[hwtest.Green].Level() != gpio.Low {
			t.Fatal("no alarm after the forced passage, or green left on")
		}
		if kinds := r.kinds(); !slices.Equal(kinds, []event.Kind{event.Technician, event.ForcedPassage}) {
			t.Fatalf("events %v, want the test, then the forced passage", kinds)
		}
	})
}

func TestTechnicianTestNotRecordedStillReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		r.log.setFail(errors.New("disk full"))
		ch := r.startTest(context.Background(), gate.TestRelay, 0)
		tr := r.finishRelayTest(ch, 500*time.Millisecond)
		if tr.err != nil || tr.res.Ended.IsZero() {
			t.Fatalf("result %+v, %v: want the result although the event log failed", tr.res, tr.err)
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked, unlocked, locked) {
			t.Fatalf("relay driven %v", outs)
		}
	})
}

func TestTechnicianTestWithoutRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pins := hwtest.NewBoard()
		board, err := pins.Open(hwtest.Wiring(true))
		if err != nil {
			t.Fatal(err)
		}
		ctrl, err := gate.New(gate.Config{Verifier: stagedVerifier{}, Log: &faultyLog{}, Board: board,
			Direction: verify.Entry, Clock: clockwork.NewFakeClock()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := ctrl.Test(ctx, gate.TestRelay, 0); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Test without Run: %v, want the context's deadline", err)
		}
		if outs := pins.Journal.Levels(hwtest.Relay); !eqLevels(outs, locked) {
			t.Fatalf("relay driven %v, want only its safe level at open", outs)
		}
	})
}

// nextScan runs NextScan in the background and returns once it waits.
func (r *rig) nextScan(ctx context.Context) <-chan scanResult {
	r.t.Helper()
	ch := make(chan scanResult, 1)
	go func() {
		s, err := r.ctrl.NextScan(ctx)
		ch <- scanResult{s, err}
	}()
	r.holds("NextScan waiting", func() bool { return r.ctrl.Status().ScanWaiter })
	return ch
}

type scanResult struct {
	s   gate.Scan
	err error
}

func TestNextScanTakesTheScanUnchecked(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.nextScan(context.Background())
		tok := r.token(0, verify.StepOf(now0))
		r.scan(tok)
		var got scanResult
		select {
		case got = <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("NextScan did not return the scan")
		}
		if got.err != nil || string(got.s.Text) != string(tok) || !got.s.At.Equal(now0) {
			t.Fatalf("NextScan: %q at %v, %v; want the scan", got.s.Text, got.s.At, got.err)
		}
		if o := r.want(gate.Ignored); !strings.Contains(o.Note, "technician") {
			t.Errorf("note %q", o.Note)
		}
		if outs := r.relayOuts(); !eqLevels(outs, locked) {
			t.Fatalf("relay driven %v for a scan handed to a technician", outs)
		}
		if ev := r.events(); len(ev) != 0 {
			t.Fatalf("events %+v for a scan handed to a technician", ev)
		}
		if r.pins.Pins[hwtest.Red].Level() != gpio.Low {
			t.Fatal("red lamp lit for a scan handed to a technician")
		}
		// Nobody waits now: the same code is checked, and opens the gate.
		r.scan(tok)
		r.want(gate.Granted)
	})
}

func TestNextScanGivesUpWithItsContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		ch := r.nextScan(ctx)
		var got scanResult
		select {
		case got = <-ch:
		case <-time.After(5 * time.Second):
			t.Fatal("NextScan did not return when its context ended")
		}
		if !errors.Is(got.err, context.DeadlineExceeded) {
			t.Fatalf("NextScan: %v, want the context's deadline", got.err)
		}
		if r.ctrl.Status().ScanWaiter {
			t.Fatal("the waiter was left behind")
		}
		r.scan(r.token(0, verify.StepOf(now0)))
		r.want(gate.Granted) // checked as usual
	})
}

func TestNextScanOneWaiterAtATime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.nextScan(context.Background())
		second, cancel2 := context.WithTimeout(context.Background(), time.Second)
		defer cancel2()
		if _, err := r.ctrl.NextScan(second); !errors.Is(err, gate.ErrBusy) {
			t.Fatalf("second NextScan: %v, want ErrBusy", err)
		}
		r.scan([]byte("TR1:FIRST WAITER"))
		select {
		case got := <-ch:
			if got.err != nil || string(got.s.Text) != "TR1:FIRST WAITER" {
				t.Fatalf("first NextScan: %q, %v", got.s.Text, got.err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the first waiter did not get the scan")
		}
		// Free again.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		if _, err := r.ctrl.NextScan(ctx); errors.Is(err, gate.ErrBusy) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("NextScan after the first: %v, want only the deadline", err)
		}
	})
}

func TestTechnicianTestEndsWithRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, gate.Timing{})
		ch := r.startTest(context.Background(), gate.TestRelay, 0)
		r.stop()
		if tr := r.testEnded(ch); !errors.Is(tr.err, gate.ErrInterrupted) {
			t.Fatalf("Test: %v, want ErrInterrupted when Run ends", tr.err)
		}
		if r.pins.Pins[hwtest.Relay].Level() != locked {
			t.Fatal("relay left energised after Run ended")
		}
		if d := r.technicianEvents(); len(d) != 1 || !strings.Contains(d[0], "controller stopped") {
			t.Errorf("technician events %q", d)
		}
	})
}
