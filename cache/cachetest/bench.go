package cachetest

import (
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/verify"
)

// RawRecordBytes is what one certificate takes as bare key and value:
// cert ID, key, not_before, not_after and status.
const RawRecordBytes = verify.CertIDLen + verify.KeyLen + 8 + 8 + 1

// SealedRecordBytes is the record a cache of schema 3 stored for a
// certificate (flags, times, nonce, sealed key, tag): the offsets
// DamageRecord takes.
const SealedRecordBytes = 1 + 8 + 8 + 12 + verify.KeyLen + 16

// StoredCertBytes is what the cache stores for a certificate in a run's
// group (cache/group.go): a full group of 67 is 3,992 bytes, 59.6 a
// certificate, rounded up. The floors of the bulk loads write values of
// this size.
const StoredCertBytes = 60

// Record returns the value a cache of schema 2 stored for a valid
// certificate, key in plaintext (flags | not_before | not_after | key):
// what a cache written before sealed keys holds, for the tests of its
// rebuild and for the unsealed control run of the key search.
func Record(c *verify.Cert) []byte {
	v := make([]byte, 0, 1+8+8+verify.KeyLen)
	v = append(v, 0)
	v = binary.BigEndian.AppendUint64(v, uint64(c.NotBefore.Unix()))
	v = binary.BigEndian.AppendUint64(v, uint64(c.NotAfter.Unix()))
	return append(v, c.Key[:]...)
}

// floorValue is a value of the sealed record's size for c: its head as the
// cache writes it, pseudo-random bytes where nonce, ciphertext and tag go.
func floorValue(c *verify.Cert) []byte {
	v := make([]byte, 0, StoredCertBytes)
	v = append(v, 0)
	v = binary.BigEndian.AppendUint64(v, uint64(c.NotBefore.Unix()))
	v = binary.BigEndian.AppendUint64(v, uint64(c.NotAfter.Unix()))
	h := sha256.Sum256(c.ID[:])
	for len(v) < StoredCertBytes {
		v = append(v, h[:min(len(h), StoredCertBytes-len(v))]...)
	}
	return v
}

// ReportSize reports the certificate files' size (the cache file and its
// delta) in MB and against n raw records.
func ReportSize(b *testing.B, path string, n int) {
	b.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	size := fi.Size() + cache.DeltaSize(cache.DeltaPath(path))
	b.ReportMetric(float64(size)/1e6, "file-MB")
	b.ReportMetric(float64(size)/float64(n*RawRecordBytes), "x-raw")
}

// FloorPut is the floor of the bulk-load benchmarks: raw bbolt puts of
// records of the stored size (StoredCertBytes, already sealed: the floor
// encrypts nothing), in the given batches, into a new file, b.N times, and
// nothing else. Keys and values sit in contiguous slabs and
// the heap is collected before the timing, so the floor does the least
// work the load can.
func FloorPut(b *testing.B, batches [][]verify.Cert) {
	type kv struct{ k, v []byte }
	var all [][]kv
	n := 0
	for _, certs := range batches {
		recs := make([]kv, len(certs))
		keys := make([]byte, 0, len(certs)*verify.CertIDLen)
		vals := make([]byte, 0, len(certs)*StoredCertBytes)
		for i := range certs {
			k, v := len(keys), len(vals)
			keys = append(keys, certs[i].ID[:]...)
			vals = append(vals, floorValue(&certs[i])...)
			recs[i] = kv{keys[k:len(keys):len(keys)], vals[v:len(vals):len(vals)]}
		}
		all = append(all, recs)
		n += len(certs)
	}
	batches = nil
	runtime.GC()
	dir := b.TempDir()
	b.ResetTimer()
	var cpu time.Duration
	defer func() { b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op") }()
	for range b.N {
		stop := CPUClock()
		path := filepath.Join(dir, "floor.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoStatistics: true}) // as the cache opens it
		if err != nil {
			b.Fatal(err)
		}
		for _, recs := range all {
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
		cpu += stop()
		b.StopTimer()
		ReportSize(b, path, n)
		os.Remove(path)
		b.StartTimer()
	}
}

// CPUTime starts counting the process's CPU time (user and system, every
// thread) and returns the function that reports it per op as cpu-ns/op.
// Beside the wall-clock ns/op it measures the work without the time spent
// waiting for a core: on a shared machine (CI's two cores, other jobs) it
// is the steadier figure. Call the function before b.StopTimer work that
// is not the benchmark's, or at the end.
func CPUTime(b *testing.B) (report func()) {
	start := cpuNow()
	return func() {
		b.ReportMetric(float64((cpuNow()-start).Nanoseconds())/float64(b.N), "cpu-ns/op")
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CPUClock starts a CPU-time stopwatch; the function returns the CPU time
// since (for benchmarks that exclude parts of each op from the timing).
func CPUClock() func() time.Duration {
	start := cpuNow()
	return func() time.Duration { return cpuNow() - start }
}
