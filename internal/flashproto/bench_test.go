package flashproto

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/verify"
)

// coldStartEnv makes the test binary a fresh agent process opening the
// candidate's files (coldStartChild).
const coldStartEnv = "GATEAGENT_PROTO_COLDSTART"

func TestMain(m *testing.M) {
	if spec := os.Getenv(coldStartEnv); spec != "" {
		coldStartChild(spec) // never returns
	}
	os.Exit(m.Run())
}

func randCert(r *rand.Rand, at time.Time) verify.Cert {
	var c verify.Cert
	binary.BigEndian.PutUint64(c.ID[:], r.Uint64())
	binary.BigEndian.PutUint64(c.ID[8:], r.Uint64())
	for i := range 4 {
		binary.BigEndian.PutUint64(c.Key[8*i:], r.Uint64())
	}
	c.Key[0] |= 1
	c.NotBefore, c.NotAfter = at, at.Add(24*time.Hour)
	return c
}

// coldStartFiles writes a candidate's files: a base of base certificates
// (a full sync) and delta more in feed batches of 116 (random IDs), an
// empty journal; it returns the directory and a certificate of the delta.
func coldStartFiles(b *testing.B, base, delta int) (string, verify.CertID) {
	b.Helper()
	dir := b.TempDir()
	d, err := OpenDeltaCerts(dir, 8<<20, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return dir, fillStore(b, dir, d, base, delta, 0)
}

// runsFiles writes the run candidate's files: a full sync of base
// certificates as its first run, then runs more runs of delta
// certificates each (one window's worth), then delta in the delta.
func runsFiles(b *testing.B, base, runs, delta int) (string, verify.CertID) {
	b.Helper()
	dir := b.TempDir()
	c, err := OpenRunCerts(dir, 8<<20, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	return dir, fillStore(b, dir, c, base, delta, runs)
}

// fillStore loads base certificates as a full sync, then (runs+1)·delta
// in batches with a maintenance after each delta's worth but the last.
func fillStore(b *testing.B, dir string, d interface {
	Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState, now time.Time) error
	Apply(b *cache.Batch) (bool, error)
	Maintain(now time.Time, retention time.Duration) error
	Close() error
}, base, delta, runs int) verify.CertID {
	r := rand.New(rand.NewPCG(5, 5))
	certs := make([]verify.Cert, base)
	for i := range certs {
		certs[i] = randCert(r, t0)
	}
	slices.SortFunc(certs, func(a, b verify.Cert) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	fs := cache.FeedState{Epoch: 1, IssuerTime: t0, SyncedAt: t0, MaxAge: time.Hour}
	pages := func(yield func([]verify.Cert) bool) {
		for i := 0; i < len(certs); i += 16384 {
			if !yield(certs[i:min(len(certs), i+16384)]) {
				return
			}
		}
	}
	if err := d.Load(pages, uint64(base), fs, t0); err != nil {
		b.Fatal(err)
	}
	certs = nil
	cursor := uint64(base)
	var last verify.CertID
	now := t0
	for k := range runs + 1 {
		if k > 0 {
			now = now.Add(time.Hour)
			if err := d.Maintain(now, 24*time.Hour); err != nil {
				b.Fatal(err)
			}
		}
		for n := 0; n < delta; n += 116 {
			bt := &cache.Batch{From: cursor, Next: cursor + 116, Feed: fs}
			for range 116 {
				bt.Upserts = append(bt.Upserts, randCert(r, t0))
			}
			if _, err := d.Apply(bt); err != nil {
				b.Fatal(err)
			}
			cursor = bt.Next
			last = bt.Upserts[0].ID
		}
	}
	if err := d.Close(); err != nil {
		b.Fatal(err)
	}
	j, err := OpenLogJournal(dir, 4<<20)
	if err != nil {
		b.Fatal(err)
	}
	j.AppendEvent(eventAt(t0))
	j.Close()
	return last
}

// BenchmarkColdStartDelta5M: the candidate's cold start at 5,000,000
// certificates in the base and 500,000 in the delta (12 h of issue 16's
// churn since the last rebuild): a fresh process opens the base (bbolt,
// read only, not walked), replays the delta log into the index, replays
// the journal, and looks one certificate of the delta up. Warm, and with
// the files dropped from the page cache. Beside BenchmarkColdStart5M and
// its floor in package cache.
func BenchmarkColdStartDelta5M(b *testing.B) {
	for _, delta := range []int{250_000, 500_000, 1_000_000} {
		dir, id := coldStartFiles(b, 5_000_000, delta)
		coldStarts(b, "delta", dir, id, fmt.Sprintf("delta=%dk", delta/1000))
	}
}

// BenchmarkColdStartRuns5M: the run candidate's cold start with
// 5,000,000 certificates in its first run (a full sync), then runs of one
// window's worth of issue 16's churn each and as much in the delta (6 h
// windows: 8 runs of 250,000; 3 h windows: 10 runs of 125,000, as with a
// retention of 6 h): a fresh process opens the runs (read only, filters
// read in place), replays the delta and the journal, and looks one
// certificate of the delta up.
func BenchmarkColdStartRuns5M(b *testing.B) {
	for _, c := range []struct{ runs, delta int }{{8, 250_000}, {10, 125_000}} {
		dir, id := runsFiles(b, 5_000_000, c.runs, c.delta)
		coldStarts(b, "runs", dir, id, fmt.Sprintf("runs=%d,delta=%dk", c.runs+1, c.delta/1000))
	}
}

// coldStarts runs the cold-start children on the files in dir, warm and
// evicted.
func coldStarts(b *testing.B, kind, dir string, id verify.CertID, name string) {
	for _, evict := range []bool{false, true} {
		b.Run(fmt.Sprintf("%s/%s", name, map[bool]string{false: "warm", true: "evicted"}[evict]), func(b *testing.B) {
			var times, cpus []float64
			for range b.N {
				if evict {
					files, _ := filepath.Glob(filepath.Join(dir, "*"))
					for _, f := range files {
						if err := dropCache(f); err != nil {
							b.Fatal(err)
						}
					}
				}
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), coldStartEnv+"="+kind+":"+hex.EncodeToString(id[:])+":"+dir)
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("child: %v: %s", err, out)
				}
				var ns, cpu int64
				if _, err := fmt.Sscanf(string(out), "ready %d %d", &ns, &cpu); err != nil {
					b.Fatalf("child said %q", out)
				}
				times = append(times, float64(ns)/1e6)
				cpus = append(cpus, float64(cpu)/1e6)
			}
			slices.Sort(times)
			b.ReportMetric(times[len(times)/2], "ready-ms")
			b.ReportMetric(times[len(times)-1], "max-ms")
			slices.Sort(cpus)
			b.ReportMetric(cpus[len(cpus)/2], "cpu-ms")
		})
	}
}

func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

func coldStartChild(spec string) {
	fail := func(err error) { fmt.Println("error:", err); os.Exit(3) }
	kind, spec, _ := strings.Cut(spec, ":")
	idHex, dir, _ := strings.Cut(spec, ":")
	raw, err := hex.DecodeString(idHex)
	if err != nil || len(raw) != verify.CertIDLen {
		fail(fmt.Errorf("id %q", idHex))
	}
	t, c0 := time.Now(), cpuTime()
	j, err := OpenLogJournal(dir, 4<<20)
	if err != nil {
		fail(err)
	}
	var d interface {
		Lookup(verify.CertID) (verify.Record, bool, error)
		Close() error
	}
	if kind == "runs" {
		d, err = OpenRunCerts(dir, 8<<20, time.Hour)
	} else {
		d, err = OpenDeltaCerts(dir, 8<<20, 24*time.Hour)
	}
	if err != nil {
		fail(err)
	}
	if _, ok, err := d.Lookup(verify.CertID(raw)); err != nil || !ok {
		fail(fmt.Errorf("lookup: %v %v", ok, err))
	}
	fmt.Println("ready", time.Since(t).Nanoseconds(), cpuTime()-c0)
	j.Close()
	d.Close()
	os.Exit(0)
}

// BenchmarkLookupDelta5M: one lookup in the candidate, a certificate of
// the base (the index missed first), beside BenchmarkVerify1M's floor of
// one bbolt Get.
func BenchmarkLookupDelta5M(b *testing.B) {
	dir, _ := coldStartFiles(b, 5_000_000, 500_000)
	d, err := OpenDeltaCerts(dir, 8<<20, 24*time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	r := rand.New(rand.NewPCG(5, 5))
	ids := make([]verify.CertID, 4096)
	for i := range ids {
		ids[i] = randCert(r, t0).ID // the base's first certificates, as drawn
	}
	b.ResetTimer()
	for i := range b.N {
		if _, ok, err := d.Lookup(ids[i%len(ids)]); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkLookupRuns5M: one lookup in the run candidate of
// BenchmarkColdStartRuns5M, a certificate of the oldest run: the index
// and eight filters missed first.
func BenchmarkLookupRuns5M(b *testing.B) {
	dir, _ := runsFiles(b, 5_000_000, 8, 250_000)
	c, err := OpenRunCerts(dir, 8<<20, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	r := rand.New(rand.NewPCG(5, 5))
	ids := make([]verify.CertID, 4096)
	for i := range ids {
		ids[i] = randCert(r, t0).ID
	}
	b.ResetTimer()
	for i := range b.N {
		if _, ok, err := c.Lookup(ids[i%len(ids)]); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkLookupDelta5MFloor: the floor of BenchmarkLookupDelta5M, one
// bbolt Get of the same certificates stored one record per key in ID
// order (as package cache stores them).
func BenchmarkLookupDelta5MFloor(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 5))
	certs := make([]verify.Cert, 5_000_000)
	for i := range certs {
		certs[i] = randCert(r, t0)
	}
	ids := make([]verify.CertID, 4096)
	for i := range ids {
		ids[i] = certs[i].ID
	}
	slices.SortFunc(certs, func(a, b verify.Cert) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	db, err := bolt.Open(filepath.Join(b.TempDir(), "floor.db"), 0o600, &bolt.Options{NoSync: true, NoStatistics: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < len(certs); i += 100_000 {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bCerts)
			if err != nil {
				return err
			}
			bk.FillPercent = 1.0
			for _, c := range certs[i:min(len(certs), i+100_000)] {
				v := make([]byte, recordLen)
				putRecord(v, &c, 0)
				if err := bk.Put(c.ID[:], v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	certs = nil
	b.ResetTimer()
	for i := range b.N {
		id := ids[i%len(ids)]
		err := db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(bCerts).Get(id[:]) == nil {
				return fmt.Errorf("%s not found", id)
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func eventAt(t time.Time) event.Event { return event.Event{Time: t, Kind: event.Alarm} }

// BenchmarkOpenNoFreelistSync5M: what bbolt's NoFreelistSync costs at
// open. A file of 5,000,000 certificates (one record per key, as package
// cache stores them) written with NoFreelistSync carries no free list; a
// read-write Open rebuilds it by walking every page of the tree (on a
// goroutine of its own). /synced is the same file with its free list
// written, opened the same way.
func BenchmarkOpenNoFreelistSync5M(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 5))
	certs := make([]verify.Cert, 5_000_000)
	for i := range certs {
		certs[i] = randCert(r, t0)
	}
	slices.SortFunc(certs, func(a, b verify.Cert) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	path := filepath.Join(b.TempDir(), "nofreelist.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, NoStatistics: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < len(certs); i += 100_000 {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists(bCerts)
			if err != nil {
				return err
			}
			bk.FillPercent = 1.0
			for _, c := range certs[i:min(len(certs), i+100_000)] {
				v := make([]byte, recordLen)
				putRecord(v, &c, 0)
				if err := bk.Put(c.ID[:], v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	certs = nil
	if err := db.Close(); err != nil {
		b.Fatal(err)
	}
	for _, synced := range []bool{false, true} {
		b.Run(map[bool]string{false: "nofreelist", true: "synced"}[synced], func(b *testing.B) {
			for range b.N {
				db, err := bolt.Open(path, 0o600, &bolt.Options{NoFreelistSync: !synced, FreelistType: bolt.FreelistMapType, NoStatistics: true})
				if err != nil {
					b.Fatal(err)
				}
				db.Close()
			}
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used, in ns:
// on a shared machine, the cold start's own work, whatever the wait for a
// core.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
