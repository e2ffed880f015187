package hw

import (
	"fmt"
	"strings"
	"time"
)

// Line names one GPIO line of the board and how it is wired.
type Line struct {
	// Pin is the periph.io pin name ("GPIO17", "P1_11"); empty means the
	// line is not wired.
	Pin string `toml:"pin"`
	// ActiveLow: the line is active at the low level (an opto-isolated
	// input pulled up, a relay board switched by a low level).
	ActiveLow bool `toml:"active_low"`
	// Pull of an input: "none", "up", "down" or "" (leave as it is).
	Pull string `toml:"pull"`
}

// Pins is the wiring of a gate: the GPIO line of each function.
type Pins struct {
	Relay, Green, Red, Buzzer, Trigger Line
	Passage, Emergency, Approach       Line
	// Debounce is how long an input must hold a new level before it
	// counts. Default 20 ms; negative turns debouncing off.
	Debounce time.Duration
	// Poll is how often an input is read when no edge arrives (a missed
	// interrupt is caught within it). Default 50 ms.
	Poll time.Duration
}

// Input timing defaults.
const (
	DefaultDebounce = 20 * time.Millisecond
	DefaultPoll     = 50 * time.Millisecond
)

// WithDefaults fills the zero timings with their defaults.
func (p Pins) WithDefaults() Pins {
	if p.Debounce == 0 {
		p.Debounce = DefaultDebounce
	}
	if p.Poll == 0 {
		p.Poll = DefaultPoll
	}
	return p
}

// Pull is an input's pull resistor setting, as the config names it.
type Pull uint8

// The pulls.
const (
	PullNoChange Pull = iota // "": leave it as the board set it
	PullNone                 // "none" (or "float")
	PullUp                   // "up"
	PullDown                 // "down"
)

// ParsePull reads an input's pull setting.
func ParsePull(s string) (Pull, error) {
	switch strings.ToLower(s) {
	case "":
		return PullNoChange, nil
	case "none", "float":
		return PullNone, nil
	case "up":
		return PullUp, nil
	case "down":
		return PullDown, nil
	}
	return PullNoChange, fmt.Errorf("hw: pull %q: use none, up or down", s)
}
