package hw

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Sim is a simulated gate board: its outputs print their changes and its
// inputs are set by the program (the demo plays the passenger with them).
// It is what `hw.kind = "sim"` runs on a machine without GPIO.
type Sim struct {
	mu       sync.Mutex
	w        io.Writer
	onChange func(name string, on bool)
	outs     map[string]bool
	inputs   map[string]*SimInput
}

// NewSim returns a simulated board that prints "hw: relay on" style lines
// to w (nil: silent) and calls onChange (may be nil) for each output change.
func NewSim(w io.Writer, onChange func(name string, on bool)) *Sim {
	return &Sim{w: w, onChange: onChange, outs: map[string]bool{}, inputs: map[string]*SimInput{}}
}

// Board returns the simulated board, every output off. It has all the
// lines but the approach sensor and scanner trigger.
func (s *Sim) Board() *Board {
	b := &Board{
		Relay: s.output("relay"), Green: s.output("green"), Red: s.output("red"), Buzzer: s.output("buzzer"),
		Passage: s.Input("passage"), Emergency: s.Input("emergency"),
	}
	_ = b.Safe()
	return b
}

// Output reports the last level set on the named output.
func (s *Sim) Output(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outs[name]
}

func (s *Sim) output(name string) Output { return &simOutput{s: s, name: name} }

type simOutput struct {
	s    *Sim
	name string
}

func (o *simOutput) Name() string { return o.name }

func (o *simOutput) Set(on bool) error {
	s := o.s
	s.mu.Lock()
	prev, seen := s.outs[o.name]
	s.outs[o.name] = on
	w, cb := s.w, s.onChange
	s.mu.Unlock()
	if seen && prev == on {
		return nil
	}
	if w != nil {
		fmt.Fprintf(w, "hw: %s %s\n", o.name, onOff(on))
	}
	if cb != nil {
		cb(o.name, on)
	}
	return nil
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}

// Input returns the named simulated input, making it (inactive) on first use.
func (s *Sim) Input(name string) *SimInput {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := s.inputs[name]
	if in == nil {
		in = &SimInput{name: name}
		s.inputs[name] = in
	}
	return in
}

// SimInput is a simulated input line. Each watcher sees every change, in
// order (up to 64 pending; a watcher that far behind sees the latest level).
type SimInput struct {
	name     string
	mu       sync.Mutex
	level    bool
	watchers map[chan bool]struct{}
}

// Name is the line's function.
func (i *SimInput) Name() string { return i.name }

// Set changes the input's level.
func (i *SimInput) Set(active bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if i.level == active {
		return
	}
	i.level = active
	for w := range i.watchers {
		select {
		case w <- active:
		default: // full: replace the oldest pending change with this one
			select {
			case <-w:
			default:
			}
			w <- active
		}
	}
}

// Active reads the input.
func (i *SimInput) Active() (bool, error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.level, nil
}

// Watch reports the input's level, then each change, until ctx ends.
func (i *SimInput) Watch(ctx context.Context, ch chan<- bool) error {
	changes := make(chan bool, 64)
	i.mu.Lock()
	if i.watchers == nil {
		i.watchers = map[chan bool]struct{}{}
	}
	i.watchers[changes] = struct{}{}
	level := i.level
	i.mu.Unlock()
	defer func() {
		i.mu.Lock()
		delete(i.watchers, changes)
		i.mu.Unlock()
	}()
	for {
		select {
		case ch <- level:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case level = <-changes:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
