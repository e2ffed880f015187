package cache_test

import (
	"encoding/hex"
	"fmt"
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
	"gateagent/cache/cachetest"
	"gateagent/verify"
)

// coldStartEnv makes the test binary a fresh agent process that opens the
// gate's files and reports how long it took to be ready
// (coldStartChild); the cold-start benchmarks start it.
const coldStartEnv = "GATEAGENT_COLDSTART"

const coldStartCerts = 5_000_000

// coldStart5M is a cache of 5,000,000 certificates loaded as a full sync
// loads them (ID order, pages of 16,384) and an empty journal beside it,
// made once per benchmark process.
func coldStart5M(b *testing.B) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "cache.db")
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		b.Fatal(err)
	}
	const page = 16384
	var after verify.CertID
	for from := uint64(0); from < coldStartCerts; from += page {
		p := &cache.SnapshotPage{Epoch: 1, Snapshot: coldStartCerts, After: after, Feed: cachetest.Batch(0, 1, 1).Feed}
		for i := from; i < min(from+page, coldStartCerts); i++ {
			p.Upserts = append(p.Upserts, cachetest.Cert(i, coldStartCerts))
		}
		p.Final = from+page >= coldStartCerts
		if _, err := c.ApplySnapshot(p); err != nil {
			b.Fatal(err)
		}
		after = p.Upserts[len(p.Upserts)-1].ID
	}
	if err := c.Close(); err != nil {
		b.Fatal(err)
	}
	j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(nil))
	if err != nil {
		b.Fatal(err)
	}
	if err := j.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkColdStart5M: from a fresh process's first call into package
// cache to the first decision it can take, on 5,000,000 certificates:
// the journal and the cache opened as the agent opens them (each checked
// whole first), and one lookup through the Store. The goal is 100 ms.
// /warm has the files in the page cache (an agent restarted); /evicted
// drops them from it first (posix_fadvise DONTNEED on the cache and the
// journal's segments: a board's boot, as near as a shared machine
// allows).
//
// BenchmarkColdStart5MFloor: the same process, bbolt's own Open of the
// cache file and one Get: the least any bbolt file can do.
func BenchmarkColdStart5M(b *testing.B) {
	path := coldStart5M(b)
	for _, evict := range []bool{false, true} {
		b.Run(map[bool]string{false: "warm", true: "evicted"}[evict], func(b *testing.B) {
			coldStarts(b, "store", path, evict)
		})
	}
}

func BenchmarkColdStart5MFloor(b *testing.B) {
	path := coldStart5M(b)
	for _, evict := range []bool{false, true} {
		b.Run(map[bool]string{false: "warm", true: "evicted"}[evict], func(b *testing.B) {
			coldStarts(b, "floor", path, evict)
		})
	}
}

// coldStarts starts b.N fresh processes and reports the median and the
// worst of the times they report (process start-up, the same for both,
// left out).
func coldStarts(b *testing.B, mode, path string, evict bool) {
	id := cachetest.Cert(coldStartCerts/3, coldStartCerts).ID
	var times, cpus []float64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		if evict {
			segs, _ := filepath.Glob(filepath.Join(cache.JournalPath(path), "journal.*.log"))
			if len(segs) == 0 {
				b.Fatal("no journal segment to drop")
			}
			for _, p := range append([]string{path}, segs...) {
				if err := dropCache(p); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.StartTimer()
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), coldStartEnv+"="+mode+":"+hex.EncodeToString(id[:])+":"+path)
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
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(times[len(times)/2], "ready-ms")
	b.ReportMetric(times[len(times)-1], "max-ms")
	slices.Sort(cpus)
	b.ReportMetric(cpus[len(cpus)/2], "cpu-ms")
}

// dropCache asks the kernel to forget the file's cached pages.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// coldStartChild is the fresh process: it opens what spec says, looks one
// certificate up, prints "ready NS" and exits.
func coldStartChild(spec string) {
	fail := func(err error) { fmt.Println("error:", err); os.Exit(3) }
	mode, rest, _ := strings.Cut(spec, ":")
	idHex, path, _ := strings.Cut(rest, ":")
	raw, err := hex.DecodeString(idHex)
	if err != nil || len(raw) != verify.CertIDLen {
		fail(fmt.Errorf("id %q", idHex))
	}
	id := verify.CertID(raw)
	t0, c0 := time.Now(), cpuTime()
	switch mode {
	case "store":
		j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(nil))
		if err != nil {
			fail(err)
		}
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			fail(err)
		}
		s := &cache.Store{Cache: c, Journal: j}
		if _, ok, err := s.Lookup(id, verify.Entry); err != nil || !ok {
			fail(fmt.Errorf("lookup: %v %v", ok, err))
		}
	case "floor":
		db, err := bolt.Open(path, 0o600, &bolt.Options{NoStatistics: true})
		if err != nil {
			fail(err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			if tx.Bucket([]byte("certs")).Get(id[:]) == nil {
				return fmt.Errorf("not found")
			}
			return nil
		})
		if err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("mode %q", mode))
	}
	fmt.Println("ready", time.Since(t0).Nanoseconds(), cpuTime()-c0)
	os.Exit(0)
}

// cpuTime is the CPU time (user and system) this process has used, in ns:
// on a shared machine, the cold start's own work, whatever the wait for a
// core.
func cpuTime() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}
