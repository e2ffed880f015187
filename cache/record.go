package cache

import (
	"encoding/binary"
	"time"

	"gateagent/verify"
)

// A certificate is stored under its 16-byte ID as a fixed 49-byte record:
//
//	flags(1) | not_before(8) | not_after(8) | key(32)
//
// Times are big-endian Unix seconds. No name or identity number exists on
// the gate to be stored.
const (
	recordLen  = 1 + 8 + 8 + verify.KeyLen
	flagRevoke = 1 << 0 // the certificate is revoked: final
	flagNoKey  = 1 << 1 // a revocation that arrived before its certificate
	knownFlags = flagRevoke | flagNoKey
)

func putRecord(v *[recordLen]byte, c *verify.Cert, flags byte) {
	if c.Revoked {
		flags |= flagRevoke
	}
	v[0] = flags
	binary.BigEndian.PutUint64(v[1:], uint64(c.NotBefore.Unix()))
	binary.BigEndian.PutUint64(v[9:], uint64(c.NotAfter.Unix()))
	copy(v[17:], c.Key[:])
}

// getRecord decodes v into c and returns its flags; ok is false when v is
// not a record this build wrote.
func getRecord(v []byte, c *verify.Cert) (flags byte, ok bool) {
	if len(v) != recordLen || v[0]&^knownFlags != 0 {
		return 0, false
	}
	flags = v[0]
	c.Revoked = flags&flagRevoke != 0
	c.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(v[1:])), 0).UTC()
	c.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(v[9:])), 0).UTC()
	copy(c.Key[:], v[17:])
	return flags, true
}

// notAfterOf reads only the expiry of a record, for the purge.
func notAfterOf(v []byte) (time.Time, bool) {
	if len(v) != recordLen {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint64(v[9:])), 0), true
}

// The anti-passback state: cert ID || direction → Unix nanoseconds.
const passKeyLen = verify.CertIDLen + 1

func passKey(id *verify.CertID, dir verify.Direction) [passKeyLen]byte {
	var k [passKeyLen]byte
	copy(k[:], id[:])
	k[verify.CertIDLen] = byte(dir)
	return k
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}
