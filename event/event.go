// Package event is the gate's decision record: what every decision,
// passage, alarm and technician's action leaves behind, kept in the
// journal until the issuer acknowledges it. It is a leaf: the controller
// writes events, the journal stores them (its encoding is its own), the
// feed's upload carries them and the issuer keeps them, and none of those
// needs another's code for it.
package event

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"gateagent/verify"
)

// Kind says what an event records. The values are stored and uploaded:
// never renumber them.
type Kind uint8

// The kinds of event.
const (
	Decision      Kind = 1 // a token was checked
	Passage       Kind = 2 // a granted passenger walked through
	ForcedPassage Kind = 3 // someone passed without a grant
	Emergency     Kind = 4 // the emergency input changed
	Alarm         Kind = 5 // an operational alarm (stale cache, …)
	Technician    Kind = 6 // a technician's explicit action (relay test, …)
	Lapsed        Kind = 7 // a granted passenger did not enter in time: the grant was not used
	DoubleUse     Kind = 8 // a certificate granted here was granted at another gate of the station while one grant stood (package station)
	maxKind            = DoubleUse
)

var kindNames = [...]string{"", "decision", "passage", "forced_passage", "emergency", "alarm", "technician", "lapsed", "double_use"}

func (k Kind) String() string {
	if !k.Valid() {
		return fmt.Sprintf("event_kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// Valid reports whether k is a kind this build knows.
func (k Kind) Valid() bool { return k >= 1 && k <= maxKind }

// MaxDetail bounds an event's free text. The text is for operators and must
// never hold a name or an identity number; nothing on the gate knows either.
const MaxDetail = 200

// Event is one entry of the gate's log.
//
// Reason is the decision's for a Decision (OK, or why not); OK for a
// Passage and a Lapsed grant (the grant they follow); for a Technician
// action, OK when it ran in full as asked and Undecided when it was cut
// short or an output failed (Detail says which); Undecided, meaning "no
// decision", for the other kinds.
//
// CertID is zero when no certificate is concerned (a malformed code, an
// alarm, a forced passage): the upload's JSON then has no cert_id, and an
// issuer reading an older gate's "000…0" gets the same zero ID.
type Event struct {
	// Seq is assigned by the journal: strictly increasing, never reused.
	Seq        uint64           `json:"seq"`
	Time       time.Time        `json:"time"`
	Kind       Kind             `json:"kind"`
	Reason     verify.Reason    `json:"reason"`
	Direction  verify.Direction `json:"direction"`
	CertID     verify.CertID    `json:"cert_id,omitzero"`
	StepOffset int64            `json:"step_offset"`
	Detail     string           `json:"detail,omitempty"`
}

// ErrInvalid: an event that cannot be recorded as it is.
var ErrInvalid = errors.New("invalid event")

// Same reports whether e and o are one event: every field alike, the
// times as instants (an event read back in another time zone is the
// same event).
func (e *Event) Same(o *Event) bool {
	return e.Seq == o.Seq && e.Time.Equal(o.Time) && e.Kind == o.Kind && e.Reason == o.Reason &&
		e.Direction == o.Direction && e.CertID == o.CertID && e.StepOffset == o.StepOffset && e.Detail == o.Detail
}

// Validate checks what a journal stores and an issuer accepts.
func (e *Event) Validate() error {
	switch {
	case !e.Kind.Valid():
		return fmt.Errorf("%w: unknown event kind %d", ErrInvalid, e.Kind)
	case !e.Reason.Valid():
		return fmt.Errorf("%w: unknown reason %d", ErrInvalid, e.Reason)
	case e.Time.IsZero():
		return fmt.Errorf("%w: no time", ErrInvalid)
	case len(e.Detail) > MaxDetail:
		return fmt.Errorf("%w: detail of %d bytes, at most %d", ErrInvalid, len(e.Detail), MaxDetail)
	case !utf8.ValidString(e.Detail):
		return fmt.Errorf("%w: detail is not UTF-8", ErrInvalid)
	}
	return nil
}
