package cache

import (
	"math/bits"

	"gateagent/verify"
)

// index maps certificate IDs to their newest entries in the delta
// (delta.go): the entries (entryLen bytes, plaintext) packed in a slab of
// fixed chunks in the order the log holds them, and an idTable of their
// numbers. The slab grows a chunk at a time and never moves: a delta of a
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
	idTable
}

// slabChunk is slabEntries entries.
type slabChunk struct{ e [slabEntries * entryLen]byte }

const (
	slabShift   = 14 // 16,384 entries a chunk: 1 MB of entries
	slabEntries = 1 << slabShift
)

func newIndex() *index {
	x := &index{}
	x.build()
	return x
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
// of an ID replacing an earlier one: inserted ordered by the top 16 bits
// of their hashes (spread), so that the table is written from its start
// to its end rather than at random.
func (x *index) build() {
	n := x.entries()
	x.reset(n, 10)
	type item struct {
		h uint64
		i int32
	}
	items := make([]item, n) // stable in spread: an ID's later entry after its earlier
	for i := range items {
		items[i] = item{x.hash(x.id(i)), int32(i)}
	}
	ordered, _ := spread(items, func(it *item) uint64 { return it.h })
	for _, it := range ordered {
		_, s := x.idTable.find(x.id(int(it.i)), it.h, x.id)
		x.set(s, it.h, int(it.i))
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

// find returns id's entry, or -1.
func (x *index) find(id []byte) int {
	i, _ := x.idTable.find(id, x.hash(id), x.id)
	return i
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
	h := x.hash(id)
	if i, s := x.idTable.find(id, h, x.id); i >= 0 {
		copy(x.entry(i), e)
	} else {
		x.set(s, h, x.add(e))
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
