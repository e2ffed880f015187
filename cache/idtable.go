package cache

import (
	"encoding/binary"
	"math/bits"
	"math/rand/v2"
)

// idTable maps certificate IDs to the numbers of their entries, which
// are kept elsewhere (the delta's index's slab, a feed batch's entries):
// open addressing, linear probing from the top bits of a hash of the ID
// under the table's random seed, at most half full. A slot holds a tag
// (the hash's high 32 bits) and the entry's number + 1 (low 32 bits; 0
// is empty): a probe settles on the tag without reading an entry.
type idTable struct {
	bits  int // the table has 1<<bits slots
	seed  uint64
	live  int
	slots []uint64
}

// reset empties the table and sizes it for n IDs, at least 1<<minBits
// slots, under a new seed.
func (t *idTable) reset(n, minBits int) {
	t.seed = rand.Uint64() | 1
	t.bits = max(minBits, bits.Len(uint(2*n)))
	t.slots = make([]uint64, 1<<t.bits)
	t.live = 0
}

// hash hashes a certificate ID (16 bytes) under the table's seed.
func (t *idTable) hash(id []byte) uint64 {
	a, b := binary.LittleEndian.Uint64(id), binary.LittleEndian.Uint64(id[8:])
	h := (a ^ t.seed) * 0x9e3779b97f4a7c15
	h ^= b * 0xbf58476d1ce4e5b9
	return h ^ h>>29
}

const tagMask = ^uint64(1<<32 - 1)

// find returns the number of id's entry (h its hash; idOf reads an
// entry's ID) and its slot, or -1 and the empty slot where it would go.
func (t *idTable) find(id []byte, h uint64, idOf func(int) []byte) (int, uint64) {
	mask := uint64(len(t.slots) - 1)
	for s := h >> (64 - t.bits); ; s = (s + 1) & mask {
		e := t.slots[s]
		if e == 0 {
			return -1, s
		}
		if e&tagMask == h&tagMask && string(idOf(int(uint32(e)-1))) == string(id) {
			return int(uint32(e) - 1), s
		}
	}
}

// set makes slot s, which find returned for an ID of hash h, hold entry
// i: in place of the ID's entry, or in an empty slot, the table then
// grown if more than half full (s is then stale).
func (t *idTable) set(s, h uint64, i int) {
	if t.slots[s] == 0 {
		t.live++
	}
	t.slots[s] = h&tagMask | uint64(i+1)
	if 2*t.live > len(t.slots) {
		t.grow()
	}
}

// grow makes the table twice as large. A slot's tag is its hash's top 32
// bits, which place it in the larger table too: the slots move without a
// read of an entry or a hash, in the old table's order, which is the new
// one's (each slot's place is its hash's top bits, then the probe's
// steps).
func (t *idTable) grow() {
	old := t.slots
	t.bits++
	t.slots = make([]uint64, 1<<t.bits)
	mask := uint64(len(t.slots) - 1)
	for _, e := range old {
		if e == 0 {
			continue
		}
		s := e >> (64 - t.bits) // the tag's top bits: bits <= 32
		for t.slots[s] != 0 {
			s = (s + 1) & mask
		}
		t.slots[s] = e // the IDs are distinct: no comparison
	}
}

// touch reads the slot where id's search begins, and returns it so the
// read stays: see Cache.warm.
func (t *idTable) touch(id []byte) uint64 {
	return t.slots[t.hash(id)>>(64-t.bits)]
}
