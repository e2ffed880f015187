package cache

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

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
