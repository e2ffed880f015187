// Package health says whether the gate can grant a valid code now and, if
// not, why: the one answer that /healthz, /status and gateagent diag give.
// Judge reads nothing itself: the agent (or diag, with the agent stopped)
// hands it the parts' own state, and every reader shows the same verdict.
//
// The causes are the ways a gate refuses everyone while it runs: its
// controller hangs, its event log cannot be written (a grant that cannot
// be recorded is refused), its cache's file system is read-only, a board
// fault, no certificates yet (never synced), a stale cache with
// refuse_when_stale, a clock before the agent's build, a scanner whose
// port is absent (unplugged, or never there), or a clock the passengers'
// codes dispute (gate.ClockDispute of them in a row refused for it). What to do about
// each is written where it is shown (diag, the log), not here.
package health

import (
	"fmt"
	"strings"
	"time"

	"gateagent/gate"
	"gateagent/keysync"
)

// Cause is one reason the gate cannot grant. Stored and sent by name:
// append new ones, never renumber.
type Cause uint8

// The causes.
const (
	Unresponsive     Cause = iota + 1 // the gate controller's loop does not answer
	NotRecording                      // the event log cannot be written: grants are refused
	CacheNotWritable                  // the key cache's file or file system cannot be written
	BoardFault                        // an input the gate needs cannot be read, or the relay output fails
	NeverSynced                       // waiting for the first key sync: no certificate known
	Stale                             // the key cache is stale and refuse_when_stale is set
	ClockUntrusted                    // the clock is before the agent's build date
	ScannerAbsent                     // the scanner's port is absent or lost: no code can be read
	ClockDisputed                     // passengers' authentic codes refused in a row for the clock
)

var causeNames = [...]string{"", "unresponsive", "not_recording", "cache_not_writable", "board_fault", "never_synced", "stale", "clock_untrusted", "scanner_absent", "clock_disputed"}

func (c Cause) String() string {
	if int(c) < len(causeNames) && c != 0 {
		return causeNames[c]
	}
	return fmt.Sprintf("cause(%d)", uint8(c))
}

// MarshalText writes the cause's name.
func (c Cause) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads a cause's name.
func (c *Cause) UnmarshalText(b []byte) error {
	for i, n := range causeNames {
		if i > 0 && string(b) == n {
			*c = Cause(i)
			return nil
		}
	}
	return fmt.Errorf("health: unknown cause %q", b)
}

// Causes lists every cause, in order.
func Causes() []Cause {
	out := make([]Cause, 0, len(causeNames)-1)
	for i := 1; i < len(causeNames); i++ {
		out = append(out, Cause(i))
	}
	return out
}

// Problem is one cause found, said in a few words for a person.
type Problem struct {
	Cause Cause `json:"cause"`
	// What is wrong, in a few words (not what to do about it).
	What string `json:"what"`
	// Detail is the error behind it, when there is one.
	Detail string `json:"detail,omitempty"`
	// Since is when it began, when that is known.
	Since time.Time `json:"since,omitzero"`
	// Err is the error behind it, for errors.Is (not serialised).
	Err error `json:"-"`
}

// Readiness is the verdict: the gate can grant when it has no problem.
type Readiness struct {
	Problems []Problem `json:"problems,omitempty"`
}

// OK reports whether the gate can grant a valid code.
func (r Readiness) OK() bool { return len(r.Problems) == 0 }

// Find returns the problem of cause c, if there is one.
func (r Readiness) Find(c Cause) (Problem, bool) {
	for _, p := range r.Problems {
		if p.Cause == c {
			return p, true
		}
	}
	return Problem{}, false
}

// Has reports whether cause c is among the problems.
func (r Readiness) Has(c Cause) bool {
	_, ok := r.Find(c)
	return ok
}

// Same reports whether r and o have the same causes (whatever their
// details): a change of verdict worth a log line.
func (r Readiness) Same(o Readiness) bool {
	if len(r.Problems) != len(o.Problems) {
		return false
	}
	for i := range r.Problems {
		if r.Problems[i].Cause != o.Problems[i].Cause {
			return false
		}
	}
	return true
}

// Summary is the verdict in one line: "in service", or "out of service: "
// and Why.
func (r Readiness) Summary() string {
	if r.OK() {
		return "in service"
	}
	return "out of service: " + r.Why()
}

// Why is what keeps the gate from granting, each problem with its detail;
// empty when nothing does.
func (r Readiness) Why() string {
	parts := make([]string, len(r.Problems))
	for i, p := range r.Problems {
		parts[i] = p.What
		if p.Detail != "" {
			parts[i] += " (" + p.Detail + ")"
		}
	}
	return strings.Join(parts, "; ")
}

// Parts are what the verdict is judged from. A nil part was not looked at:
// diag with the agent stopped has no controller to ask.
type Parts struct {
	// Gate is the controller's status, Ping its loop's answer
	// (gate.Controller.Ping: nil when it answers).
	Gate *gate.Status
	Ping error
	// Feed is the key feed's status (or, with the agent stopped, what the
	// cache file says of it).
	Feed *keysync.Status
	// Cache is why the key cache cannot be written (a read-only file
	// system, or not writable by the agent's user), nil when it can.
	Cache error
	// Scanner is why the serial scanner cannot be read (its port absent
	// or lost, the open or read error), nil when it is open, has not
	// been tried yet, or was not looked at (an image scanner; diag with
	// the agent stopped).
	Scanner error
	// Now is the clock tokens are checked on (the gate's, corrected by the
	// offset learnt from the issuer) and TrustedAfter the earliest time
	// believed; a zero TrustedAfter skips the clock.
	Now, TrustedAfter time.Time
}

// Judge says whether the gate can grant, and if not, why, in the order
// the causes are declared.
func Judge(p Parts) Readiness {
	var r Readiness
	add := func(c Cause, what string, err error, since time.Time) {
		pr := Problem{Cause: c, What: what, Err: err, Since: since}
		if err != nil {
			pr.Detail = err.Error()
		}
		r.Problems = append(r.Problems, pr)
	}
	if g := p.Gate; g != nil {
		if p.Ping != nil {
			add(Unresponsive, "the gate controller does not answer", p.Ping, time.Time{})
		}
		if g.RecordFault != "" {
			err := g.RecordErr
			if err == nil {
				err = simpleError(g.RecordFault)
			}
			add(NotRecording, "grants cannot be recorded: the event log cannot be written", err, g.RecordFaultSince)
		}
	}
	if p.Cache != nil {
		add(CacheNotWritable, "the key cache cannot be written", p.Cache, time.Time{})
	}
	if g := p.Gate; g != nil {
		switch {
		case g.Fault != "":
			add(BoardFault, g.Fault, nil, time.Time{})
		case g.RelayFault:
			add(BoardFault, "the relay output fails", nil, time.Time{})
		}
	}
	if f := p.Feed; f != nil {
		switch {
		case f.FreshAt.IsZero():
			add(NeverSynced, "waiting for the first key sync", nil, time.Time{})
		case f.Refusing:
			add(Stale, "the key cache is stale and refuse_when_stale is set: every code is refused", nil, f.FreshAt.Add(f.MaxAge))
		}
	}
	if p.Scanner != nil {
		add(ScannerAbsent, "the scanner is not connected: no code can be read", p.Scanner, time.Time{})
	}
	if g := p.Gate; g != nil && g.ClockRefused >= gate.ClockDispute {
		add(ClockDisputed, fmt.Sprintf("the authentic codes of %d passengers in a row were refused as CODE_STALE or CODE_FROM_FUTURE, none on time between them: the clock codes are checked on disagrees with the passengers' phones",
			g.ClockRefused), nil, g.ClockRefusedSince)
	}
	if !p.TrustedAfter.IsZero() && p.Now.Before(p.TrustedAfter) {
		add(ClockUntrusted, fmt.Sprintf("the clock reads %s, before this agent was built: every code is refused as CLOCK_UNTRUSTED",
			p.Now.UTC().Format(time.RFC3339)), nil, time.Time{})
	}
	return r
}

type simpleError string

func (e simpleError) Error() string { return string(e) }
