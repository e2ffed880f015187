// Package gpiohw drives a gate's lines on the board's GPIO pins through
// periph.io: the host drivers (host.Init) and pins found by name. It is the
// hardware driver, kept apart from package hw's interfaces so that nothing
// but the wiring (agent) and diag links periph's host drivers.
package gpiohw

import (
	"context"
	"errors"
	"fmt"
	"time"

	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"
	"periph.io/x/host/v3"

	"gateagent/hw"
)

// OpenHost initialises periph.io's host drivers and opens the gate's lines
// by name (see OpenPins).
func OpenHost(p hw.Pins) (*hw.Board, error) {
	if _, err := host.Init(); err != nil {
		return nil, fmt.Errorf("hw: initialise GPIO drivers: %w", err)
	}
	return OpenPins(p, func(name string) gpio.PinIO { return gpioreg.ByName(name) })
}

// OpenPins opens the gate's lines, looking each pin up by name with lookup
// (nil when absent). Outputs are driven to their safe level first, the
// relay before all others, and only then are inputs configured: nothing is
// read before every output is safe. A required line whose pin is missing is
// an error naming it; the outputs that were found are left safe.
func OpenPins(p hw.Pins, lookup func(string) gpio.PinIO) (*hw.Board, error) {
	p = p.WithDefaults()
	b := &hw.Board{}
	var errs []error
	// resolve finds a line's pin by name (no I/O), or records why not.
	resolve := func(fn string, l hw.Line, required bool) gpio.PinIO {
		switch {
		case l.Pin == "" && required:
			errs = append(errs, &hw.PinError{Line: fn, Err: hw.ErrMissing})
		case l.Pin == "":
		default:
			if pin := lookup(l.Pin); pin != nil {
				return pin
			}
			errs = append(errs, &hw.PinError{Line: fn, Pin: l.Pin, Err: hw.ErrNoPin})
		}
		return nil
	}
	outputs := []struct {
		fn       string
		line     hw.Line
		dst      *hw.Output
		required bool
	}{
		{"relay", p.Relay, &b.Relay, true}, {"green", p.Green, &b.Green, true}, {"red", p.Red, &b.Red, true},
		{"buzzer", p.Buzzer, &b.Buzzer, true}, {"trigger", p.Trigger, &b.Trigger, false},
	}
	inputs := []struct {
		fn       string
		line     hw.Line
		dst      *hw.Input
		required bool
	}{
		{"passage", p.Passage, &b.Passage, true}, {"emergency", p.Emergency, &b.Emergency, false},
		{"approach", p.Approach, &b.Approach, false},
	}
	// Outputs first, the relay before all: each is driven off as it opens.
	for _, o := range outputs {
		if pin := resolve(o.fn, o.line, o.required); pin != nil {
			out, err := NewOutput(o.fn, pin, o.line.ActiveLow)
			if err != nil {
				errs = append(errs, &hw.PinError{Line: o.fn, Pin: o.line.Pin, Err: err})
				continue
			}
			*o.dst = out
		}
	}
	// Then the inputs; after a failure they are only looked up, so the
	// error names every problem and nothing is read.
	failed := len(errs) > 0
	for _, in := range inputs {
		pin := resolve(in.fn, in.line, in.required)
		if pin == nil || failed {
			continue
		}
		i, err := NewInput(in.fn, pin, in.line, p.Debounce, p.Poll)
		if err != nil {
			errs = append(errs, &hw.PinError{Line: in.fn, Pin: in.line.Pin, Err: err})
			continue
		}
		*in.dst = i
	}
	if len(errs) == 0 && (b.Approach == nil) != (b.Trigger == nil) {
		errs = append(errs, errors.New("hw: approach and trigger come together: set both hw.approach.pin and hw.trigger.pin, or neither"))
	}
	if len(errs) > 0 {
		_ = b.Safe()
		return nil, errors.Join(errs...)
	}
	return b, nil
}

// PinOutput is an Output on a periph.io pin.
type PinOutput struct {
	name      string
	pin       gpio.PinOut
	activeLow bool
}

// NewOutput makes pin an output and drives it off at once.
func NewOutput(name string, pin gpio.PinOut, activeLow bool) (*PinOutput, error) {
	o := &PinOutput{name: name, pin: pin, activeLow: activeLow}
	if err := o.Set(false); err != nil {
		return nil, fmt.Errorf("drive it to its safe level: %w", err)
	}
	return o, nil
}

// Name is the line's function ("relay").
func (o *PinOutput) Name() string { return o.name }

// Set drives the line: on is the active level.
func (o *PinOutput) Set(on bool) error {
	if err := o.pin.Out(gpio.Level(on != o.activeLow)); err != nil {
		return fmt.Errorf("hw: set %s (%s) %v: %w", o.name, o.pin.Name(), on, err)
	}
	return nil
}

// PinInput is an Input on a periph.io pin.
type PinInput struct {
	name      string
	pin       gpio.PinIn
	activeLow bool
	edges     bool
	debounce  time.Duration
	poll      time.Duration
}

// NewInput makes pin an input with edge detection (polling when the pin
// has none).
func NewInput(name string, pin gpio.PinIn, l hw.Line, debounce, poll time.Duration) (*PinInput, error) {
	p, err := hw.ParsePull(l.Pull)
	if err != nil {
		return nil, fmt.Errorf("hw.%s.pull: %w", name, err)
	}
	pull := pulls[p]
	in := &PinInput{name: name, pin: pin, activeLow: l.ActiveLow, debounce: debounce, poll: poll, edges: true}
	if err := pin.In(pull, gpio.BothEdges); err != nil {
		in.edges = false
		if err := pin.In(pull, gpio.NoEdge); err != nil {
			return nil, fmt.Errorf("make it an input: %w", err)
		}
	}
	return in, nil
}

// pulls are periph's pulls for hw's.
var pulls = [...]gpio.Pull{hw.PullNoChange: gpio.PullNoChange, hw.PullNone: gpio.Float, hw.PullUp: gpio.PullUp, hw.PullDown: gpio.PullDown}

// Name is the line's function ("passage").
func (i *PinInput) Name() string { return i.name }

// Active reads the line.
func (i *PinInput) Active() (bool, error) { return bool(i.pin.Read()) != i.activeLow, nil }

// Watch reports changes of the line. It waits for edges when the pin has
// them and reads the level at least every poll, so a missed interrupt is
// caught; a change counts once the level has held for the debounce time.
func (i *PinInput) Watch(ctx context.Context, ch chan<- bool) error {
	last, _ := i.Active()
	select {
	case ch <- last:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		if i.edges {
			i.pin.WaitForEdge(i.poll)
		} else {
			t.Reset(i.poll)
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now, _ := i.Active()
		if now == last {
			continue
		}
		if i.debounce > 0 {
			t.Reset(i.debounce)
			select {
			case <-t.C:
			case <-ctx.Done():
				return ctx.Err()
			}
			if now, _ = i.Active(); now == last {
				continue
			}
		}
		last = now
		select {
		case ch <- now:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
