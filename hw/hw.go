package hw

import (
	"context"
	"fmt"
)

// Output is one digital output in logical terms: on is active.
type Output interface {
	Name() string
	Set(on bool) error
}

// Input is one digital input in logical terms: true is active.
type Input interface {
	Name() string
	// Active reads the input now.
	Active() (bool, error)
	// Watch sends the input's level on ch each time it changes (after
	// debouncing), starting with its level when Watch begins, until ctx
	// ends. It returns ctx.Err() then, or the error that stopped it.
	Watch(ctx context.Context, ch chan<- bool) error
}

// Board is the set of lines of one gate. Relay, Green, Red, Buzzer and
// Passage are required; Emergency, Approach and Trigger are optional (nil).
type Board struct {
	Relay  Output // energised: the turnstile is unlocked
	Green  Output
	Red    Output
	Buzzer Output

	Passage   Input // someone is in the passage
	Emergency Input // the emergency switch is engaged: free passage
	Approach  Input // someone stands at the scanner (starts a scan with Trigger)
	Trigger   Output
}

// Outputs lists the board's outputs, relay first.
func (b *Board) Outputs() []Output {
	out := []Output{b.Relay, b.Green, b.Red, b.Buzzer}
	if b.Trigger != nil {
		out = append(out, b.Trigger)
	}
	return out
}

// Validate checks that every required line is present.
func (b *Board) Validate() error {
	for _, l := range []struct {
		name string
		ok   bool
	}{
		{"relay", b.Relay != nil}, {"green", b.Green != nil}, {"red", b.Red != nil},
		{"buzzer", b.Buzzer != nil}, {"passage", b.Passage != nil},
	} {
		if !l.ok {
			return fmt.Errorf("%w: %s", ErrMissing, l.name)
		}
	}
	return nil
}

// Safe drives every output off, the relay first, and returns the first
// error (after trying them all).
func (b *Board) Safe() error {
	var first error
	for _, o := range b.Outputs() {
		if o == nil {
			continue
		}
		if err := o.Set(false); err != nil && first == nil {
			first = fmt.Errorf("hw: drive %s to its safe level: %w", o.Name(), err)
		}
	}
	return first
}

// Close drives every output off: what is left on the lines when the agent
// is gone.
func (b *Board) Close() error { return b.Safe() }
