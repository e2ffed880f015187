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
//	version(1)=1 | kind(1) | reason(1) | direction(1) | time(8, Unix ns) |
//	cert ID(16) | step offset(varint) | detail length(uvarint) | detail
const eventVersion = 1

func encodeEvent(e *event.Event) []byte {
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
func decodeEvent(seq uint64, b []byte) (event.Event, error) {
	e := event.Event{Seq: seq}
	const fixed = 4 + 8 + verify.CertIDLen
	if len(b) < fixed || b[0] != eventVersion {
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
