package agent

import (
	"errors"
	"fmt"

	"gateagent/cache"
	"gateagent/internal/instance"
)

// StartError is a start-up step that failed. The agent released what the
// steps before it had opened, and the board's outputs are off.
type StartError struct {
	// Step names what was being done: lock, board, cache, feed, verify,
	// gate, scanner, systemd.
	Step string
	// Key is the config key (or section) the step read, when one did.
	Key string
	Err error
}

func (e *StartError) Error() string {
	if e.Key != "" {
		return fmt.Sprintf("start-up: %s (%s): %v", e.Step, e.Key, e.Err)
	}
	return fmt.Sprintf("start-up: %s: %v", e.Step, e.Err)
}

func (e *StartError) Unwrap() error { return e.Err }

// Transient reports whether a start-up error may go away by itself: another
// agent holds the gate or its cache file. Every other start-up error is
// the config's or the machine's (a missing file or directory, a
// permission, a pin, a damaged file) and stays until someone fixes it.
func Transient(err error) bool {
	return errors.Is(err, instance.ErrHeld) || errors.Is(err, cache.ErrLocked)
}
