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
	Ignored                             // scan not checked: a passage, the emergency input or a technician's test is under way, or NextScan took it
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
	// Stages is how long each stage of a checked scan took (Granted and
	// Denied outcomes of a scan the verifier checked; zero otherwise).
	Stages Stages
	// At is when the gate acted: for Granted, the instant the relay was
	// set, so At − ScanAt is the scan-to-relay latency.
	At   time.Time
	Note string // for Ignored: why
	Err  error  // for Denied: the gate could not decide or act
}

// Stages is how long each stage of one scan took, from the scanner's
// first byte to the relay: the per-stage latency figures of diag and
// the metrics. They are real latencies, on the monotonic clock, whatever
// Config.Clock is. A stage that did not run is zero, as is a stage nobody
// timed: Read needs the scanner's Scan.Began, and Decode, Lookup and Tag
// a verifier that times its stages (verify.Config.Stages; the gate copies
// verify.Decision.Stages).
type Stages struct {
	Read   time.Duration // first byte of the frame to its terminator (Scan.Began to At)
	Decode time.Duration // parse the token text
	Lookup time.Duration // read the certificate from the key cache
	Tag    time.Duration // HMAC and constant-time comparison
	Record time.Duration // the decision written to the event log (fsync); zero when not recorded (malformed flood)
	Relay  time.Duration // driving the relay pin (grants only)
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
	// ScanWaiter: a technician waits in NextScan: the next scan is theirs,
	// not checked.
	ScanWaiter bool `json:"scan_waiter,omitempty"`

	// Fault says why the gate is out of service (an input it needs
	// cannot be read): every scan is refused until the agent restarts.
	Fault string `json:"fault,omitempty"`
	// RelayFault: the relay output failed and is driven again every
	// second; a grant while it fails turns the passenger away.
	RelayFault bool `json:"relay_fault,omitempty"`
	// RecordFault is the last failed write of the event log, from
	// RecordFaultSince on, while writes fail: a grant that cannot be
	// recorded is refused. It clears at the next write that succeeds (the
	// controller tries one every RecordProbe). RecordErr is the same
	// error, for errors.Is.
	RecordFault      string    `json:"record_fault,omitempty"`
	RecordFaultSince time.Time `json:"record_fault_since,omitzero"`
	RecordErr        error     `json:"-"`
	// ClockRefused counts the passengers (certificates) whose authentic
	// codes were refused in a row as CODE_STALE or CODE_FROM_FUTURE, from
	// ClockRefusedSince, with no authentic code on time between them: at
	// ClockDispute the clock codes are checked on disagrees with the
	// passengers' phones, and the gate cannot grant. An authentic code on
	// time (granted, or refused for what comes after the clock checks)
	// clears it.
	ClockRefused      int       `json:"clock_refused_in_a_row,omitempty"`
	ClockRefusedSince time.Time `json:"clock_refused_since,omitzero"`
}

// ClockDispute is how many passengers in a row, each with an authentic
// code, refused for the clock with none on time between them, say that
// the gate's clock (corrected by the issuer's) is wrong rather than their
// phones: one passenger retrying an old screenshot counts once.
const ClockDispute = 3

// watchClock keeps ClockRefused from a decision's reason.
func (c *Controller) watchClock(d verify.Decision, at time.Time) {
	switch {
	case d.Reason == verify.CodeStale || d.Reason == verify.CodeFromFuture:
		if c.clockOff == nil {
			c.clockOff = map[verify.CertID]struct{}{}
		}
		if len(c.clockOff) >= ClockDispute {
			return
		}
		c.clockOff[d.CertID] = struct{}{}
		n := len(c.clockOff)
		c.setStatus(func(s *Status) {
			if s.ClockRefused == 0 {
				s.ClockRefusedSince = at
			}
			s.ClockRefused = n
		})
	case d.Reason == verify.OK || d.Reason > verify.CodeFromFuture:
		if len(c.clockOff) == 0 {
			return
		}
		clear(c.clockOff)
		c.setStatus(func(s *Status) { s.ClockRefused, s.ClockRefusedSince = 0, time.Time{} })
	}
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
	if (o.Kind == Granted || o.Kind == Denied) && o.Err == nil {
		c.watchClock(o.Decision, o.At)
	}
	if c.cfg.Observe != nil {
		c.cfg.Observe(o)
	}
}

// TestKind is a technician's test of the gate's outputs (gateagent diag;
// see Controller.Test).
type TestKind uint8

// The tests.
const (
	TestRelay      TestKind = iota + 1 // energise the relay for a pulse, watch the passage sensor
	TestIndicators                     // green, red, then the buzzer, one after the other
)

// TestResult says what a technician's test did. Times are on the gate's
// Config.Clock.
type TestResult struct {
	Kind    TestKind  `json:"kind"`
	Started time.Time `json:"started"` // the test began: for the relay, the pulse began
	Ended   time.Time `json:"ended"`   // the test ended: its outputs back off, unless the emergency took over
	// PassageSeen: the passage sensor went active during the relay pulse
	// or within the confirmation time after it (someone pushed through:
	// the turnstile really unlocked).
	PassageSeen bool      `json:"passage_seen"`
	PassageAt   time.Time `json:"passage_at,omitzero"`
}
