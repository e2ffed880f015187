package station

import (
	"encoding/binary"
	"fmt"

	"gateagent/verify"
)

// What a gate tells its peers. The values travel on the wire: never
// renumber them.
type msgKind uint8

const (
	kindHold    msgKind = 1 // a grant: the certificate is held until the passenger passes or the grant lapses
	kindRelease msgKind = 2 // the grant lapsed unused: the hold is released
	kindPassed  msgKind = 3 // the granted passenger walked through
	maxKind             = kindPassed
)

var kindNames = [...]string{"", "hold", "release", "passed"}

func (k msgKind) String() string {
	if k == 0 || k > maxKind {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// Wire format, version 1. Every integer is big-endian; times are Unix
// nanoseconds on the issuer-corrected clock of the gate that wrote them.
//
// A message (one grant, lapse or passage; sent to every live peer and
// gossiped) is
//
//	version(1)=1 | kind(1) | direction(1) | gate length n(1) | gate(n) |
//	cert ID(16) | grant time(8) | time(8) | sent(8)
//
// where time is the hold's end (hold), the lapse (release) or the passage
// (passed), and sent is when the gate sent it (the receiver's propagation
// figures are taken from it). Its length is exactly 44+n: anything else is
// refused before a field is read.
//
// The state (a push/pull: everything this gate knows inside the window) is
//
//	version(1)=0x81 | gates g(1) | g × (length n(1) | gate(n)) |
//	entries e(4) | e × (gate index(1) | direction(1) | cert ID(16) |
//	grant time(8) | hold until(8) | released(8) | passed(8))
//
// with at most MaxGates gates and MaxEntries entries, and again an exact
// length.
const (
	msgVersion   = 1
	stateVersion = 0x81
	msgFixed     = 4 + verify.CertIDLen + 8 + 8 + 8
	entryLen     = 2 + verify.CertIDLen + 4*8
	// MaxMessage bounds one message: what a UDP datagram always holds.
	MaxMessage = msgFixed + MaxGateID
)

// Limits on what a peer may send.
const (
	// MaxGateID is the longest gate ID (as config.Gate.ID allows).
	MaxGateID = 64
	// MaxGates is the most gates one station group may list.
	MaxGates = 64
	// MaxEntries bounds the grants one gate keeps and accepts: a gate
	// line passing a passenger every second at each of 64 gates for a
	// 30-minute window stays under it. A full state is about 3 MB.
	MaxEntries = 1 << 17
)

// message is one grant, lapse or passage, as sent.
type message struct {
	kind msgKind
	dir  verify.Direction
	gate string
	cert verify.CertID
	at   int64 // the grant
	t    int64 // until (hold), released (release), passed (passed)
	sent int64 // when the gate sent it
}

func (m *message) encode() []byte {
	b := make([]byte, 0, msgFixed+len(m.gate))
	b = append(b, msgVersion, byte(m.kind), byte(m.dir), byte(len(m.gate)))
	b = append(b, m.gate...)
	b = append(b, m.cert[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.at))
	b = binary.BigEndian.AppendUint64(b, uint64(m.t))
	return binary.BigEndian.AppendUint64(b, uint64(m.sent))
}

// decodeMessage parses one message. It checks the shape only (version,
// kind, direction, gate ID spelling, length); whether the gate is one of
// the station's and the times are plausible is the state's to judge.
func decodeMessage(b []byte) (message, error) {
	var m message
	if len(b) < msgFixed || b[0] != msgVersion {
		return m, fmt.Errorf("%w: message of %d bytes, version %d", ErrMalformed, len(b), first(b))
	}
	m.kind, m.dir = msgKind(b[1]), verify.Direction(b[2])
	n := int(b[3])
	switch {
	case m.kind == 0 || m.kind > maxKind:
		return m, fmt.Errorf("%w: message kind %d", ErrMalformed, b[1])
	case m.dir != verify.Entry && m.dir != verify.Exit:
		return m, fmt.Errorf("%w: direction %d", ErrMalformed, b[2])
	case len(b) != msgFixed+n:
		return m, fmt.Errorf("%w: message of %d bytes with a gate ID of %d", ErrMalformed, len(b), n)
	}
	g := b[4 : 4+n]
	if !validGateID(g) {
		return m, fmt.Errorf("%w: gate ID", ErrMalformed)
	}
	m.gate = string(g)
	rest := b[4+n:]
	copy(m.cert[:], rest)
	rest = rest[verify.CertIDLen:]
	m.at = int64(binary.BigEndian.Uint64(rest))
	m.t = int64(binary.BigEndian.Uint64(rest[8:]))
	m.sent = int64(binary.BigEndian.Uint64(rest[16:]))
	return m, nil
}

// encodeState writes grants as one state document. gates lists every gate
// ID the grants name (at most MaxGates), and len(grants) ≤ MaxEntries.
func encodeState(gates []string, grants []grant) []byte {
	size := 2 + 4 + len(grants)*entryLen
	for _, g := range gates {
		size += 1 + len(g)
	}
	index := make(map[string]byte, len(gates))
	b := make([]byte, 0, size)
	b = append(b, stateVersion, byte(len(gates)))
	for i, g := range gates {
		index[g] = byte(i)
		b = append(b, byte(len(g)))
		b = append(b, g...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(grants)))
	for i := range grants {
		g := &grants[i]
		b = append(b, index[g.gate], byte(g.dir))
		b = append(b, g.cert[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(g.at))
		b = binary.BigEndian.AppendUint64(b, uint64(g.until))
		b = binary.BigEndian.AppendUint64(b, uint64(g.released))
		b = binary.BigEndian.AppendUint64(b, uint64(g.passed))
	}
	return b
}

// decodeState parses a state document. Like decodeMessage it checks the
// shape; the state judges each entry.
func decodeState(b []byte) ([]grant, error) {
	if len(b) < 2 || b[0] != stateVersion {
		return nil, fmt.Errorf("%w: state of %d bytes, version %d", ErrMalformed, len(b), first(b))
	}
	ng := int(b[1])
	if ng > MaxGates {
		return nil, fmt.Errorf("%w: state names %d gates", ErrMalformed, ng)
	}
	rest := b[2:]
	gates := make([]string, ng)
	for i := range gates {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, fmt.Errorf("%w: state cut short in its gate table", ErrMalformed)
		}
		n := int(rest[0])
		if !validGateID(rest[1 : 1+n]) {
			return nil, fmt.Errorf("%w: gate ID in the state", ErrMalformed)
		}
		gates[i] = string(rest[1 : 1+n])
		rest = rest[1+n:]
	}
	if len(rest) < 4 {
		return nil, fmt.Errorf("%w: state cut short before its entries", ErrMalformed)
	}
	ne := binary.BigEndian.Uint32(rest)
	rest = rest[4:]
	if ne > MaxEntries || uint64(len(rest)) != uint64(ne)*entryLen {
		return nil, fmt.Errorf("%w: state of %d entries in %d bytes", ErrMalformed, ne, len(rest))
	}
	out := make([]grant, ne)
	for i := range out {
		e := rest[i*entryLen : (i+1)*entryLen]
		gi := int(e[0])
		if gi >= ng {
			return nil, fmt.Errorf("%w: state entry names gate %d of %d", ErrMalformed, gi, ng)
		}
		g := &out[i]
		g.gate, g.dir = gates[gi], verify.Direction(e[1])
		if g.dir != verify.Entry && g.dir != verify.Exit {
			return nil, fmt.Errorf("%w: direction %d in the state", ErrMalformed, e[1])
		}
		copy(g.cert[:], e[2:])
		t := e[2+verify.CertIDLen:]
		g.at = int64(binary.BigEndian.Uint64(t))
		g.until = int64(binary.BigEndian.Uint64(t[8:]))
		g.released = int64(binary.BigEndian.Uint64(t[16:]))
		g.passed = int64(binary.BigEndian.Uint64(t[24:]))
	}
	return out, nil
}

// validGateID reports whether b is spelt as a gate ID may be: 1 to 64
// printable ASCII characters without spaces or quotes.
func validGateID(b []byte) bool {
	if len(b) == 0 || len(b) > MaxGateID {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c > '~' || c == '"' {
			return false
		}
	}
	return true
}

// ValidGateID reports whether s may name a gate of a station group.
func ValidGateID(s string) bool { return validGateID([]byte(s)) }

func first(b []byte) int {
	if len(b) == 0 {
		return -1
	}
	return int(b[0])
}
