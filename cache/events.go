package cache

import (
	"encoding/binary"
	"fmt"
	"time"
	"unicode/utf8"

	bolt "go.etcd.io/bbolt"

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
	EventDoubleUse     EventKind = 7 // a certificate granted here was granted at another gate of the station while one grant stood (package station)
	maxEventKind                 = EventDoubleUse
)

var eventKindNames = [...]string{"", "decision", "passage", "forced_passage", "emergency", "alarm", "technician", "double_use"}

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

func decodeEvent(seq uint64, b []byte) (Event, error) {
	e := Event{Seq: seq}
	const fixed = 4 + 8 + verify.CertIDLen
	if len(b) < fixed || b[0] != eventVersion {
		return e, fmt.Errorf("%w: event %d: bad header", ErrCorrupt, seq)
	}
	e.Kind, e.Reason, e.Direction = EventKind(b[1]), verify.Reason(b[2]), verify.Direction(b[3])
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(b[4:]))).UTC()
	copy(e.CertID[:], b[12:])
	rest := b[fixed:]
	off, n := binary.Varint(rest)
	if n <= 0 {
		return e, fmt.Errorf("%w: event %d: bad step offset", ErrCorrupt, seq)
	}
	e.StepOffset, rest = off, rest[n:]
	dl, n := binary.Uvarint(rest)
	if n <= 0 || dl != uint64(len(rest)-n) {
		return e, fmt.Errorf("%w: event %d: bad detail length", ErrCorrupt, seq)
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

func appendEvent(tx *bolt.Tx, e *Event) error {
	if err := e.validate(); err != nil {
		return err
	}
	b := tx.Bucket(bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	// Sequence numbers only grow: every new key goes at the end, so pages
	// can be filled whole.
	b.FillPercent = 1.0
	return b.Put(u64(seq), encodeEvent(e))
}

// AppendEvent stores e durably and returns its sequence number.
func (c *Cache) AppendEvent(e Event) (uint64, error) {
	if err := c.update(func(tx *bolt.Tx) error { return appendEvent(tx, &e) }); err != nil {
		return 0, fmt.Errorf("cache: append %s event: %w", e.Kind, err)
	}
	return e.Seq, nil
}

// RecordPassage stores, in one transaction, that id passed in direction dir
// at e.Time (the anti-passback state) and the event e that reports it.
func (c *Cache) RecordPassage(id verify.CertID, dir verify.Direction, e Event) (uint64, error) {
	if dir != verify.Entry && dir != verify.Exit {
		return 0, fmt.Errorf("cache: record passage of %s: direction %v", id, dir)
	}
	pk := passKey(&id, dir)
	ns := e.Time.UnixNano()
	err := c.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPassback).Put(pk[:], u64(uint64(ns))); err != nil {
			return err
		}
		if err := appendEvent(tx, &e); err != nil {
			return err
		}
		tx.OnCommit(func() {
			c.passMu.Lock()
			c.passes[pk] = ns
			c.passMu.Unlock()
		})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cache: record passage of %s: %w", id, err)
	}
	return e.Seq, nil
}

// Events returns up to max events with a sequence number above after, in
// order: the next upload.
func (c *Cache) Events(after uint64, max int) ([]Event, error) {
	var out []Event
	err := c.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketEvents).Cursor()
		for k, v := cur.Seek(u64(after + 1)); k != nil && len(out) < max; k, v = cur.Next() {
			if len(k) != 8 {
				return fmt.Errorf("%w: event key of %d bytes", ErrCorrupt, len(k))
			}
			e, err := decodeEvent(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: read events after %d: %w", after, err)
	}
	return out, nil
}

// DeleteEventsThrough deletes the events up to and including seq, once the
// issuer has acknowledged them, and returns how many it deleted.
func (c *Cache) DeleteEventsThrough(seq uint64) (int, error) {
	n := 0
	err := c.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		var keys [][]byte
		cur := b.Cursor()
		for k, _ := cur.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = cur.Next() {
			keys = append(keys, k)
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("cache: delete events through %d: %w", seq, err)
	}
	return n, nil
}

// Backlog is the event log not yet uploaded.
type Backlog struct {
	Events  int       `json:"events"`
	Oldest  time.Time `json:"oldest,omitzero"`
	LastSeq uint64    `json:"last_seq"`
}

// Backlog counts the events not yet uploaded. It reads the event log
// only, so it answers even when a certificate page is damaged.
func (c *Cache) Backlog() (b Backlog, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cache: backlog: %w: %v", ErrCorrupt, p)
		}
	}()
	err = c.db.View(func(tx *bolt.Tx) error {
		ev := tx.Bucket(bucketEvents)
		b.LastSeq = ev.Sequence()
		cur := ev.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			if b.Events == 0 {
				e, err := decodeEvent(0, v)
				if err != nil {
					return err
				}
				b.Oldest = e.Time
			}
			b.Events++
		}
		return nil
	})
	if err != nil {
		return Backlog{}, fmt.Errorf("cache: backlog: %w", err)
	}
	return b, nil
}
