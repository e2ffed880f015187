package cachetest

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// RawRecordBytes is what one certificate takes as bare key and value:
// cert ID, key, not_before, not_after and status.
const RawRecordBytes = verify.CertIDLen + verify.KeyLen + 8 + 8 + 1

// Record returns the value the cache stores for a valid certificate
// (flags | not_before | not_after | key); the cache's tests hold it to the
// cache's own encoding.
func Record(c *verify.Cert) []byte {
	v := make([]byte, 0, 1+8+8+verify.KeyLen)
	v = append(v, 0)
	v = binary.BigEndian.AppendUint64(v, uint64(c.NotBefore.Unix()))
	v = binary.BigEndian.AppendUint64(v, uint64(c.NotAfter.Unix()))
	return append(v, c.Key[:]...)
}

// ReportSize reports the file's size in MB and against n raw records.
func ReportSize(b *testing.B, path string, n int) {
	b.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
	b.ReportMetric(float64(fi.Size())/float64(n*RawRecordBytes), "x-raw")
}

// FloorPut is the floor of the bulk-load benchmarks: raw bbolt puts of the
// certificates' stored records, in the given batches, into a new file,
// b.N times, and nothing else. Keys and values sit in contiguous slabs and
// the heap is collected before the timing, so the floor does the least
// work the load can.
func FloorPut(b *testing.B, batches [][]verify.Cert) {
	type kv struct{ k, v []byte }
	var all [][]kv
	n := 0
	for _, certs := range batches {
		recs := make([]kv, len(certs))
		keys := make([]byte, 0, len(certs)*verify.CertIDLen)
		vals := make([]byte, 0, len(certs)*(RawRecordBytes-verify.CertIDLen))
		for i := range certs {
			k, v := len(keys), len(vals)
			keys = append(keys, certs[i].ID[:]...)
			vals = append(vals, Record(&certs[i])...)
			recs[i] = kv{keys[k:len(keys):len(keys)], vals[v:len(vals):len(vals)]}
		}
		all = append(all, recs)
		n += len(certs)
	}
	batches = nil
	runtime.GC()
	dir := b.TempDir()
	b.ResetTimer()
	for range b.N {
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
		b.StopTimer()
		ReportSize(b, path, n)
		os.Remove(path)
		b.StartTimer()
	}
}
