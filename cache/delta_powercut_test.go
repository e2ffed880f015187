package cache_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/internal/seglog/seglogtest"
	"gateagent/verify"
)

// TestDeltaPowerCut cuts the power at every operation on the delta's
// segments of a workload that applies feed batches (certificates and
// revocations, some of a certificate not yet issued), records a sync,
// writes the delta as a run now and then (its segments given back),
// reopens, and ends with a full sync, on internal/seglog's model of a
// power cut (writes and renames not synced lost, the write in flight
// torn). The cache's bbolt file is a real one, each of its commits synced
// as bbolt does, and counted as an operation of the model: from the cut
// on, no commit is made either. After each cut the cache opens whole, and:
//
//   - the cursor is at least that of the last Apply that returned, and
//     every batch up to it is there whole, none after it (not half);
//   - a revoked certificate stays revoked;
//   - a batch applied after the reopen is kept by the next reopen.
func TestDeltaPowerCut(t *testing.T) {
	const per, batches = 4, 40
	o := cachetest.Options(&cache.Options{DeltaSegment: 2 * 4096}) // two batches a segment
	batch := func(k uint64) *cache.Batch {
		b := cachetest.Batch((k-1)*per, k*per, 1<<20)
		b.From, b.Next = k-1, k
		if k > 1 {
			b.Revokes = []verify.CertID{cachetest.Cert((k-2)*per, 1<<20).ID, cachetest.Cert(1<<19+k, 1<<20).ID}
		}
		return b
	}
	type model struct{ returned, snapshot uint64 }
	workload := func(dir string, fs *seglogtest.CrashFS, seed uint64) *model {
		m := &model{}
		cache.SetDeltaFS(t, fs)
		cache.SetCommitHook(t, fs.Tick) // the file's commits stop with the power too
		rng := rand.New(rand.NewPCG(seed, 11))
		path := filepath.Join(dir, "cache.db")
		c, err := cache.Open(path, o)
		if err != nil {
			return m
		}
		defer func() { c.Close() }()
		now := t0
		for k := uint64(1); k <= batches; k++ {
			now = now.Add(10 * time.Minute)
			switch rng.IntN(8) {
			case 0:
				if c.WriteRun(now) != nil {
					return m
				}
			case 1:
				c.Close()
				if c, err = cache.Open(path, o); err != nil {
					return m
				}
			case 2:
				if c.RecordSync(cache.FeedState{SyncedAt: now}) != nil {
					return m
				}
			}
			if _, err := c.Apply(batch(k)); err != nil {
				return m
			}
			m.returned = k
		}
		snap := &cache.SnapshotPage{Snapshot: batches + 5, Final: true, Upserts: cachetest.Batch(1<<19, 1<<19+10, 1<<20).Upserts, Feed: batch(1).Feed}
		if _, err := c.ApplySnapshot(snap); err == nil {
			m.snapshot = snap.Snapshot
		}
		return m
	}
	check := func(what string, c *cache.Cache, m *model) {
		fs, err := c.Feed()
		if err != nil {
			t.Fatalf("%s: feed: %v", what, err)
		}
		if fs.Cursor < m.returned || m.snapshot != 0 && fs.Cursor != m.snapshot {
			t.Fatalf("%s: cursor %d, but batch %d returned (snapshot %d)", what, fs.Cursor, m.returned, m.snapshot)
		}
		top := min(fs.Cursor, batches)
		for k := uint64(1); k <= batches; k++ {
			for j := range uint64(per) {
				want := cachetest.Cert((k-1)*per+j, 1<<20)
				r, ok, err := c.Lookup(want.ID, verify.Entry)
				if err != nil {
					t.Fatalf("%s: lookup: %v", what, err)
				}
				if k > top && fs.Cursor < batches {
					if ok {
						t.Fatalf("%s: cursor %d, but certificate %d of batch %d is there: half a batch", what, fs.Cursor, j, k)
					}
					continue
				}
				if !ok || r.Key != want.Key {
					t.Fatalf("%s: cursor %d, certificate %d of batch %d missing", what, fs.Cursor, j, k)
				}
				if revoked := j == 0 && k+1 <= top; r.Revoked != revoked {
					t.Fatalf("%s: certificate %d of batch %d revoked %v, want %v", what, j, k, r.Revoked, revoked)
				}
			}
		}
	}
	dry := seglogtest.NewCrashFS()
	workload(t.TempDir(), dry, 1)
	total := dry.Ops()
	if total < 60 {
		t.Fatalf("the workload made %d operations on the delta", total)
	}
	cuts := 0
	for seed := uint64(1); seed <= 2; seed++ {
		for cut := 1; cut <= total+1; cut++ {
			dir := t.TempDir()
			fs := seglogtest.NewCrashFS()
			fs.CutAt = cut
			m := workload(dir, fs, seed)
			cache.SetDeltaFS(t, fs.Crash(rand.New(rand.NewPCG(seed, uint64(cut)))))
			cache.SetCommitHook(t, nil)
			what := fmt.Sprintf("seed %d, cut at operation %d", seed, cut)
			path := filepath.Join(dir, "cache.db")
			c, err := cache.Open(path, o)
			if err != nil {
				t.Fatalf("%s: open after the cut: %v", what, err)
			}
			if err := c.Check(); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			check(what, c, m)
			fs0, _ := c.Feed()
			if fs0.Cursor < batches {
				if _, err := c.Apply(batch(fs0.Cursor + 1)); err != nil {
					t.Fatalf("%s: apply after the cut: %v", what, err)
				}
				m.returned = fs0.Cursor + 1
			}
			c.Close()
			if c, err = cache.Open(path, o); err != nil {
				t.Fatalf("%s: reopen: %v", what, err)
			}
			check(what+", reopened", c, m)
			c.Close()
			os.RemoveAll(dir)
			cuts++
		}
	}
	t.Logf("%d cuts, %d operations in the first workload", cuts, total)
}
