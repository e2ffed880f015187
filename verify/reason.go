package verify

import "fmt"

// Reason is the outcome of checking a token: OK, or the reason of the first
// check that failed, spelt as in tr1-token.md. The numeric values are stored
// in the gate's event log: never renumber them.
//
// The zero Reason is Undecided: no decision could be made (the key cache
// was unreadable). Only OK may open the gate.
type Reason uint8

// The reasons, in the order of the spec's checks.
const (
	Undecided      Reason = 0
	OK             Reason = 1
	Malformed      Reason = 2  // check 1
	ClockUntrusted Reason = 3  // check 2
	UnknownCert    Reason = 4  // check 3
	BadTag         Reason = 5  // check 4
	CodeStale      Reason = 6  // check 5
	CodeFromFuture Reason = 7  // check 6
	Revoked        Reason = 8  // check 7
	NotYetValid    Reason = 9  // check 8
	Expired        Reason = 10 // check 9
	Passback       Reason = 11 // check 10
	maxReason             = Passback
)

var reasonNames = [...]string{
	Undecided:      "UNDECIDED",
	OK:             "OK",
	Malformed:      "MALFORMED",
	ClockUntrusted: "CLOCK_UNTRUSTED",
	UnknownCert:    "UNKNOWN_CERT",
	BadTag:         "BAD_TAG",
	CodeStale:      "CODE_STALE",
	CodeFromFuture: "CODE_FROM_FUTURE",
	Revoked:        "REVOKED",
	NotYetValid:    "NOT_YET_VALID",
	Expired:        "EXPIRED",
	Passback:       "PASSBACK",
}

// Reasons lists every reason a decision can carry, Undecided first.
func Reasons() []Reason {
	r := make([]Reason, 0, maxReason+1)
	for i := Undecided; i <= maxReason; i++ {
		r = append(r, i)
	}
	return r
}

// String returns the reason as the spec spells it.
func (r Reason) String() string {
	if r > maxReason {
		return fmt.Sprintf("REASON(%d)", uint8(r))
	}
	return reasonNames[r]
}

// Valid reports whether r is one of the defined reasons.
func (r Reason) Valid() bool { return r <= maxReason }

// MarshalText returns the spec's spelling.
func (r Reason) MarshalText() ([]byte, error) {
	if !r.Valid() {
		return nil, fmt.Errorf("verify: unknown reason %d", uint8(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText parses the spec's spelling.
func (r *Reason) UnmarshalText(b []byte) error {
	for i, name := range reasonNames {
		if name == string(b) {
			*r = Reason(i)
			return nil
		}
	}
	return fmt.Errorf("verify: unknown reason %q", truncate(string(b)))
}

// Family groups the refusals by what the passenger should do, for the
// gate's display and buzzer.
type Family uint8

// The families of reasons.
const (
	FamilyGranted Family = iota // OK: walk through
	FamilyRefresh               // the phone did not refresh its code, or the scan failed: scan again
	FamilyManual                // go to the manual channel (staff can help)
	FamilyInvalid               // not valid here
	FamilyFault                 // the gate cannot decide: out of service
)

// Family returns what the passenger should do after a decision with r.
func (r Reason) Family() Family {
	switch r {
	case OK:
		return FamilyGranted
	case Malformed, CodeStale, CodeFromFuture:
		return FamilyRefresh
	case Expired, NotYetValid, UnknownCert:
		return FamilyManual
	case BadTag, Revoked, Passback:
		return FamilyInvalid
	default: // Undecided, ClockUntrusted
		return FamilyFault
	}
}
