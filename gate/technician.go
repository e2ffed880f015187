package gate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jonboulle/clockwork"

	"gateagent/event"
	"gateagent/hw"
	"gateagent/verify"
)

// Technicians' tests (gateagent diag relay, diag indicators) and the
// diag scan hand-over. A test is a state of Run's state machine (testing):
// it starts only from idle, its timers run on c.clock in Run's select, and
// its outputs move through the same paths as a passenger's (setRelay,
// with its retries and alarms).

// ErrBusy refuses a technician's request the gate cannot serve now; the
// error says what to wait for.
var ErrBusy = errors.New("gate busy")

// ErrInterrupted reports a technician's test cut short by the gate: the
// emergency input, a forced passage during an indicator test, a dead
// passage sensor, or Run's end. The error says which.
var ErrInterrupted = errors.New("gate: technician test interrupted")

// Relay test limits.
const (
	// DefaultTestPulse is the relay test's pulse when none is given.
	DefaultTestPulse = 500 * time.Millisecond
	// MinTestPulse and MaxTestPulse bound the relay test's pulse.
	MinTestPulse = 50 * time.Millisecond
	MaxTestPulse = 5 * time.Second
	// TestConfirm is how long after the relay test's pulse the passage
	// sensor is still watched for someone pushing through.
	TestConfirm = 3 * time.Second
)

// The indicator test: each output on alone for its time, in this order.
const (
	testGreen  = time.Second
	testRed    = time.Second
	testBuzzer = 300 * time.Millisecond
)

// requestWait bounds how long Test waits for Run to take its request, and
// to confirm the end of a test its caller gave up on.
const requestWait = 5 * time.Second

// String returns "relay" or "indicators".
func (k TestKind) String() string {
	switch k {
	case TestRelay:
		return "relay"
	case TestIndicators:
		return "indicators"
	}
	return fmt.Sprintf("TestKind(%d)", uint8(k))
}

type testRequest struct {
	ctx   context.Context
	kind  TestKind
	pulse time.Duration
	reply chan testReply // buffered: Run never waits on it
}

type testReply struct {
	res TestResult
	err error
}

// techTest is the test under way.
type techTest struct {
	req   *testRequest
	res   TestResult
	timer clockwork.Timer
	// step: for the relay, 0 during the pulse, 1 during the confirmation
	// window; for the indicators, the next output to light.
	step int
	// activeAtStart: the passage sensor was already active when the test
	// began (only a change to active counts as someone passing).
	activeAtStart bool
	outErr        error // the first output that failed (indicators)
}

// Test runs a technician's test of the gate's outputs on the running
// controller (Run must be running) and returns what it did:
//
//   - TestRelay energises the relay for pulse (0: DefaultTestPulse;
//     MinTestPulse to MaxTestPulse), de-energises it, and watches the
//     passage sensor from the start of the pulse until TestConfirm after
//     its end. The sensor going active in that time confirms the test
//     (PassageSeen, PassageAt): it is not a forced passage, and raises no
//     alarm. A passage during the pulse does not cut the pulse short (the
//     relay moves exactly as asked); once the pulse is over, one ends the
//     test at once.
//   - TestIndicators lights green for 1 s, then red for 1 s, then sounds
//     the buzzer for 300 ms, one at a time.
//
// A test runs only while the gate is idle: no passenger passing, no
// emergency, no alarm sounding, no other test; otherwise Test returns an
// error wrapping ErrBusy that says what to wait for. A gate out of service
// may be tested. Scans during a test are not checked (Ignored outcomes),
// and Status().State is "testing". The emergency input ends a test and
// takes over (error ErrInterrupted, the relay held open), as does a
// passage during an indicator test (a forced passage, alarmed as usual)
// or Run's end. When ctx ends the test stops at once, the relay off, and
// Test returns the result so far with ctx's error. Every test that ran is
// recorded in the event log (event.Technician); if that fails it is
// logged and the result still returned.
//
// Test returns an error without running anything when Run does not take
// the request within 5 s or before ctx ends.
func (c *Controller) Test(ctx context.Context, kind TestKind, pulse time.Duration) (TestResult, error) {
	res := TestResult{Kind: kind}
	switch kind {
	case TestRelay:
		if pulse == 0 {
			pulse = DefaultTestPulse
		}
		if pulse < MinTestPulse || pulse > MaxTestPulse {
			return res, fmt.Errorf("gate: relay test pulse %v: use %v to %v (a turnstile needs about 200ms to latch; 0 means %v)",
				pulse, MinTestPulse, MaxTestPulse, DefaultTestPulse)
		}
	case TestIndicators:
		pulse = 0
	default:
		return res, fmt.Errorf("gate: unknown test %v: use the relay or the indicators test", kind)
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("gate: %v test not started: %w", kind, err)
	}
	req := &testRequest{ctx: ctx, kind: kind, pulse: pulse, reply: make(chan testReply, 1)}
	wait := time.NewTimer(requestWait)
	defer wait.Stop()
	select {
	case c.testReq <- req:
	case <-ctx.Done():
		return res, fmt.Errorf("gate: %v test not started: %w", kind, ctx.Err())
	case <-wait.C:
		return res, fmt.Errorf("gate: %v test not started: the gate controller did not answer within %v; is the agent running?", kind, requestWait)
	}
	select {
	case r := <-req.reply:
		return r.res, r.err
	case <-ctx.Done():
	}
	// Run sees ctx end too: it stops the test, relay off, and replies.
	wait.Reset(requestWait)
	select {
	case r := <-req.reply:
		return r.res, r.err
	case <-wait.C:
		return res, fmt.Errorf("gate: %v test cancelled (%w), but the gate controller did not confirm that it stopped within %v", kind, ctx.Err(), requestWait)
	}
}

// busy says why the gate cannot run a test now, or nil when it is idle.
func (c *Controller) busy() error {
	switch {
	case c.emergency:
		return fmt.Errorf("%w: the emergency input holds the gate open; try again once it is released", ErrBusy)
	case c.state == testing:
		return fmt.Errorf("%w: another technician test (%v) is running; try again when it has ended", ErrBusy, c.test.res.Kind)
	case c.state != idle:
		return fmt.Errorf("%w: a passenger is passing; try again when the passage is clear", ErrBusy)
	case c.alarming:
		return fmt.Errorf("%w: an alarm is sounding; try again when it has stopped", ErrBusy)
	}
	return nil
}

// startTest starts a technician's test, on Run's goroutine.
func (c *Controller) startTest(req *testRequest) {
	if err := c.busy(); err != nil {
		req.reply <- testReply{TestResult{Kind: req.kind}, err}
		return
	}
	if err := req.ctx.Err(); err != nil {
		req.reply <- testReply{TestResult{Kind: req.kind}, fmt.Errorf("gate: %v test not started: %w", req.kind, err)}
		return
	}
	t := &techTest{req: req, res: TestResult{Kind: req.kind, Started: c.clock.Now()}, activeAtStart: c.passage}
	c.test, c.state = t, testing
	c.setStatus(func(s *Status) { s.State = testing.String() })
	c.log.Info("technician test started", "test", req.kind.String(), "pulse", req.pulse)
	switch req.kind {
	case TestRelay:
		if err := c.setRelay(true); err != nil {
			_ = c.setRelay(false) // stop retrying the unlock: drive it locked
			c.endTest(fmt.Errorf("gate: relay test: the relay could not be energised: %w", err))
			return
		}
		t.timer = c.clock.NewTimer(req.pulse)
	case TestIndicators:
		c.stopSignal() // a denial's lamp and beeps give way (not an alarm: busy)
		c.setGreen(false)
		c.nextIndicator()
	}
}

func (c *Controller) testTimerC() <-chan time.Time {
	if c.test == nil {
		return nil
	}
	return timerC(c.test.timer)
}

func (c *Controller) testCtxDone() <-chan struct{} {
	if c.test == nil {
		return nil
	}
	return c.test.req.ctx.Done()
}

// onTestTimer moves the test to its next step.
func (c *Controller) onTestTimer() {
	t := c.test
	t.timer = nil
	if t.res.Kind == TestIndicators {
		c.nextIndicator()
		return
	}
	if t.step == 0 { // the pulse is over
		// A failure is retried every second and raised as an alarm
		// (driveRelay); the test goes on.
		_ = c.setRelay(false)
		t.step = 1
		if t.res.PassageSeen {
			c.endTest(nil)
			return
		}
		t.timer = c.clock.NewTimer(TestConfirm)
		return
	}
	c.endTest(nil) // the confirmation window is over: no one passed
}

// indicator is one output of the indicator test.
type indicator struct {
	name string
	out  hw.Output
	dur  time.Duration
}

// indicators lists the indicator test's outputs, in order.
func (c *Controller) indicators() []indicator {
	b := c.cfg.Board
	return []indicator{{"green lamp", b.Green, testGreen}, {"red lamp", b.Red, testRed}, {"buzzer", b.Buzzer, testBuzzer}}
}

// nextIndicator turns the last output off and the next one on, or ends
// the test after the last.
func (c *Controller) nextIndicator() {
	t := c.test
	steps := c.indicators()
	if t.step > 0 {
		c.testOutput(steps[t.step-1].name, steps[t.step-1].out, false)
	}
	if t.step == len(steps) {
		var err error
		if t.outErr != nil {
			err = fmt.Errorf("gate: indicator test: %w", t.outErr)
		}
		c.endTest(err)
		return
	}
	s := steps[t.step]
	t.step++
	c.testOutput(s.name, s.out, true)
	t.timer = c.clock.NewTimer(s.dur)
}

// testOutput drives an indicator, keeping the first failure for the
// result.
func (c *Controller) testOutput(name string, o hw.Output, on bool) {
	if err := o.Set(on); err != nil {
		c.log.Warn(name+" output failed during the indicator test", "on", on, "err", err)
		if c.test != nil && c.test.outErr == nil {
			c.test.outErr = fmt.Errorf("%s output failed: %w", name, err)
		}
	}
}

// testPassage handles a change of the passage sensor during a test; it
// reports whether the change is the test's (false: handle it as usual,
// the test having ended).
func (c *Controller) testPassage(active bool) bool {
	t := c.test
	if t.res.Kind != TestRelay {
		if !active {
			return true
		}
		// The gate is locked: someone forced it. The alarm takes over.
		c.endTest(fmt.Errorf("%w: someone passed through the locked gate (forced passage)", ErrInterrupted))
		return false
	}
	if active && !t.res.PassageSeen {
		t.res.PassageSeen, t.res.PassageAt = true, c.clock.Now()
		c.log.Info("relay test: the passage sensor saw someone pass", "after", t.res.PassageAt.Sub(t.res.Started))
		if t.step == 1 { // the pulse is over: confirmed
			c.endTest(nil)
		}
	}
	return true
}

// endTest ends the test under way: its outputs off (the relay left to an
// emergency that holds it), back to idle, the test recorded, its caller
// answered with err.
func (c *Controller) endTest(err error) {
	t := c.test
	if t == nil {
		return
	}
	stop(&t.timer)
	switch t.res.Kind {
	case TestRelay:
		if !c.emergency {
			_ = c.setRelay(false)
		}
	case TestIndicators:
		for _, s := range c.indicators() {
			c.testOutput(s.name, s.out, false)
		}
	}
	c.test = nil
	c.state = idle
	c.setStatus(func(s *Status) { s.State = idle.String() })
	t.res.Ended = c.clock.Now()
	detail := t.detail(err)
	// OK: the test ran in full as asked; Undecided: it was cut short or
	// an output failed (the detail says which).
	reason := verify.OK
	if err != nil {
		reason = verify.Undecided
	}
	c.record(event.Event{Kind: event.Technician, Reason: reason, Time: c.cfg.Now(), Direction: c.cfg.Direction, Detail: truncate(detail)})
	if err != nil {
		c.log.Warn("technician test ended early or failed", "test", t.res.Kind.String(), "detail", detail)
	} else {
		c.log.Info("technician test done", "test", t.res.Kind.String(), "detail", detail)
	}
	t.req.reply <- testReply{t.res, err}
}

// detail is the test's event detail, e.g. "relay test: 500ms pulse;
// passage sensor confirmed at +1.2s".
func (t *techTest) detail(err error) string {
	var d string
	if t.res.Kind == TestRelay {
		d = fmt.Sprintf("relay test: %v pulse", t.req.pulse)
		switch {
		case t.res.PassageSeen:
			d += fmt.Sprintf("; passage sensor confirmed at +%v", t.res.PassageAt.Sub(t.res.Started).Round(time.Millisecond))
		case err == nil:
			d += "; passage sensor saw no one"
		}
		if t.activeAtStart {
			d += " (the sensor was already active at the start)"
		}
	} else {
		d = "indicator test"
	}
	if err != nil {
		d += fmt.Sprintf("; ended after %v: %v", t.res.Ended.Sub(t.res.Started).Round(time.Millisecond), err)
	}
	return d
}

// scanWaiter is a technician waiting for the next scan.
type scanWaiter struct {
	ch chan Scan // buffered: handed over once, under waitMu
}

// NextScan hands the next scan that reaches Run's loop to the caller
// instead of checking it (gateagent diag scan): no verification, no
// relay, no event, no denial signal; the gate beeps once if idle, and
// reports an Ignored outcome. Only one caller may wait at a time: another
// gets an error wrapping ErrBusy. When ctx ends first, the caller stops
// waiting (the next scan is checked as usual) and NextScan returns an
// error wrapping ctx's. A scan that arrives while nobody waits is checked
// as usual. If Run is not running, NextScan waits until ctx ends.
func (c *Controller) NextScan(ctx context.Context) (Scan, error) {
	if err := ctx.Err(); err != nil {
		return Scan{}, fmt.Errorf("gate: no scan: %w", err)
	}
	w := &scanWaiter{ch: make(chan Scan, 1)}
	c.waitMu.Lock()
	if c.waiter != nil {
		c.waitMu.Unlock()
		return Scan{}, fmt.Errorf("%w: someone else is already waiting for a scan (gateagent diag scan); try again when they are done", ErrBusy)
	}
	c.waiter = w
	c.setStatus(func(s *Status) { s.ScanWaiter = true })
	c.waitMu.Unlock()
	select {
	case s := <-w.ch:
		return s, nil
	case <-ctx.Done():
	}
	c.waitMu.Lock()
	defer c.waitMu.Unlock()
	if c.waiter == w {
		c.waiter = nil
		c.setStatus(func(s *Status) { s.ScanWaiter = false })
		return Scan{}, fmt.Errorf("gate: no scan came: %w", ctx.Err())
	}
	return <-w.ch, nil // handed over as ctx ended: it is in the buffer
}

// handOver gives s to the technician waiting for it, if any.
func (c *Controller) handOver(s Scan) bool {
	c.waitMu.Lock()
	w := c.waiter
	if w != nil {
		c.waiter = nil
		c.setStatus(func(s *Status) { s.ScanWaiter = false })
		w.ch <- s
	}
	c.waitMu.Unlock()
	if w == nil {
		return false
	}
	if c.state == idle && !c.emergency {
		c.signal(sigAck)
	}
	c.log.Info("scan handed to a technician (gateagent diag scan), not checked", "length", len(s.Text))
	c.observe(Outcome{Kind: Ignored, ScanAt: s.At, Note: "handed to a technician (gateagent diag scan): not checked"})
	return true
}
