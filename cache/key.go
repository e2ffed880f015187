package cache

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"hash"
	"sync"
)

// KeyLen is the length of a cache key.
const KeyLen = 32

// Key is the gate's cache key: 32 random bytes that never touch the SD
// card in the clear (the agent reads them from a systemd credential). From
// it, by HKDF-SHA256, come the subkeys of both files:
//
//   - the sealing key of each certificate cache (AES-256-GCM), salted with
//     16 random bytes the file keeps, so that a rebuilt cache seals under
//     a key of its own;
//   - the MAC keys (HMAC-SHA256, cut to 16 bytes) of the cache's feed
//     state and of the journal's passages and events;
//   - the key check value both files keep, by which a wrong key is told
//     from damage.
//
// A Key prints as [secret].
type Key struct {
	seal    [32]byte // HKDF input of each file's sealing key
	mac     macKey   // the cache's MACs
	journal macKey   // the journal's MACs
	check   [tagLen]byte
}

// macKey is an HMAC-SHA256 key with a pool of ready HMACs under it: a
// grant's event and passage are MACed without allocating.
type macKey struct {
	pool sync.Pool // of *macer
}

type macer struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func (m *macKey) init(key []byte) {
	k := bytes.Clone(key)
	m.pool.New = func() any { return &macer{h: hmac.New(sha256.New, k)} }
}

// ErrKeyLength: the bytes given as a cache key are not KeyLen long.
var ErrKeyLength = fmt.Errorf("a cache key is %d bytes", KeyLen)

// NewKey derives the subkeys from a 32-byte cache key. raw is not kept.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeyLen {
		return nil, fmt.Errorf("cache: key of %d bytes: %w", len(raw), ErrKeyLength)
	}
	k := &Key{}
	b, err := hkdf.Key(sha256.New, raw, nil, "gateagent cache v3 seal", 32)
	if err != nil {
		return nil, err
	}
	copy(k.seal[:], b)
	clear(b)
	for _, sub := range []struct {
		to   *macKey
		info string
	}{{&k.mac, "gateagent cache v3 mac"}, {&k.journal, "gateagent journal v2 mac"}} {
		b, err := hkdf.Key(sha256.New, raw, nil, sub.info, 32)
		if err != nil {
			return nil, err
		}
		sub.to.init(b)
		clear(b)
	}
	c, err := hkdf.Key(sha256.New, raw, nil, "gateagent cache key check", 32)
	if err != nil {
		return nil, err
	}
	copy(k.check[:], c)
	return k, nil
}

// String keeps a key out of logs.
func (*Key) String() string { return "[secret]" }

// GoString keeps a key out of %#v.
func (*Key) GoString() string { return "[secret]" }

// tagLen is the length of every MAC and AEAD tag in the files.
const tagLen = 16

// saltLen is the length of a cache file's sealing salt.
const saltLen = 16

// sealer returns the AES-256-GCM sealing of the file whose salt is given.
func (k *Key) sealer(salt []byte) (cipher.AEAD, error) {
	b, err := hkdf.Key(sha256.New, k.seal[:], salt, "gateagent cache v3 cert keys", 32)
	if err != nil {
		return nil, err
	}
	defer clear(b)
	blk, err := aes.NewCipher(b)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

// macOf is HMAC-SHA256 under key over the parts, cut to tagLen bytes.
func macOf(key *macKey, parts ...[]byte) [tagLen]byte {
	m := key.pool.Get().(*macer)
	m.h.Reset()
	for _, p := range parts {
		m.h.Write(p)
	}
	tag := [tagLen]byte(m.h.Sum(m.sum[:0]))
	key.pool.Put(m)
	return tag
}

// macOK checks tag against the MAC of the parts, in constant time.
func macOK(key *macKey, tag []byte, parts ...[]byte) bool {
	want := macOf(key, parts...)
	return len(tag) == tagLen && hmac.Equal(want[:], tag)
}

// The domains of the MACs: each MAC covers one of these first, so a tag
// of one kind of record never passes for another's.
var (
	domainFeed     = []byte("gateagent cache v3 feed state\x00")
	domainPassback = []byte("gateagent journal v2 passage\x00")
	domainEvent    = []byte("gateagent journal v2 event\x00")
)

// checkKey compares a file's key check value with k's: a file made under
// another key gives ErrWrongKey.
func checkKey(k *Key, stored []byte) error {
	if !hmac.Equal(stored, k.check[:]) {
		return ErrWrongKey
	}
	return nil
}
