package cache_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
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
// feed's full sync sends them, in batches of 10,000, to an empty cache
// (each batch a record of the delta, synced), then the delta written as a
// run (WriteRun: the maintenance's work once a window has passed), so
// the certificates are in the file as a gate holds them.
func BenchmarkApply1M(b *testing.B) {
	batches := benchBatches(b)
	applyAll(b, batches)
}

// applyAll times loading batches into a new cache file, b.N times.
func applyAll(b *testing.B, batches []*cache.Batch) {
	dir := b.TempDir()
	runtime.GC()
	b.ResetTimer()
	var cpu time.Duration // its process's CPU time, as FloorPut1M reports it
	defer func() { b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op") }()
	for i := 0; i < b.N; i++ {
		stop := cachetest.CPUClock()
		path := filepath.Join(dir, "apply.db")
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			b.Fatal(err)
		}
		for _, bt := range batches {
			if _, err := c.Apply(bt); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.WriteRun(cachetest.Epoch); err != nil {
			b.Fatal(err)
		}
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		cpu += stop()
		b.StopTimer()
		reportSize(b, path)
		os.Remove(path)
		os.RemoveAll(cache.DeltaPath(path))
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
	c, err := cache.Open(filepath.Join(b.TempDir(), "check.db"), cachetest.Options(nil))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	for _, bt := range benchBatches(b) {
		if _, err := c.Apply(bt); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.WriteRun(cachetest.Epoch); err != nil { // in the file, as a gate holds them
		b.Fatal(err)
	}
	return c
}

// loaded1MFile is the closed file of loaded1M.
func loaded1MFile(b *testing.B) string {
	b.Helper()
	c := loaded1M(b)
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	return c.Path()
}

// BenchmarkOpen1M: the agent's cold start on a cache of 1,000,000
// certificates: Open, which checks what bbolt reads as it opens and
// leaves the certificates to the check it starts beside the gate
// (BenchmarkCheck1M: Close stops it here), and Close. The goal is 100 ms
// per million certificates. Its floor is bbolt's own Open and Close of
// the same file, which checks nothing.
func BenchmarkOpen1M(b *testing.B) {
	path := loaded1MFile(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func BenchmarkOpen1MFloor(b *testing.B) {
	path := loaded1MFile(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}

// churn1M is loaded1M after 40,000 more certificates came in 20 log
// batches in random ID order, as issuance delivers them: the free pages
// their page splits leave make bbolt's free list, which it writes at
// every commit, grow.
func churn1M(b *testing.B) *cache.Cache {
	c := loaded1M(b)
	r := rand.New(rand.NewPCG(3, 4))
	fs, _ := c.Feed()
	for k := range uint64(20) {
		bt := &cache.Batch{From: fs.Cursor + k, Next: fs.Cursor + k + 1, Feed: cachetest.Batch(0, 1, 1).Feed}
		for range 2000 {
			ct := cachetest.Cert(r.Uint64N(benchCerts), benchCerts)
			ct.ID[15] ^= byte(1 + r.IntN(255)) // a new ID between the stored ones
			bt.Upserts = append(bt.Upserts, ct)
		}
		if _, err := c.Apply(bt); err != nil {
			b.Fatal(err)
		}
	}
	return c
}

// grantEvent is the event a grant writes, with fsync, before the relay
// moves.
var grantEvent = event.Event{Time: cachetest.Epoch, Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry,
	CertID: cachetest.Cert(5, 10).ID}

// commits times b.N grant commits by appendEvent and reports what each
// wrote: wchar-B/op (bytes handed to write(2): bbolt's pages) and
// write-B/op (what reached the block device, the file system's own
// writes included), from /proc/self/io.
func commits(b *testing.B, appendEvent func(event.Event) error) {
	for range 100 { // past the first pages of a new bucket
		if err := appendEvent(grantEvent); err != nil {
			b.Fatal(err)
		}
	}
	w0, d0 := procIO(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := appendEvent(grantEvent); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	w1, d1 := procIO(b)
	b.ReportMetric(float64(w1-w0)/float64(b.N), "wchar-B/op")
	b.ReportMetric(float64(d1-d0)/float64(b.N), "write-B/op")
}

// BenchmarkGrantCommitShared1M: a grant's event committed into the file of
// 1,000,000 certificates after churn1M, as schema 1 kept the event log.
// BenchmarkGrantCommitJournal: the same commit into the journal, a file of
// its own. Why the journal is apart (README, "The journal apart").
func BenchmarkGrantCommitShared1M(b *testing.B) {
	c := churn1M(b)
	commits(b, func(e event.Event) error { return cache.AppendEventShared(c, e) })
}

func BenchmarkGrantCommitJournal(b *testing.B) {
	j, err := cache.OpenJournal(filepath.Join(b.TempDir(), "journal"), cachetest.Options(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	// The steady state: segments made (written with zeros once in their
	// life) and given back for reuse, as on a gate that has run a day:
	// five segments' worth of events, then all of them acknowledged.
	for range 5 * 1024 {
		if _, err := j.AppendEvent(event.Event{Time: time.Now(), Kind: event.Alarm, Detail: "warm-up"}); err != nil {
			b.Fatal(err)
		}
	}
	bl, err := j.Backlog()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := j.DeleteEventsThrough(bl.LastSeq); err != nil {
		b.Fatal(err)
	}
	commits(b, func(e event.Event) error { _, err := j.AppendEvent(e); return err })
}

// procIO reads this process's wchar and write_bytes from /proc/self/io.
func procIO(b *testing.B) (wchar, writeBytes int64) {
	b.Helper()
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "wchar":
			wchar = n
		case "write_bytes":
			writeBytes = n
		}
	}
	return wchar, writeBytes
}

// BenchmarkCheck1M: the integrity check (pages.go) that diag runs on a
// running gate's cache of 1,000,000 certificates; it holds the cache's
// write lock, so a grant waits this long when a technician runs diag. Its
// floor is bbolt's own tx.Check of the same file in a read transaction,
// which checks less (no records) and can crash on a damaged file.
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

// BenchmarkLive1M: the count of live certificates the wear report makes
// every 15 minutes, beside its floor, the statistics' page walk
// (BenchmarkStats1M) that the metrics already make every minute.
func BenchmarkLive1M(b *testing.B) {
	c := loaded1M(b)
	now := cachetest.Epoch
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if n, err := c.Live(now); err != nil || n != 1_000_000 {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkStats1M(b *testing.B) {
	c := loaded1M(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Stats(); err != nil {
			b.Fatal(err)
		}
	}
}
