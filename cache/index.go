package cache

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"

	"gateagent/verify"
)

// index maps certificate IDs to their newest entries in the delta
// (delta.go): the entries (entryLen bytes, plaintext) packed in a slab of
// fixed chunks in the order the log holds them, and an open-addressing
// table of their numbers, linear probing from the top bits of a hash of
// the ID. The slab grows a chunk at a time and never moves: a delta of a
// million entries is not copied as it fills.
//
// It is built at open from the delta log, so its cost is the cold start's.
// Inserting a million random IDs one by one would touch a random cache
// line of the table each time; instead build hashes every entry, orders
// them by the top 16 bits of the hash (a counting sort: two sequential
// passes) and inserts them in that order, which fills the table from its
// start to its end, so the table is written as a stream.
type index struct {
	// slab holds the entries, overwritten ones too (until the delta is
	// written as a run), in chunks of slabEntries.
	slab []*slabChunk
	n    int // entries in the slab
	live int
	bits int // the table has 1<<bits slots
	seed uint64
	// slots hold a tag (the hash's high 32 bits) and the entry's number
	// + 1 (low 32 bits; 0 is empty): a probe settles on the tag without
	// reading the slab.
	slots []uint64
}

// slabChunk is slabEntries entries.
type slabChunk struct{ e [slabEntries * entryLen]byte }

const (
	slabShift   = 14 // 16,384 entries a chunk: 1 MB of entries
	slabEntries = 1 << slabShift
)

func newIndex() *index {
	x := &index{seed: rand.Uint64() | 1}
	x.build()
	return x
}

func (x *index) hash(id []byte) uint64 { return hashID(x.seed, id) }

// hashID hashes a certificate ID (16 bytes) for a table, under the
// table's random seed.
func hashID(seed uint64, id []byte) uint64 {
	a, b := binary.LittleEndian.Uint64(id), binary.LittleEndian.Uint64(id[8:])
	h := (a ^ seed) * 0x9e3779b97f4a7c15
	h ^= b * 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

func (x *index) entries() int { return x.n }

func (x *index) id(i int) []byte { return x.entry(i)[:verify.CertIDLen] }

func (x *index) entry(i int) []byte {
	o := (i & (slabEntries - 1)) * entryLen
	return x.slab[i>>slabShift].e[o : o+entryLen : o+entryLen]
}

// add appends an entry to the slab without indexing it, and returns its
// number; build indexes every entry at once.
func (x *index) add(e []byte) int {
	i := x.n
	if i&(slabEntries-1) == 0 {
		x.slab = append(x.slab, new(slabChunk))
	}
	copy(x.entry(i), e)
	x.n++
	return i
}

// wipe clears the slab's plaintext keys, for an index no longer used:
// they are not left to the collector.
func (x *index) wipe() {
	for _, ch := range x.slab {
		clear(ch.e[:])
	}
	x.slab, x.n = nil, 0
	x.build()
}

// build makes the table anew for every entry of the slab, a later entry
// of an ID replacing an earlier one.
func (x *index) build() {
	n := x.entries()
	x.bits = max(10, bits.Len(uint(2*n)))
	x.slots = make([]uint64, 1<<x.bits)
	x.live = 0
	if n == 0 {
		return
	}
	entries := make([]int32, n)
	for i := range entries {
		entries[i] = int32(i)
	}
	x.insertAll(entries)
}

// insertAll inserts the entries numbered in entries (an ID's later entry
// after its earlier), ordered by the top 16 bits of their hashes (spread),
// so that the table is written from its start to its end rather than at
// random.
func (x *index) insertAll(entries []int32) {
	type item struct {
		h uint64
		i int32
	}
	items := make([]item, len(entries))
	for n, i := range entries {
		items[n] = item{x.hash(x.id(int(i))), i}
	}
	ordered, _ := spread(items, func(it *item) uint64 { return it.h })
	for _, it := range ordered {
		x.insert(int(it.i), it.h)
	}
}

// spread returns xs ordered by the top 16 bits of key (a counting sort:
// two sequential passes; stable), and where each of the 65,536 buckets
// ends in it.
func spread[T any](xs []T, key func(*T) uint64) (out []T, ends []int32) {
	ends = make([]int32, 1<<16+1)
	for n := range xs {
		ends[key(&xs[n])>>48+1]++
	}
	for b := 1; b < len(ends); b++ {
		ends[b] += ends[b-1]
	}
	out = make([]T, len(xs))
	for n := range xs {
		b := key(&xs[n]) >> 48
		out[ends[b]] = xs[n]
		ends[b]++
	}
	return out, ends[:1<<16]
}

func (x *index) insert(i int, h uint64) {
	tag := h &^ (1<<32 - 1)
	mask := uint64(len(x.slots) - 1)
	id := x.id(i)
	for s := h >> (64 - x.bits); ; s = (s + 1) & mask {
		e := x.slots[s]
		if e == 0 {
			x.slots[s] = tag | uint64(i+1)
			x.live++
			return
		}
		if e&^(1<<32-1) == tag && string(x.id(int(uint32(e)-1))) == string(id) {
			x.slots[s] = tag | uint64(i+1)
			return
		}
	}
}

// find returns id's entry, or -1.
func (x *index) find(id []byte) int {
	h := x.hash(id)
	tag := h &^ (1<<32 - 1)
	mask := uint64(len(x.slots) - 1)
	for s := h >> (64 - x.bits); ; s = (s + 1) & mask {
		e := x.slots[s]
		if e == 0 {
			return -1
		}
		if e&^(1<<32-1) == tag && string(x.id(int(uint32(e)-1))) == string(id) {
			return int(uint32(e) - 1)
		}
	}
}

// touch reads the table's slot where id's search begins, and returns it
// so the read stays: see Cache.warm.
func (x *index) touch(id []byte) uint64 {
	return x.slots[x.hash(id)>>(64-x.bits)]
}

// warm touches the slots of the IDs of entries (entryLen bytes each):
// see Cache.warm.
func (x *index) warm(entries []byte) {
	var sum uint64
	for off := 0; off < len(entries); off += entryLen {
		sum += x.touch(entries[off : off+verify.CertIDLen])
	}
	readSink.Add(sum)
}

// get returns id's entry, valid until the next put.
func (x *index) get(id []byte) ([]byte, bool) {
	if i := x.find(id); i >= 0 {
		return x.entry(i), true
	}
	return nil, false
}

// put sets the entry e of its ID.
func (x *index) put(e []byte) {
	id := e[:verify.CertIDLen]
	if i := x.find(id); i >= 0 {
		copy(x.entry(i), e)
		return
	}
	x.insert(x.add(e), x.hash(id))
	if 2*x.live > len(x.slots) {
		x.grow()
	}
}

// grow makes the table twice as large, its entries where they are in the
// slab (the overwritten ones left there until the delta is written as a
// run). A slot's tag is its hash's top 32 bits, which place it in the
// larger table too: the entries move without a read of the slab or a
// hash, in the old table's order, which is the new one's (each slot's
// place is its hash's top bits, then the probe's steps).
func (x *index) grow() {
	old := x.slots
	x.bits++
	x.slots = make([]uint64, 1<<x.bits)
	mask := uint64(len(x.slots) - 1)
	for _, e := range old {
		if e == 0 {
			continue
		}
		s := e >> (64 - x.bits) // the tag's top bits: bits <= 32
		for x.slots[s] != 0 {
			s = (s + 1) & mask
		}
		x.slots[s] = e // the IDs are distinct: no comparison
	}
}

// each returns the live entries' numbers in the slab's order, so that
// their entries are read from start to end.
func (x *index) each() []int {
	live := make([]uint64, (x.n+63)/64)
	for _, e := range x.slots {
		if e != 0 {
			i := uint32(e) - 1
			live[i/64] |= 1 << (i % 64)
		}
	}
	out := make([]int, 0, x.live)
	for w, bitsSet := range live {
		for bitsSet != 0 {
			out = append(out, w*64+bits.TrailingZeros64(bitsSet))
			bitsSet &= bitsSet - 1
		}
	}
	return out
}

// len is the number of IDs indexed.
func (x *index) len() int { return x.live }
