package cache_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/verify"
)

// The 1M benchmarks load a million certificates in feed-sized batches into
// an empty cache; run them with `make bench`, not in CI's test run.
const (
	benchCerts = 1_000_000
	benchBatch = 10_000
	// rawRecordBytes is what one certificate takes as bare key and value:
	// cert ID, key, not_before, not_after and status.
	rawRecordBytes = verify.CertIDLen + verify.KeyLen + 8 + 8 + 1
)

func benchBatches(b *testing.B) []*cache.Batch {
	var out []*cache.Batch
	for from := uint64(0); from < benchCerts; from += benchBatch {
		out = append(out, cachetest.Batch(from, from+benchBatch, benchCerts))
	}
	return out
}

func reportSize(b *testing.B, path string) {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
	b.ReportMetric(float64(fi.Size())/float64(benchCerts*rawRecordBytes), "x-raw")
}

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
	type kv struct{ k, v []byte }
	var batches [][]kv
	for _, bt := range benchBatches(b) {
		// Keys and values in two slabs and nothing else kept: the floor
		// holds the smallest heap and reads contiguous memory.
		recs := make([]kv, len(bt.Upserts))
		keys := make([]byte, 0, len(bt.Upserts)*verify.CertIDLen)
		vals := make([]byte, 0, len(bt.Upserts)*len(cache.EncodeRecord(&bt.Upserts[0])))
		for i := range bt.Upserts {
			k, v := len(keys), len(vals)
			keys = append(keys, bt.Upserts[i].ID[:]...)
			vals = append(vals, cache.EncodeRecord(&bt.Upserts[i])...)
			recs[i] = kv{keys[k:len(keys):len(keys)], vals[v:len(vals):len(vals)]}
		}
		batches = append(batches, recs)
	}
	runtime.GC()
	dir := b.TempDir()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		path := filepath.Join(dir, "floor.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoStatistics: true}) // as the cache opens it
		if err != nil {
			b.Fatal(err)
		}
		for _, recs := range batches {
			err := db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("certs"))
				if err != nil {
					return err
				}
				bk.FillPercent = 1.0 // the best a raw sequential load can do
				for _, r := range recs {
					if err := bk.Put(r.k, r.v); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		db.Close()
		b.StopTimer()
		reportSize(b, path)
		os.Remove(path)
		b.StartTimer()
	}
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
