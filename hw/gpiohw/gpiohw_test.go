package gpiohw_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"periph.io/x/conn/v3/gpio"

	"gateagent/hw"
	"gateagent/hw/hwtest"
)

func TestOutputsSafeBeforeAnyInputIsTouched(t *testing.T) {
	for _, activeLow := range []bool{true, false} {
		pins := hwtest.NewBoard()
		b, err := pins.Open(hwtest.Wiring(activeLow))
		if err != nil {
			t.Fatal(err)
		}
		safe := gpio.Level(activeLow) // the relay's inactive level
		ops := pins.Journal.Ops()
		if len(ops) == 0 || ops[0] != (hwtest.Op{Pin: hwtest.Relay, Kind: "out", Level: safe}) {
			t.Fatalf("active_low=%v: first operation %+v, want the relay driven %v", activeLow, ops[:1], safe)
		}
		outs := map[string]bool{hwtest.Relay: true, hwtest.Green: true, hwtest.Red: true, hwtest.Buzzer: true}
		seen := map[string]bool{}
		for _, op := range ops {
			if outs[op.Pin] {
				if !seen[op.Pin] && op.Pin != hwtest.Relay && op.Level != gpio.Low {
					t.Errorf("%s first driven %v, want Low (off, active-high)", op.Pin, op.Level)
				}
				seen[op.Pin] = true
				continue
			}
			if len(seen) < len(outs) {
				t.Fatalf("input %s touched (%s) before every output was safe (safe so far: %v)", op.Pin, op.Kind, seen)
			}
		}
		if err := b.Relay.Set(true); err != nil {
			t.Fatal(err)
		}
		if got := pins.Pins[hwtest.Relay].Level(); got != !safe {
			t.Errorf("active_low=%v: relay on drove %v", activeLow, got)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if got := pins.Pins[hwtest.Relay].Level(); got != safe {
			t.Errorf("active_low=%v: relay at %v after Close, want %v", activeLow, got, safe)
		}
	}
}

func TestMissingPinsAreNamedAndOutputsLeftSafe(t *testing.T) {
	pins := hwtest.NewBoard()
	w := hwtest.Wiring(true)
	w.Passage.Pin = "GPIO99"
	w.Buzzer.Pin = ""
	_, err := pins.Open(w)
	if err == nil {
		t.Fatal("opened a board without its buzzer and with an unknown passage pin")
	}
	got := hw.PinErrors(err)
	if len(got) != 2 {
		t.Fatalf("%d pin errors in %v, want the buzzer's and the passage's", len(got), err)
	}
	if e := got[0]; e.Line != "buzzer" || e.Pin != "" || e.Key() != "hw.buzzer.pin" || !errors.Is(e, hw.ErrMissing) {
		t.Errorf("first: %+v (%s), want the buzzer missing", e, e.Key())
	}
	if e := got[1]; e.Line != "passage" || e.Pin != "GPIO99" || e.Key() != "hw.passage.pin" || !errors.Is(e, hw.ErrNoPin) {
		t.Errorf("second: %+v, want no pin GPIO99 for the passage", e)
	}
	if !errors.Is(err, hw.ErrMissing) || !errors.Is(err, hw.ErrNoPin) {
		t.Errorf("error %v is not ErrMissing and ErrNoPin", err)
	}
	if got := pins.Pins[hwtest.Relay].Level(); got != gpio.High {
		t.Errorf("relay left at %v, want its safe level", got)
	}
	w = hwtest.Wiring(true)
	w.Approach.Pin = hwtest.Approach // without a trigger
	if _, err := hwtest.NewBoard().Open(w); err == nil || !strings.Contains(err.Error(), "trigger") {
		t.Errorf("approach without trigger: %v", err)
	}
}

// TestInputWatchReportsChanges runs in a synctest bubble: the watcher's
// timers and the fake pin's edge waits run on the bubble's clock, so
// "nothing was reported" is checked once every goroutine is idle.
func TestInputWatchReportsChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pins := hwtest.NewBoard()
		w := hwtest.Wiring(true)
		w.Passage.ActiveLow = true
		w.Debounce = 5 * time.Millisecond
		pins.Set(hwtest.Passage, gpio.High) // idle: active-low input pulled high
		b, err := pins.Open(w)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ch := make(chan bool, 8)
		done := make(chan error, 1)
		go func() { done <- b.Passage.Watch(ctx, ch) }()
		next := func() bool {
			t.Helper()
			select {
			case v := <-ch:
				return v
			case <-time.After(2 * time.Second):
				t.Fatal("no change reported")
			}
			return false
		}
		if next() {
			t.Fatal("first report: active, want inactive (the line is high, active-low)")
		}
		pins.Set(hwtest.Passage, gpio.Low)
		if !next() {
			t.Fatal("low level not reported as active")
		}
		// A glitch shorter than the debounce is not a change: the
		// watcher sees the line go high (it waits out the debounce),
		// the line is low again before that, six debounce times pass on
		// the bubble's clock, and nothing is reported.
		pins.Set(hwtest.Passage, gpio.High)
		synctest.Wait()
		pins.Set(hwtest.Passage, gpio.Low)
		time.Sleep(30 * time.Millisecond)
		synctest.Wait()
		select {
		case v := <-ch:
			t.Fatalf("glitch reported as %v", v)
		default:
		}
		pins.Set(hwtest.Passage, gpio.High)
		if next() {
			t.Fatal("high level not reported as inactive")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v", err)
		}
	})
}
