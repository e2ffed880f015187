package cache

import (
	"encoding/binary"
	"fmt"
	"time"

	"gateagent/event"
	"gateagent/verify"
)

// An event is stored under its big-endian sequence number as
//
//	version(1)=2 | kind(1) | reason(1) | direction(1) | time(8, Unix ns) |
//	cert ID(16) | step offset(varint) | detail length(uvarint) | detail |
//	MAC(16)
//
// The MAC (HMAC-SHA256 under the journal's key, cut to 16 bytes) covers
// the sequence number and every byte before it: an event changed on the
// disk, or moved to another number, is caught before it is uploaded.
// Version 1 (journal schema 1) had no MAC; the journal adds one to each
// when it migrates.
const eventVersionV1 = 1

// encodeEvent is the stored form of e under sequence number seq.
func encodeEvent(k *Key, seq uint64, e *event.Event) []byte {
	b := make([]byte, 0, 4+8+verify.CertIDLen+2*binary.MaxVarintLen64+len(e.Detail)+tagLen)
	b = append(b, eventVersion, byte(e.Kind), byte(e.Reason), byte(e.Direction))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = append(b, e.CertID[:]...)
	b = binary.AppendVarint(b, e.StepOffset)
	b = binary.AppendUvarint(b, uint64(len(e.Detail)))
	b = append(b, e.Detail...)
	return sealEvent(k, seq, b)
}

// sealEvent appends the MAC of the event body b stored under seq.
func sealEvent(k *Key, seq uint64, b []byte) []byte {
	tag := macOf(&k.journal, domainEvent, u64(seq), b)
	return append(b, tag[:]...)
}

// openEvent authenticates and decodes the stored event b under seq: an
// event of version 2 whose MAC holds. ok is false when it fails; err says
// what is malformed about it.
func openEvent(k *Key, seq uint64, b []byte) (e event.Event, ok bool, err error) {
	if e, err = decodeEvent(seq, b); err != nil {
		return e, false, err
	}
	if b[0] != eventVersion || !macOK(&k.journal, b[len(b)-tagLen:], domainEvent, u64(seq), b[:len(b)-tagLen]) {
		return event.Event{Seq: seq}, false, nil
	}
	return e, true, nil
}

// decodeEvent decodes a stored event of either version, without checking
// its MAC (the integrity check's shape, and the counts of the backlog);
// its errors say what is wrong, and the caller reports them as damage.
func decodeEvent(seq uint64, b []byte) (event.Event, error) {
	e := event.Event{Seq: seq}
	const fixed = 4 + 8 + verify.CertIDLen
	if len(b) < 1 || b[0] != eventVersion && b[0] != eventVersionV1 {
		return e, fmt.Errorf("event %d: bad header", seq)
	}
	if b[0] == eventVersion {
		if len(b) < fixed+tagLen {
			return e, fmt.Errorf("event %d: bad header", seq)
		}
		b = b[:len(b)-tagLen]
	}
	if len(b) < fixed {
		return e, fmt.Errorf("event %d: bad header", seq)
	}
	e.Kind, e.Reason, e.Direction = event.Kind(b[1]), verify.Reason(b[2]), verify.Direction(b[3])
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

// upgradeEvent gives a stored event of version 1 its MAC (the journal's
// migration, and a salvage of a journal of schema 1). A version 2 event
// is returned as it is.
func upgradeEvent(k *Key, seq uint64, b []byte) ([]byte, error) {
	if _, err := decodeEvent(seq, b); err != nil {
		return nil, err
	}
	if b[0] == eventVersion {
		return b, nil
	}
	body := append([]byte{eventVersion}, b[1:]...)
	return sealEvent(k, seq, body), nil
}
