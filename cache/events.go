package cache

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	"gateagent/verify"
)

// EventKind says what an event records. The values are stored: never
// renumber them.
type EventKind uint8

// The kinds of event.
const (
	EventDecision      EventKind = 1 // a token was checked
	EventPassage       EventKind = 2 // a granted passenger walked through
	EventForcedPassage EventKind = 3 // someone passed without a grant
	EventEmergency     EventKind = 4 // the emergency input changed
	EventAlarm         EventKind = 5 // an operational alarm (stale cache, …)
	EventTechnician    EventKind = 6 // a technician's explicit action (relay test, …)
	maxEventKind                 = EventTechnician
)

var eventKindNames = [...]string{"", "decision", "passage", "forced_passage", "emergency", "alarm", "technician"}

func (k EventKind) String() string {
	if k == 0 || k > maxEventKind {
		return fmt.Sprintf("event_kind(%d)", uint8(k))
	}
	return eventKindNames[k]
}

// MaxDetail bounds an event's free text. The text is for operators and must
// never hold a name or an identity number; nothing on the gate knows either.
const MaxDetail = 200

// Event is one entry of the gate's log, kept until the issuer acknowledges it.
type Event struct {
	// Seq is assigned by the cache: strictly increasing, never reused.
	Seq        uint64           `json:"seq"`
	Time       time.Time        `json:"time"`
	Kind       EventKind        `json:"kind"`
	Reason     verify.Reason    `json:"reason"`
	Direction  verify.Direction `json:"direction"`
	CertID     verify.CertID    `json:"cert_id"`
	StepOffset int64            `json:"step_offset"`
	Detail     string           `json:"detail,omitempty"`
}

// An event is stored under its big-endian sequence number as
//
//	version(1)=1 | kind(1) | reason(1) | direction(1) | time(8, Unix ns) |
//	cert ID(16) | step offset(varint) | detail length(uvarint) | detail
const eventVersion = 1

func encodeEvent(e *Event) []byte {
	b := make([]byte, 0, 4+8+verify.CertIDLen+2*binary.MaxVarintLen64+len(e.Detail))
	b = append(b, eventVersion, byte(e.Kind), byte(e.Reason), byte(e.Direction))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = append(b, e.CertID[:]...)
	b = binary.AppendVarint(b, e.StepOffset)
	b = binary.AppendUvarint(b, uint64(len(e.Detail)))
	return append(b, e.Detail...)
}

// decodeEvent decodes a stored event; its errors say what is wrong, and
// the caller reports them as damage.
func decodeEvent(seq uint64, b []byte) (Event, error) {
	e := Event{Seq: seq}
	const fixed = 4 + 8 + verify.CertIDLen
	if len(b) < fixed || b[0] != eventVersion {
		return e, fmt.Errorf("event %d: bad header", seq)
	}
	e.Kind, e.Reason, e.Direction = EventKind(b[1]), verify.Reason(b[2]), verify.Direction(b[3])
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(b[4:]))).UTC()
	copy(e.CertID[:], b[12:])
	rest := b[fixed:]
	off, n := binary.Varint(rest)
	if n <= 0 {
		return e, fmt.Errorf("event %d: bad step offset", seq)
	}
	e.StepOffset, rest = off, rest[n:]
	dl, n := binary.Uvarint(rest)
	if n <= 0 || dl != uint64(len(rest)-n) {
		return e, fmt.Errorf("event %d: bad detail length", seq)
	}
	e.Detail = string(rest[n:])
	return e, nil
}

func (e *Event) validate() error {
	switch {
	case e.Kind == 0 || e.Kind > maxEventKind:
		return fmt.Errorf("unknown event kind %d", e.Kind)
	case !e.Reason.Valid():
		return fmt.Errorf("unknown reason %d", e.Reason)
	case e.Time.IsZero():
		return fmt.Errorf("event without a time")
	case len(e.Detail) > MaxDetail:
		return fmt.Errorf("event detail of %d bytes, at most %d", len(e.Detail), MaxDetail)
	case !utf8.ValidString(e.Detail):
		return fmt.Errorf("event detail is not UTF-8")
	}
	return nil
}
