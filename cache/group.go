package cache

import (
	"bytes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"math"
	"math/bits"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"gateagent/verify"
)

// A run's certificates (schema 4, runs.go) are stored in groups of up to
// groupSize, one group to a 4 KB page, under bucket "groups" at key
// run(8) ‖ last ID(16): the run's number, then the group's last ID, so
// that a run's groups lie together in ID order and a run is written by
// appending to the tree's end. A group is:
//
//	nonce(11) | count(1) | flags(1) | prev(16) | count × (ID 16 | head 9) | blocks
//
// head is a certificate's flags(1), not_before(4) and not_after(4), the
// times in Unix seconds as 32-bit unsigned numbers (to the year 2106: a
// feed's certificate that expires later is refused, a revocation kept to
// then). The certificates are sealed in blocks of blockSize, each
// block its keys (a key-less revocation's is 32 zeros) encrypted and
// authenticated by one AES-256-GCM seal (nonce ‖ the block's number),
// with the block's IDs and heads, the run's number, the group's count
// and flags and the block's predecessor as associated data:
//
//	block = sealed keys (k × 32) | tag(16)
//
// The predecessor of a block is the last ID before it in the run: the
// entry before it in the group, or for the first block the group's prev,
// the last ID of the group before it in the run (flags groupFirst: none).
// A lookup opens the one block where the ID belongs (about 500 bytes of
// AES-GCM, not the page's 4 KB) and knows from authenticated bytes alone
// whether an ID absent from it is absent from the run: the block's
// predecessor and the entries it holds are the writer's, so an ID between
// two of them is in no other group. A tree whose keys or bytes were
// changed to hide a record (say, a revocation) lands on a block whose
// predecessor does not precede the ID, which is damage, or fails
// authentication.
//
// 67 certificates fill a page (4,032 of 4,096 bytes with bbolt's page
// and element headers and the key): 61.1 bytes a certificate, 0.94× its
// raw 65.
//
// In memory (the delta's index, a delta record) a certificate is an
// entry: ID(16) | flags(1) | not_before(8) | not_after(8) | key(32),
// the head as schema 3's records had it (record.go).
const (
	groupSize      = 67
	blockSize      = 8
	entryLen       = verify.CertIDLen + headLen + verify.KeyLen // a certificate in plaintext: ID, head, key
	clearLen       = verify.CertIDLen + 1 + 4 + 4               // its part in a group, in the clear
	groupNonceLen  = nonceLen - 1
	groupHeadLen   = groupNonceLen + 1 + 1 + verify.CertIDLen
	groupKeyLen    = 8 + verify.CertIDLen
	groupFirst     = 1 << 0
	blockBytes     = blockSize*verify.KeyLen + tagLen // a whole block's sealed bytes
	groupAADLabel  = "gateagent cache v4 group\x00"
	groupAADPrefix = len(groupAADLabel) + 8 + 1 + 1 + 1 + verify.CertIDLen
)

// groupLen is the length of a group of n certificates.
func groupLen(n int) int {
	return groupHeadLen + n*clearLen + n*verify.KeyLen + (n+blockSize-1)/blockSize*tagLen
}

func groupKey(run uint64, last []byte) []byte {
	k := make([]byte, groupKeyLen)
	binary.BigEndian.PutUint64(k, run)
	copy(k[8:], last)
	return k
}

// groupBuf is the associated data and keys of one block's seal or open,
// pooled: a lookup allocates nothing.
type groupBuf struct {
	aad   [groupAADPrefix + blockSize*clearLen]byte
	keys  [groupSize * verify.KeyLen]byte
	nonce [nonceLen]byte
}

var groupPool = sync.Pool{New: func() any { return new(groupBuf) }}

// blockAAD is block s's associated data: the label, the run, the group's
// count and flags, the block's number and predecessor, its entries in
// the clear.
func (b *groupBuf) blockAAD(run uint64, count, flags byte, s int, pred, clearPart []byte) []byte {
	n := copy(b.aad[:], groupAADLabel)
	binary.BigEndian.PutUint64(b.aad[n:], run)
	n += 8
	b.aad[n], b.aad[n+1], b.aad[n+2] = count, flags, byte(s)
	n += 3
	n += copy(b.aad[n:], pred)
	n += copy(b.aad[n:], clearPart)
	return b.aad[:n]
}

// sealGroup appends to dst the group of entries (entryLen bytes each,
// IDs ascending, 1 to groupSize of them) of run, after prev (nil for the
// run's first group).
func sealGroup(aead cipher.AEAD, dst []byte, run uint64, prev []byte, entries []byte) []byte {
	n := len(entries) / entryLen
	dst = slices.Grow(dst, groupLen(n)) // not grown block by block as it is sealed
	start := len(dst)
	var nonce [nonceLen]byte
	rand.Read(nonce[:groupNonceLen])
	dst = append(dst, nonce[:groupNonceLen]...)
	flags := byte(0)
	if prev == nil {
		flags = groupFirst
		prev = make([]byte, verify.CertIDLen)
	}
	dst = append(dst, byte(n), flags)
	dst = append(dst, prev...)
	b := groupPool.Get().(*groupBuf)
	defer groupPool.Put(b)
	for i := range n {
		e := entries[i*entryLen:]
		h := e[verify.CertIDLen:]
		dst = append(dst, e[:verify.CertIDLen+1]...)
		dst = binary.BigEndian.AppendUint32(dst, time32(h[1:]))
		dst = binary.BigEndian.AppendUint32(dst, time32(h[9:]))
		copy(b.keys[i*verify.KeyLen:], e[verify.CertIDLen+headLen:entryLen])
	}
	cl := dst[start+groupHeadLen:]
	for s := 0; s*blockSize < n; s++ {
		lo, hi := s*blockSize, min(n, (s+1)*blockSize)
		pred := prev
		if s > 0 {
			pred = cl[(lo-1)*clearLen:][:verify.CertIDLen]
		}
		nonce[groupNonceLen] = byte(s)
		aad := b.blockAAD(run, byte(n), flags, s, pred, cl[lo*clearLen:hi*clearLen])
		dst = aead.Seal(dst, nonce[:], b.keys[lo*verify.KeyLen:hi*verify.KeyLen], aad)
		cl = dst[start+groupHeadLen:] // dst may have moved
	}
	clear(b.keys[:])
	return dst
}

// group is a group read in place: its clear part, and its keys once
// opened (open, openBlock) in the pooled buffer the caller gives back
// (release).
type group struct {
	run    uint64
	n      int
	flags  byte
	first  bool
	nonce  []byte
	prev   []byte
	clear  []byte
	sealed []byte
	b      *groupBuf
	opened int // the keys in b end before this entry: what release clears
}

func (g *group) release() {
	if g.b != nil {
		clear(g.b.keys[:g.opened*verify.KeyLen])
		groupPool.Put(g.b)
		g.b = nil
	}
}

func (g *group) id(i int) []byte       { return g.clear[i*clearLen : i*clearLen+verify.CertIDLen] }
func (g *group) entryFlags(i int) byte { return g.clear[i*clearLen+verify.CertIDLen] }
func (g *group) key(i int) []byte      { return g.b.keys[i*verify.KeyLen : (i+1)*verify.KeyLen] }
func (g *group) last() []byte          { return g.id(g.n - 1) }

// searchFrom returns the index of the first certificate whose ID is not
// below id (g.n when none is), stepping from i. IDs are random (the
// spec's are opaque), so a lookup starts where guess places id: one or
// two cache lines of the page, not the seven a binary search reads one
// after another. A group of IDs far from uniform costs steps, never a
// wrong answer.
func (g *group) searchFrom(i int, id []byte) int {
	for i < g.n && compareKeys(g.id(i), id) < 0 {
		i++
	}
	for i > 0 && compareKeys(g.id(i-1), id) >= 0 {
		i--
	}
	return i
}

// guess is where id would lie in the group were its IDs spread evenly
// from its first to last (the group's last ID, or its key's).
func (g *group) guess(id, last []byte) int {
	lo, hi, x := be64(g.id(0)), be64(last), be64(id)
	switch {
	case x <= lo || g.n < 3:
		return 0
	case x >= hi:
		return g.n - 1
	}
	q, _ := bits.Div64(x-lo, 0, hi-lo) // (x-lo)/(hi-lo) < 1, as a 64-bit fraction
	h, _ := bits.Mul64(q, uint64(g.n-1))
	return int(h)
}

// prefetch reads block s's bytes, its clear entries and its sealed keys,
// into the processor's cache together (touch).
func (g *group) prefetch(s int) {
	lo, hi := s*blockSize, min(g.n, (s+1)*blockSize)
	at := s * blockBytes
	if touch(g.clear[lo*clearLen:hi*clearLen])+touch(g.sealed[at:at+(hi-lo)*verify.KeyLen+tagLen]) == 0 {
		readSink.Add(1) // keeps the reads
	}
}

// readSink keeps reads made only to bring lines into the processor's
// cache (prefetch, Cache.warm, bloom.addEntries); its value means
// nothing.
var readSink atomic.Uint64

// touch reads one byte of every cache line of b at once, so that the
// processor fetches them side by side rather than one after another as
// AES-GCM reaches them; it returns their sum so the reads stay.
func touch(b []byte) (sum byte) {
	for i := 0; i < len(b); i += 64 {
		sum += b[i]
	}
	if len(b) > 0 {
		sum += b[len(b)-1]
	}
	return sum
}

// pred is the predecessor of block s: the ID before it.
func (g *group) pred(s int) []byte {
	if s == 0 {
		return g.prev
	}
	return g.id(s*blockSize - 1)
}

// openBlock authenticates block s and opens its keys into the pooled
// buffer (at the block's entries' places).
func (g *group) openBlock(aead cipher.AEAD, s int) bool {
	if g.b == nil {
		g.b = groupPool.Get().(*groupBuf)
	}
	lo, hi := s*blockSize, min(g.n, (s+1)*blockSize)
	at := s * blockBytes
	ct := g.sealed[at : at+(hi-lo)*verify.KeyLen+tagLen]
	copy(g.b.nonce[:], g.nonce)
	g.b.nonce[groupNonceLen] = byte(s)
	aad := g.b.blockAAD(g.run, byte(g.n), g.flags, s, g.pred(s), g.clear[lo*clearLen:hi*clearLen])
	g.opened = max(g.opened, hi)
	_, err := aead.Open(g.b.keys[lo*verify.KeyLen:lo*verify.KeyLen], g.b.nonce[:], ct, aad)
	return err == nil
}

// entry writes certificate i's plaintext entry into e (entryLen bytes):
// its block opened.
func (g *group) entry(i int, e []byte) {
	x := g.clear[i*clearLen:]
	copy(e, x[:verify.CertIDLen+1])
	binary.BigEndian.PutUint64(e[verify.CertIDLen+1:], uint64(binary.BigEndian.Uint32(x[verify.CertIDLen+1:])))
	binary.BigEndian.PutUint64(e[verify.CertIDLen+9:], uint64(binary.BigEndian.Uint32(x[verify.CertIDLen+5:])))
	copy(e[verify.CertIDLen+headLen:], g.key(i))
}

// time32 is a head's 8-byte time as a group stores it: 32 bits, the
// latest it can say (2106) for anything later (Batch.validate refuses a
// certificate that expires later; a revocation is kept to then).
func time32(b []byte) uint32 {
	return uint32(min(binary.BigEndian.Uint64(b), math.MaxUint32))
}

// clearNotAfter reads the expiry of a certificate's clear part in a
// group.
func clearNotAfter(x []byte) int64 {
	return int64(binary.BigEndian.Uint32(x[verify.CertIDLen+5:]))
}

// groupShape checks what can be checked of a group without the key: the
// page check's (file.go). Every head's flags are known ones.
func groupShape(k, v []byte) bool {
	g, ok := parseGroup(k, v)
	if !ok {
		return false
	}
	for i := range g.n {
		if g.entryFlags(i)&^knownFlags != 0 {
			return false
		}
	}
	return true
}

// parseGroup reads the group v stored under key k in place, checking its
// length against its count and that the key names its last ID.
func parseGroup(k, v []byte) (group, bool) {
	g, ok := groupAt(k, v)
	if !ok || !bytes.Equal(k[8:], g.last()) {
		return group{}, false
	}
	return g, true
}

// groupAt is parseGroup without the check of the key against the last
// ID, which reads a line of the page a lookup does not need: a lookup
// proves what it finds, or that an ID is absent, from the block it opens
// alone (see above), whatever the key.
func groupAt(k, v []byte) (group, bool) {
	if len(k) != groupKeyLen || len(v) < groupHeadLen {
		return group{}, false
	}
	n := int(v[groupNonceLen])
	flags := v[groupNonceLen+1]
	if n < 1 || n > groupSize || flags&^groupFirst != 0 || len(v) != groupLen(n) {
		return group{}, false
	}
	return group{run: binary.BigEndian.Uint64(k), n: n, flags: flags, first: flags&groupFirst != 0,
		nonce: v[:groupNonceLen], prev: v[groupNonceLen+2 : groupHeadLen],
		clear: v[groupHeadLen : groupHeadLen+n*clearLen], sealed: v[groupHeadLen+n*clearLen:]}, true
}

// openAll authenticates every block of the group and opens all its keys.
func (g *group) openAll(aead cipher.AEAD) bool {
	for s := 0; s*blockSize < g.n; s++ {
		if !g.openBlock(aead, s) {
			return false
		}
	}
	return true
}

// openGroup authenticates every block of the group v stored under key k
// and opens all its keys. On recordOK the caller releases g.
func openGroup(aead cipher.AEAD, k, v []byte) (g group, outcome int) {
	g, ok := parseGroup(k, v)
	if !ok {
		return group{}, recordShape
	}
	if !g.openAll(aead) {
		g.release()
		return group{}, recordForged
	}
	return g, recordOK
}

// lookupGroup finds id in the group v stored under key k, which a Seek of
// id in its run landed on, opening only the block where id belongs: it
// writes id's entry into e when found; absent is proven by the block's
// authenticated bytes (see above), and anything else is damage
// (recordShape) or a forgery (recordForged).
func lookupGroup(aead cipher.AEAD, k, v, id, e []byte) (found bool, outcome int) {
	g, ok := groupAt(k, v)
	if !ok {
		return false, recordShape
	}
	defer g.release()
	// The block where id would lie, fetched at once, then the search
	// from there (it rarely leaves the block).
	i := g.guess(id, k[8:])
	g.prefetch(i / blockSize)
	if i = g.searchFrom(i, id); i == g.n {
		return false, recordShape // the group's last ID is below id: not where a Seek lands
	}
	s := i / blockSize
	if !g.openBlock(aead, s) {
		return false, recordForged
	}
	if g.entryFlags(i)&^knownFlags != 0 {
		return false, recordShape
	}
	if bytes.Equal(g.id(i), id) {
		g.entry(i, e)
		return true, recordOK
	}
	// Absent: id lies between two authenticated IDs of the run, the one
	// before i (in the block, or its predecessor) and i's.
	if i%blockSize == 0 && s == 0 && g.first {
		return false, recordOK
	}
	var before []byte
	if i%blockSize == 0 {
		before = g.pred(s)
	} else {
		before = g.id(i - 1)
	}
	if compareKeys(before, id) >= 0 {
		return false, recordShape // the tree led past the group that covers id
	}
	return false, recordOK
}

// decodeEntry makes a certificate of a plaintext entry; it returns the
// entry's flags.
func decodeEntry(e []byte, c *verify.Cert) byte {
	c.ID = verify.CertID(e[:verify.CertIDLen])
	h := e[verify.CertIDLen : verify.CertIDLen+headLen]
	c.Revoked = h[0]&flagRevoke != 0
	c.NotBefore = unixTime(h[1:])
	c.NotAfter = unixTime(h[9:])
	if h[0]&flagNoKey == 0 {
		c.Key = verify.Key(e[verify.CertIDLen+headLen : entryLen])
	} else {
		c.Key = verify.Key{}
	}
	return h[0]
}

// encodeEntry writes c's entry with flags into e (entryLen bytes).
func encodeEntry(e []byte, c *verify.Cert, flags byte) {
	if c.Revoked {
		flags |= flagRevoke
	}
	copy(e, c.ID[:])
	h := e[verify.CertIDLen:]
	h[0] = flags
	binary.BigEndian.PutUint64(h[1:], uint64(c.NotBefore.Unix()))
	binary.BigEndian.PutUint64(h[9:], uint64(c.NotAfter.Unix()))
	if flags&flagNoKey == 0 {
		copy(e[verify.CertIDLen+headLen:], c.Key[:])
	} else {
		clear(e[verify.CertIDLen+headLen : entryLen])
	}
}

// entryNotAfter reads an entry's expiry.
func entryNotAfter(e []byte) int64 {
	return int64(binary.BigEndian.Uint64(e[verify.CertIDLen+9:]))
}

// bloom is a blocked Bloom filter of a run's IDs: each ID sets 8 bits of
// one 64-byte block, so a test reads one cache line; 12 bits an ID, about
// 1% false positives. A lookup tests a run's filter before its tree.
type bloom []byte

func newBloom(n int) bloom {
	blocks := max(1, (n*12+511)/512)
	return make(bloom, blocks*64)
}

func bloomHash(id []byte) (uint64, uint64) {
	a, b := binary.LittleEndian.Uint64(id), binary.LittleEndian.Uint64(id[8:])
	h1 := (a ^ 0x243f6a8885a308d3) * 0x9e3779b97f4a7c15
	h2 := (b ^ h1>>31) * 0xbf58476d1ce4e5b9
	return h1 ^ h1>>29, h2 ^ h2>>32
}

// block is the 64-byte block of an ID whose first hash is h1.
func (f bloom) block(h1 uint64) []byte { return f[(h1%uint64(len(f)/64))*64:][:64] }

func (f bloom) add(id []byte) {
	h1, h2 := bloomHash(id)
	blk := f.block(h1)
	for i := range 8 {
		bit := (h2 >> (9 * i)) & 511
		blk[bit/8] |= 1 << (bit % 8)
	}
}

// addEntries adds the IDs of entries (entryLen bytes each), a group's:
// their blocks are read first, side by side (they lie at random in a
// filter of a megabyte or more), then their bits set.
func (f bloom) addEntries(entries []byte) {
	var sum byte
	for off := 0; off < len(entries); off += entryLen {
		sum += f.touch(entries[off : off+verify.CertIDLen])
	}
	readSink.Add(uint64(sum))
	for off := 0; off < len(entries); off += entryLen {
		f.add(entries[off : off+verify.CertIDLen])
	}
}

// touch reads the byte of id's block that a test reads first (see
// Cache.warm).
func (f bloom) touch(id []byte) byte {
	if len(f) < 64 {
		return 0
	}
	h1, _ := bloomHash(id)
	return f.block(h1)[0]
}

func (f bloom) has(id []byte) bool {
	if len(f) < 64 {
		return true // no filter: every run is read
	}
	h1, h2 := bloomHash(id)
	blk := f.block(h1)
	for i := range 8 {
		bit := (h2 >> (9 * i)) & 511
		if blk[bit/8]&(1<<(bit%8)) == 0 {
			return false
		}
	}
	return true
}

func unixTime(b []byte) time.Time { return time.Unix(int64(binary.BigEndian.Uint64(b)), 0).UTC() }
