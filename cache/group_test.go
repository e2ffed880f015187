package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"gateagent/internal/lowprio"
	"gateagent/verify"
)

// TestGroupSearch: a lookup's search in a group starts at the place an
// ID's first bytes suggest (IDs are random); groups of IDs spread nothing like
// evenly must give the same answers as a binary search, for IDs present,
// absent between two, and outside the group.
func TestGroupSearch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	shapes := map[string]func(i int) []byte{
		"random": func(int) []byte { return randID(r, 0) },
		"one prefix": func(int) []byte { // the first 8 bytes all alike
			id := randID(r, 0)
			binary.BigEndian.PutUint64(id, 42)
			return id
		},
		"clustered": func(i int) []byte { // all but one near the bottom
			id := randID(r, 0)
			if i > 0 {
				binary.BigEndian.PutUint64(id, uint64(r.IntN(1000)))
			}
			return id
		},
		"top and bottom": func(i int) []byte {
			if i%2 == 0 {
				return randID(r, 0)
			}
			return randID(r, ^uint64(0)-uint64(r.IntN(1000)))
		},
	}
	for name, mk := range shapes {
		for _, n := range []int{1, 2, 3, 8, 9, 66, groupSize} {
			ids := make([][]byte, 0, n)
			for len(ids) < n {
				id := mk(len(ids))
				if !slices.ContainsFunc(ids, func(x []byte) bool { return bytes.Equal(x, id) }) {
					ids = append(ids, id)
				}
			}
			slices.SortFunc(ids, bytes.Compare)
			g := group{n: n, clear: make([]byte, n*clearLen)}
			for i, id := range ids {
				copy(g.clear[i*clearLen:], id)
			}
			probes := append([][]byte{make([]byte, verify.CertIDLen), bytes.Repeat([]byte{0xff}, verify.CertIDLen)}, ids...)
			for _, id := range ids {
				next := bytes.Clone(id)
				next[15]++
				prev := bytes.Clone(id)
				prev[15]--
				probes = append(probes, next, prev, mk(0))
			}
			for _, p := range probes {
				want, _ := slices.BinarySearchFunc(ids, p, bytes.Compare)
				if got := g.searchFrom(g.guess(p, g.last()), p); got != want {
					t.Fatalf("%s, %d IDs: search(%x) = %d, want %d", name, n, p, got, want)
				}
			}
		}
	}
}

func randID(r *rand.Rand, hi uint64) []byte {
	id := make([]byte, verify.CertIDLen)
	if hi == 0 {
		hi = r.Uint64()
	}
	binary.BigEndian.PutUint64(id, hi)
	binary.BigEndian.PutUint64(id[8:], r.Uint64())
	return id
}

// TestSortByID: the bucketed sort orders IDs as bytes.Compare does, for
// random IDs and for IDs that share their top bits (one bucket), a few
// or many, so that the runs it writes are in order whatever the feed.
func TestSortByID(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	shapes := map[string]func(i int) []byte{
		"random": func(int) []byte { return randID(r, 0) },
		"one top": func(int) []byte {
			id := randID(r, 0)
			id[0], id[1] = 0xab, 0xcd
			return id
		},
		"top bits only": func(i int) []byte {
			var id [verify.CertIDLen]byte
			binary.BigEndian.PutUint16(id[:], uint16(r.IntN(4)))
			binary.BigEndian.PutUint32(id[12:], uint32(i))
			return id[:]
		},
		"ascending": func(i int) []byte {
			var id [verify.CertIDLen]byte
			binary.BigEndian.PutUint64(id[:], uint64(i)<<20)
			return id[:]
		},
		"ascending but the last": func(i int) []byte {
			var id [verify.CertIDLen]byte
			binary.BigEndian.PutUint64(id[:], uint64(i+1)<<20)
			if i == 12 || i == 4999 {
				binary.BigEndian.PutUint64(id[:], 0)
			}
			return id[:]
		},
		"descending": func(i int) []byte {
			var id [verify.CertIDLen]byte
			binary.BigEndian.PutUint64(id[:], ^uint64(i)<<20)
			return id[:]
		},
	}
	for name, shape := range shapes {
		for _, n := range []int{0, 1, 13, 5000} {
			x := newIndex()
			var e [entryLen]byte
			for i := range n {
				copy(e[:], shape(i))
				x.put(e[:])
			}
			ids := x.each()
			sortByID(ids, x)
			if len(ids) != x.len() {
				t.Fatalf("%s, %d: %d sorted of %d", name, n, len(ids), x.len())
			}
			if !slices.IsSortedFunc(ids, func(a, b int) int { return bytes.Compare(x.id(a), x.id(b)) }) {
				t.Errorf("%s, %d IDs: not in order", name, n)
			}
		}
	}
}

// TestIndex: the delta's index answers as a map would across its growth
// (each grow reinserts its entries ordered by hash) and its rebuild at
// open, with IDs overwritten on the way, and an ID never put is absent.
func TestIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	x := newIndex()
	want := map[string][entryLen]byte{}
	var ids [][]byte
	for i := range 50_000 {
		var e [entryLen]byte
		if len(ids) > 0 && i%7 == 0 { // an overwrite
			copy(e[:], ids[r.IntN(len(ids))])
		} else {
			id := randID(r, 0)
			ids = append(ids, id)
			copy(e[:], id)
		}
		binary.BigEndian.PutUint64(e[entryLen-8:], uint64(i))
		x.put(e[:])
		want[string(e[:verify.CertIDLen])] = e
	}
	check := func(what string, x *index) {
		t.Helper()
		if x.len() != len(want) {
			t.Fatalf("%s: %d IDs indexed, want %d", what, x.len(), len(want))
		}
		for id, e := range want {
			got, ok := x.get([]byte(id))
			if !ok || !bytes.Equal(got, e[:]) {
				t.Fatalf("%s: %x: %x, %v; want its newest entry", what, id, got, ok)
			}
		}
		if _, ok := x.get(randID(r, 0)); ok {
			t.Fatalf("%s: an ID never put is found", what)
		}
		// each: every ID's newest entry once, in the slab's order.
		each := x.each()
		if len(each) != len(want) || !slices.IsSorted(each) {
			t.Fatalf("%s: each gives %d entries (sorted %v), want %d in the slab's order", what, len(each), slices.IsSorted(each), len(want))
		}
		for _, i := range each {
			if e := want[string(x.id(i))]; !bytes.Equal(x.entry(i), e[:]) {
				t.Fatalf("%s: each gives entry %d, %x, not its ID's newest", what, i, x.entry(i))
			}
		}
	}
	check("grown", x)
	x.build()
	check("rebuilt", x)
}

// TestBatchWriterTable: a batch's own table finds each ID's newest entry,
// an overwrite keeps the ID's place, and a batch larger than its hint
// (the table grown) loses nothing.
func TestBatchWriterTable(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, hint := range []int{0, 1, 3000} {
		w := newBatchWriter(nil, hint)
		// find is the offset of id's entry in the batch, or -1.
		find := func(id []byte) (int, uint64) {
			i, s := w.at.find(id, w.at.hash(id), w.id)
			if i < 0 {
				return -1, s
			}
			return i * entryLen, s
		}
		want := map[verify.CertID][entryLen]byte{}
		var order []verify.CertID
		for i := range 3000 {
			var e [entryLen]byte
			var id verify.CertID
			if len(order) > 0 && i%5 == 0 {
				id = order[r.IntN(len(order))] // an overwrite
			} else {
				copy(id[:], randID(r, 0))
				order = append(order, id)
			}
			copy(e[:], id[:])
			binary.BigEndian.PutUint64(e[entryLen-8:], uint64(i))
			w.set(id, e[:])
			want[id] = e
		}
		if got := len(w.entries) / entryLen; got != len(order) {
			t.Fatalf("hint %d: %d entries, want %d (one an ID)", hint, got, len(order))
		}
		for n, id := range order {
			off, _ := find(id[:])
			e := want[id]
			if off < 0 {
				t.Fatalf("hint %d: ID %d not found", hint, n)
			}
			if off != n*entryLen || !bytes.Equal(w.entries[off:off+entryLen], e[:]) {
				t.Fatalf("hint %d: ID %d at %d, %x; want at %d, its newest entry", hint, n, off, w.entries[off:off+entryLen], n*entryLen)
			}
		}
		if off, _ := find(randID(r, 0)); off >= 0 {
			t.Fatalf("hint %d: an ID never set is found", hint)
		}
	}
}

// TestSealingFollowsTheCaller: a run's groups are sealed by a goroutine
// of their own (writeGroups), which runs at the priority of the one that
// writes the run: the agent's maintenance is lowered below the gate, and
// its sealing with it.
func TestSealingFollowsTheCaller(t *testing.T) {
	key, err := NewKey(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(filepath.Join(t.TempDir(), "c.db"), &Options{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	niceOf := func() int {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/stat", syscall.Gettid()))
		if err != nil {
			t.Fatal(err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
		n, _ := strconv.Atoi(f[16])
		return n
	}
	type nices struct{ writer, sealer int }
	got := make(chan nices)
	go func() {
		if err := lowprio.Lower(); err != nil {
			t.Error(err)
		}
		var n nices
		n.writer = niceOf()
		r := rand.New(rand.NewPCG(8, 8))
		var ids [][]byte
		for range 3 * groupSize {
			ids = append(ids, randID(r, 0))
		}
		slices.SortFunc(ids, bytes.Compare)
		next := func(yield func([]byte) bool) {
			n.sealer = niceOf() // the sealing goroutine reads the entries
			e := make([]byte, entryLen)
			for _, id := range ids {
				copy(e, id)
				if !yield(e) {
					return
				}
			}
		}
		rn := &run{runMeta: runMeta{Seq: 99}, bloom: newBloom(len(ids))}
		if err := c.writeGroups(99, rn, next); err != nil {
			t.Error(err)
		}
		got <- n
	}()
	n := <-got
	if n.writer < lowprio.Nice || n.sealer != n.writer {
		t.Fatalf("writer at nice %d, sealing at nice %d; want the sealing at the lowered writer's", n.writer, n.sealer)
	}
}
