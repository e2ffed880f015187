package cache

import (
	"crypto/cipher"
	"encoding/binary"
	"sync"
	"time"

	"gateagent/verify"
)

// A certificate is stored under its 16-byte ID as a fixed record (schema 3):
//
//	flags(1) | not_before(8) | not_after(8) | nonce(12) | sealed key(32) | tag(16)
//
// The key is sealed with AES-256-GCM under the file's sealing key, with a
// random nonce; the associated data is the cert ID, the flags and both
// times behind a domain tag, so that a changed flag (a revocation undone),
// a changed validity or a key moved to another certificate fails
// authentication like a changed key does. A revocation that arrived before
// its certificate (flagNoKey) has no key: its record is the same without
// the 32 bytes, the tag authenticating the rest.
//
// Times are big-endian Unix seconds. No name or identity number exists on
// the gate to be stored.
const (
	headLen      = 1 + 8 + 8
	nonceLen     = 12
	recordLen    = headLen + nonceLen + verify.KeyLen + tagLen
	noKeyLen     = headLen + nonceLen + tagLen
	recordLenV2  = headLen + verify.KeyLen // schema 1 and 2: the key in plaintext
	flagRevoke   = 1 << 0                  // the certificate is revoked: final
	flagNoKey    = 1 << 1                  // a revocation that arrived before its certificate
	knownFlags   = flagRevoke | flagNoKey
	certAADLabel = "gateagent cache v3 cert\x00"
	certAADLen   = len(certAADLabel) + verify.CertIDLen + headLen
)

// recordLenOf is the length of a record with the given flags.
func recordLenOf(flags byte) int {
	if flags&flagNoKey != 0 {
		return noKeyLen
	}
	return recordLen
}

// scratch is the associated data and plaintext of one seal or open: a
// pooled buffer, because what is handed to the AEAD through its interface
// would otherwise be allocated on every lookup.
type scratch struct {
	aad [certAADLen]byte
	key [verify.KeyLen]byte
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func (s *scratch) fill(id []byte, head []byte) []byte {
	n := copy(s.aad[:], certAADLabel)
	n += copy(s.aad[n:], id)
	copy(s.aad[n:], head)
	return s.aad[:]
}

// sealRecord writes c's record into v (recordLenOf(flags) bytes) under
// aead with the nonce given.
func sealRecord(aead cipher.AEAD, v []byte, c *verify.Cert, flags byte, nonce []byte) {
	if c.Revoked {
		flags |= flagRevoke
	}
	v[0] = flags
	binary.BigEndian.PutUint64(v[1:], uint64(c.NotBefore.Unix()))
	binary.BigEndian.PutUint64(v[9:], uint64(c.NotAfter.Unix()))
	copy(v[headLen:], nonce[:nonceLen])
	s := scratchPool.Get().(*scratch)
	aad := s.fill(c.ID[:], v[:headLen])
	var plain []byte
	if flags&flagNoKey == 0 {
		plain = c.Key[:]
	}
	aead.Seal(v[headLen+nonceLen:headLen+nonceLen], v[headLen:headLen+nonceLen], plain, aad)
	scratchPool.Put(s)
}

// Outcomes of openRecord.
const (
	recordOK     = iota
	recordShape  // not a record this build writes: damage
	recordForged // well-formed, but fails authentication
)

// openRecord authenticates the record v of cert id and decodes it into c
// (its ID left as it is); it returns the flags and one of the outcomes.
// Nothing of a record that fails is put in c.
func openRecord(aead cipher.AEAD, id []byte, v []byte, c *verify.Cert) (flags byte, outcome int) {
	if len(v) < 1 || v[0]&^knownFlags != 0 || len(v) != recordLenOf(v[0]) {
		return 0, recordShape
	}
	flags = v[0]
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	aad := s.fill(id, v[:headLen])
	if _, err := aead.Open(s.key[:0], v[headLen:headLen+nonceLen], v[headLen+nonceLen:], aad); err != nil {
		return 0, recordForged
	}
	c.Revoked = flags&flagRevoke != 0
	c.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(v[1:])), 0).UTC()
	c.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(v[9:])), 0).UTC()
	if flags&flagNoKey == 0 {
		c.Key = verify.Key(s.key)
		clear(s.key[:])
	}
	return flags, recordOK
}

// notAfterOf reads only the expiry of a record, for the purge (which then
// authenticates the records it would delete).
func notAfterOf(v []byte) (time.Time, bool) {
	if len(v) < headLen {
		return time.Time{}, false
	}
	return time.Unix(int64(binary.BigEndian.Uint64(v[9:])), 0), true
}

// The anti-passback state in the journal (schema 2): cert ID ‖ direction →
// time of the last passage (Unix ns, 8) ‖ MAC (16).
const (
	passKeyLen   = verify.CertIDLen + 1
	passLen      = 8 + tagLen
	passLenV1    = 8 // journal schema 1: no MAC
	eventVersion = 2 // journal schema 2: events carry a MAC
)

func passKey(id *verify.CertID, dir verify.Direction) [passKeyLen]byte {
	var k [passKeyLen]byte
	copy(k[:], id[:])
	k[verify.CertIDLen] = byte(dir)
	return k
}

// passValue is the stored form of a passage at ns under key.
func passValue(k *Key, pk []byte, ns int64) []byte {
	v := make([]byte, 8, passLen)
	binary.BigEndian.PutUint64(v, uint64(ns))
	tag := macOf(&k.journal, domainPassback, pk, v)
	return append(v, tag[:]...)
}

// openPass authenticates a passage record; ok is false when it fails.
func openPass(k *Key, pk, v []byte) (ns int64, ok bool) {
	if len(v) != passLen || !macOK(&k.journal, v[8:], domainPassback, pk, v[:8]) {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), true
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}
