package scanner_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"gateagent/hw"
	"gateagent/internal/syncbuf"
	"gateagent/scanner"
)

// fakeInput is an approach sensor whose Watch passes on the levels the test
// sends; its first failures Watch calls fail at once.
type fakeInput struct {
	levels   chan bool
	failures atomic.Int32
	watches  atomic.Int32
}

var _ hw.Input = (*fakeInput)(nil)

func (*fakeInput) Name() string          { return "approach" }
func (*fakeInput) Active() (bool, error) { return false, nil }

func (f *fakeInput) Watch(ctx context.Context, ch chan<- bool) error {
	f.watches.Add(1)
	if f.failures.Add(-1) >= 0 {
		return errors.New("gpio: line busy")
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case l := <-f.levels:
			select {
			case ch <- l:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// set is one Set call on the fake output.
type set struct {
	on bool
	at time.Time
}

// fakeOutput records its Set calls; failOn makes Set(true) fail that many
// times.
type fakeOutput struct {
	mu     sync.Mutex
	calls  []set
	failOn int
	notify chan set
}

var _ hw.Output = (*fakeOutput)(nil)

func newFakeOutput() *fakeOutput { return &fakeOutput{notify: make(chan set, 100)} }

func (*fakeOutput) Name() string { return "trigger" }

func (o *fakeOutput) Set(on bool) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if on && o.failOn > 0 {
		o.failOn--
		return errors.New("gpio: write failed")
	}
	s := set{on, time.Now()}
	o.calls = append(o.calls, s)
	o.notify <- s
	return nil
}

func (o *fakeOutput) levels() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var b strings.Builder
	for _, c := range o.calls {
		if c.on {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

// expect waits for the next Set call and checks its level.
func (o *fakeOutput) expect(t *testing.T, on bool) set {
	t.Helper()
	select {
	case s := <-o.notify:
		if s.on != on {
			t.Fatalf("trigger set %v, want %v (calls %s)", s.on, on, o.levels())
		}
		return s
	case <-time.After(3 * time.Second):
		t.Fatalf("trigger not set %v within 3 s (calls %s)", on, o.levels())
	}
	return set{}
}

// quiet checks that the trigger is not touched for d: the tests run in
// synctest bubbles, so d passes on the bubble's clock (at once), and once
// every goroutine is idle no Set has come.
func (o *fakeOutput) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	time.Sleep(d) // fake time: the bubble's clock
	synctest.Wait()
	select {
	case s := <-o.notify:
		t.Fatalf("trigger set %v unexpectedly (calls %s)", s.on, o.levels())
	default:
	}
}

type trig struct {
	in     *fakeInput
	out    *fakeOutput
	cancel context.CancelFunc
	done   chan error
	logs   *syncbuf.Buffer
}

func startTrigger(t *testing.T, pulse time.Duration, failures int32) *trig {
	t.Helper()
	tr := &trig{in: &fakeInput{levels: make(chan bool)}, out: newFakeOutput(), logs: &syncbuf.Buffer{}}
	tr.in.failures.Store(failures)
	log := slog.New(slog.NewTextHandler(tr.logs, nil))
	tr.cancel, tr.done = background(t, tr.logs, func(ctx context.Context) error { return scanner.RunTrigger(ctx, tr.in, tr.out, pulse, log) })
	return tr
}

func (tr *trig) send(t *testing.T, level bool) {
	t.Helper()
	select {
	case tr.in.levels <- level:
	case <-time.After(3 * time.Second):
		t.Fatalf("RunTrigger did not take level %v within 3 s", level)
	}
}

// stop cancels RunTrigger and checks it returns context.Canceled.
func (tr *trig) stop(t *testing.T) {
	t.Helper()
	tr.cancel()
	select {
	case err := <-tr.done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RunTrigger returned %v, want context.Canceled", err)
		}
		tr.done <- err
	case <-time.After(3 * time.Second):
		t.Fatal("RunTrigger did not return within 3 s of the cancellation")
	}
}

func TestTriggerPulses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const pulse = 40 * time.Millisecond
		tr := startTrigger(t, pulse, 0)
		tr.out.expect(t, false) // off at start
		tr.send(t, false)       // nobody there
		tr.out.quiet(t, 20*time.Millisecond)

		for range 2 {
			tr.send(t, true) // someone steps up
			on := tr.out.expect(t, true)
			off := tr.out.expect(t, false)
			if d := off.at.Sub(on.at); d != pulse {
				t.Errorf("pulse of %v, want %v", d, pulse)
			}
			tr.out.quiet(t, 2*pulse) // one pulse while they stay
			tr.send(t, false)        // they walk through
			tr.out.quiet(t, 10*time.Millisecond)
		}
		tr.stop(t)
		tr.out.expect(t, false) // left off
		if got := tr.out.levels(); got != "010100" {
			t.Errorf("trigger driven %s, want 010100", got)
		}
	})
}

func TestTriggerActiveAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := startTrigger(t, 30*time.Millisecond, 0)
		tr.out.expect(t, false)
		tr.send(t, true) // Watch's first level: someone already there
		tr.out.expect(t, true)
		tr.out.expect(t, false)
	})
}

func TestTriggerOffWhenStoppedMidPulse(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := startTrigger(t, time.Hour, 0)
		tr.out.expect(t, false)
		tr.send(t, true)
		tr.out.expect(t, true)
		tr.stop(t)
		tr.out.expect(t, false)
		if got := tr.out.levels(); got != "010" {
			t.Errorf("trigger driven %s, want 010", got)
		}
	})
}

func TestTriggerSurvivesFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := startTrigger(t, 20*time.Millisecond, 2) // the sensor fails twice
		tr.out.expect(t, false)
		tr.out.mu.Lock()
		tr.out.failOn = 1 // and the trigger once
		tr.out.mu.Unlock()
		tr.send(t, true) // taken by the third Watch
		if n := tr.in.watches.Load(); n != 3 {
			t.Errorf("%d Watch calls, want 3", n)
		}
		tr.out.quiet(t, 30*time.Millisecond) // Set(true) failed
		tr.send(t, false)
		tr.send(t, true)
		tr.out.expect(t, true)
		tr.out.expect(t, false)
		logs := tr.logs.String()
		for _, want := range []string{"approach sensor failed", "line busy", "trigger line failed", "write failed"} {
			if !strings.Contains(logs, want) {
				t.Errorf("no %q in the log:\n%s", want, logs)
			}
		}
	})
}

func TestTriggerBadArguments(t *testing.T) {
	ctx := context.Background()
	out := newFakeOutput()
	if err := scanner.RunTrigger(ctx, nil, out, time.Second, nil); err == nil {
		t.Error("nil input accepted")
	}
	if err := scanner.RunTrigger(ctx, &fakeInput{}, nil, time.Second, nil); err == nil {
		t.Error("nil output accepted")
	}
	if err := scanner.RunTrigger(ctx, &fakeInput{}, out, 0, nil); err == nil || !strings.Contains(err.Error(), "pulse") {
		t.Errorf("zero pulse: %v", err)
	}
}
