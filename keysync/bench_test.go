package keysync_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/feed/feedtest"
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
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		b.Fatal(err)
	}
	cl, err := keysync.New(keysync.Config{URL: url, Keys: feedtest.Keyring(b, s.Opts.Signer), Fleet: feedtest.Fleet(b), Cache: c})
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
	var cpu time.Duration
	for range b.N {
		path := filepath.Join(dir, "gate.db")
		stop := cachetest.CPUClock()
		syncOnce(b, s.URL, s, path)
		cpu += stop()
		b.StopTimer()
		cachetest.ReportSize(b, path, benchCerts)
		os.Remove(path)
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
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
	certs := benchCertList()
	var batches [][]verify.Cert
	for i := 0; i < len(certs); i += benchPage {
		batches = append(batches, certs[i:min(i+benchPage, len(certs))])
	}
	cachetest.FloorPut(b, batches)
}
