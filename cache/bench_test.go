package cache_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/verify"

	bolt "go.etcd.io/bbolt"
)

// The 1M benchmarks load a million certificates in feed-sized batches into
// an empty cache; run them with `make bench`, not in CI's test run.
const (
	benchCerts = 1_000_000
	benchBatch = 10_000
)

func benchBatches(b *testing.B) []*cache.Batch {
	var out []*cache.Batch
	for from := uint64(0); from < benchCerts; from += benchBatch {
		out = append(out, cachetest.Batch(from, from+benchBatch, benchCerts))
	}
	return out
}

func reportSize(b *testing.B, path string) { cachetest.ReportSize(b, path, benchCerts) }

// BenchmarkApply1M: Apply of 1,000,000 certificates, ID-ordered as the
// feed's full sync sends them, in batches of 10,000, to an empty cache.
func BenchmarkApply1M(b *testing.B) {
	batches := benchBatches(b)
	applyAll(b, batches)
}

// applyAll times loading batches into a new cache file, b.N times.
func applyAll(b *testing.B, batches []*cache.Batch) {
	dir := b.TempDir()
	runtime.GC()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		path := filepath.Join(dir, "apply.db")
		c, err := cache.Open(path, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, bt := range batches {
			if _, err := c.Apply(bt); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		reportSize(b, path)
		os.Remove(path)
		b.StartTimer()
	}
}

// BenchmarkFloorPut1M: the floor of BenchmarkApply1M. Raw bbolt puts of the
// same keys and values in the same batches, nothing else.
func BenchmarkFloorPut1M(b *testing.B) {
	var batches [][]verify.Cert
	for _, bt := range benchBatches(b) {
		batches = append(batches, bt.Upserts)
	}
	cachetest.FloorPut(b, batches)
}

// BenchmarkApply1MShuffled is BenchmarkApply1M with the batches' records in
// random ID order, as incremental feed batches arrive: the case the ID-ordered
// full sync avoids. For information; it has no goal.
func BenchmarkApply1MShuffled(b *testing.B) {
	batches := benchBatches(b)
	var all []verify.Cert
	for _, bt := range batches {
		all = append(all, bt.Upserts...)
	}
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for i, bt := range batches {
		bt.Upserts = all[i*benchBatch : (i+1)*benchBatch]
	}
	applyAll(b, batches)
}

// loaded1M is an open cache holding 1,000,000 certificates, closed when
// the benchmark ends.
func loaded1M(b *testing.B) *cache.Cache {
	b.Helper()
	c, err := cache.Open(filepath.Join(b.TempDir(), "check.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for _, bt := range benchBatches(b) {
		if _, err := c.Apply(bt); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// BenchmarkCheck1M: the integrity check diag runs on a running gate's
// cache of 1,000,000 certificates; it holds the cache's write lock, so a
// grant waits this long when a technician runs diag. Its floor is
// bbolt's own check of the same file in a read transaction.
func BenchmarkCheck1M(b *testing.B) {
	c := loaded1M(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := c.Check(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheck1MFloor(b *testing.B) {
	c := loaded1M(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cache.DB(c).View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				b.Fatal(err)
			}
			return nil
		})
	}
}
