package gate

import (
	"maps"
	"time"

	"gateagent/verify"
)

// OutcomeKind says what the gate did.
type OutcomeKind uint8

// The outcomes.
const (
	Granted      OutcomeKind = iota + 1 // valid token: recorded, relay unlocked, green
	Denied                              // refused: Decision.Reason says why (Err: the gate could not decide or act)
	Ignored                             // scan not checked: a passage is under way or the emergency input is engaged
	Passed                              // the granted passenger entered the passage: anti-passback recorded
	Closed                              // the passage is clear again: gate locked
	Lapsed                              // the granted passenger did not enter in time: gate locked
	Blocked                             // the passage sensor stayed active too long: gate locked, alarm
	Forced                              // passage without a grant: alarm
	EmergencyOn                         // emergency input engaged: gate held open
	EmergencyOff                        // emergency input released: gate locked
	FreePassage                         // someone passed while the emergency input held the gate open
)

var outcomeNames = [...]string{"", "granted", "denied", "ignored", "passed", "closed", "lapsed", "blocked", "forced", "emergency_on", "emergency_off", "free_passage"}

func (k OutcomeKind) String() string {
	if int(k) < len(outcomeNames) && k != 0 {
		return outcomeNames[k]
	}
	return "unknown"
}

// Outcome is one thing the gate did, as Config.Observe sees it.
type Outcome struct {
	Kind     OutcomeKind
	Decision verify.Decision // for scans and grants
	// ScanAt is when the scan that led here was read (zero otherwise).
	ScanAt time.Time
	// At is when the gate acted: for Granted, the instant the relay was
	// set, so At − ScanAt is the scan-to-relay latency.
	At   time.Time
	Note string // for Ignored: why
	Err  error  // for Denied: the gate could not decide or act
}

// Status is the controller's state for status pages and diag.
type Status struct {
	State     string            `json:"state"`
	Emergency bool              `json:"emergency"`
	Passage   bool              `json:"passage_active"`
	LastScan  time.Time         `json:"last_scan,omitzero"`
	Last      string            `json:"last_outcome,omitempty"`
	LastAt    time.Time         `json:"last_outcome_at,omitzero"`
	Outcomes  map[string]uint64 `json:"outcomes"`
	Reasons   map[string]uint64 `json:"reasons"`
}

// Status returns a copy of the controller's state.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.status
	s.Outcomes = maps.Clone(c.status.Outcomes)
	s.Reasons = maps.Clone(c.status.Reasons)
	return s
}

func (c *Controller) setStatus(f func(*Status)) {
	c.mu.Lock()
	f(&c.status)
	c.mu.Unlock()
}

func (c *Controller) observe(o Outcome) {
	c.setStatus(func(s *Status) {
		s.State = c.state.String()
		s.Last, s.LastAt = o.Kind.String(), o.At
		if !o.ScanAt.IsZero() {
			s.LastScan = o.ScanAt
		}
		s.Outcomes[o.Kind.String()]++
		if o.Kind == Granted || o.Kind == Denied {
			s.Reasons[o.Decision.Reason.String()]++
		}
	})
	if c.cfg.Observe != nil {
		c.cfg.Observe(o)
	}
}
