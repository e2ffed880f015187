package hw

import (
	"errors"
	"fmt"
)

// Errors of the board's lines; a *PinError carries one of them (or the
// driver's own error) with the line it is about. Test with errors.Is.
var (
	// ErrMissing: a required line has no pin in the config.
	ErrMissing = errors.New("required line missing")
	// ErrNoPin: the board has no pin of the name the config gives.
	ErrNoPin = errors.New("no such pin")
)

// PinError is a line of the gate that cannot be used.
type PinError struct {
	Line string // the gate's function: "relay", "passage", …
	Pin  string // the pin name the config gives; "" when it gives none
	Err  error  // ErrMissing, ErrNoPin, or what the driver said
}

func (e *PinError) Error() string {
	if e.Pin == "" {
		return fmt.Sprintf("hw: %s: %v", e.Line, e.Err)
	}
	return fmt.Sprintf("hw: %s (pin %q): %v", e.Line, e.Pin, e.Err)
}

func (e *PinError) Unwrap() error { return e.Err }

// Key is the config key of the line's pin.
func (e *PinError) Key() string { return "hw." + e.Line + ".pin" }

// PinErrors lists every *PinError in err, which may join several.
func PinErrors(err error) []*PinError {
	var out []*PinError
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case nil:
		case *PinError:
			out = append(out, e)
		case interface{ Unwrap() []error }:
			for _, x := range e.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(e.Unwrap())
		}
	}
	walk(err)
	return out
}
