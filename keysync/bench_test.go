package keysync_test

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/verify"
)

// The 1M benchmarks sync a million certificates; run them with
// `make bench`, not in CI's test run.
const (
	benchCerts = 1_000_000
	benchPage  = 16384 // the issuer's default page size
	// rawRecordBytes: cert ID, key, not_before, not_after and status.
	rawRecordBytes = verify.CertIDLen + verify.KeyLen + 8 + 8 + 1
)

func benchCertList() []verify.Cert {
	certs := make([]verify.Cert, benchCerts)
	for i := range certs {
		certs[i] = cachetest.Cert(uint64(i), benchCerts)
	}
	return certs
}

// benchIssuer starts a loopback issuer holding a million certificates.
func benchIssuer(b *testing.B, docCache int) *issuertest.Server {
	s := issuertest.Start(b, issuer.Options{NoSync: true, DocCacheBytes: docCache})
	certs := benchCertList()
	for i := 0; i < len(certs); i += 50_000 {
		if err := s.InsertSynthetic(certs[i : i+50_000]); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func syncOnce(b *testing.B, url string, s *issuertest.Server, path string) {
	c, err := cache.Open(path, nil)
	if err != nil {
		b.Fatal(err)
	}
	cl, err := keysync.New(keysync.Config{URL: url, Keys: issuertest.Keyring(b, s.Opts.Signer), Cache: c})
	if err != nil {
		b.Fatal(err)
	}
	res, err := cl.Sync(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	if res.Cursor != benchCerts || res.Upserts != benchCerts {
		b.Fatalf("sync: %+v", res)
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
}

func reportSize(b *testing.B, path string) {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
	b.ReportMetric(float64(fi.Size())/float64(benchCerts*rawRecordBytes), "x-raw")
}

func benchSync(b *testing.B, docCache int) {
	s := benchIssuer(b, docCache)
	dir := b.TempDir()
	// A gate syncs once before the timing: an issuer serving a station
	// has its pages signed already (they never change).
	warm := filepath.Join(dir, "warm.db")
	syncOnce(b, s.URL, s, warm)
	os.Remove(warm)
	runtime.GC()
	b.ResetTimer()
	for range b.N {
		path := filepath.Join(dir, "gate.db")
		syncOnce(b, s.URL, s, path)
		b.StopTimer()
		reportSize(b, path)
		os.Remove(path)
		b.StartTimer()
	}
}

// BenchmarkSync1M: a full sync of 1,000,000 certificates from the loopback
// issuer into an empty cache: head, 62 snapshot pages (HTTP, signature
// check, parse, one transaction each), the log tail. Its floor is
// BenchmarkSyncFloorPut1M.
func BenchmarkSync1M(b *testing.B) { benchSync(b, 128<<20) }

// BenchmarkSync1MColdIssuer is BenchmarkSync1M with the issuer building and
// signing every page on demand (no page cache): for information.
func BenchmarkSync1MColdIssuer(b *testing.B) { benchSync(b, -1) }

// BenchmarkSyncFloorPut1M: the floor of BenchmarkSync1M. Raw bbolt puts of
// the same records in batches of the same page size, nothing else.
func BenchmarkSyncFloorPut1M(b *testing.B) {
	type kv struct{ k, v []byte }
	certs := benchCertList()
	var batches [][]kv
	for i := 0; i < len(certs); i += benchPage {
		page := certs[i:min(i+benchPage, len(certs))]
		recs := make([]kv, len(page))
		keys := make([]byte, 0, len(page)*verify.CertIDLen)
		vals := make([]byte, 0, len(page)*49)
		for j := range page {
			k, v := len(keys), len(vals)
			keys = append(keys, page[j].ID[:]...)
			vals = append(vals, 0) // flags
			vals = binary.BigEndian.AppendUint64(vals, uint64(page[j].NotBefore.Unix()))
			vals = binary.BigEndian.AppendUint64(vals, uint64(page[j].NotAfter.Unix()))
			vals = append(vals, page[j].Key[:]...)
			recs[j] = kv{keys[k:len(keys):len(keys)], vals[v:len(vals):len(vals)]}
		}
		batches = append(batches, recs)
	}
	certs = nil
	runtime.GC()
	dir := b.TempDir()
	b.ResetTimer()
	for range b.N {
		path := filepath.Join(dir, "floor.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoStatistics: true})
		if err != nil {
			b.Fatal(err)
		}
		for _, recs := range batches {
			err := db.Update(func(tx *bolt.Tx) error {
				bk, err := tx.CreateBucketIfNotExists([]byte("certs"))
				if err != nil {
					return err
				}
				bk.FillPercent = 1.0
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
