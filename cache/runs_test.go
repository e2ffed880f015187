package cache_test

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/verify"
)

// groupsOf counts the certificates of each run in the file, by run number.
func groupsOf(t *testing.T, c *cache.Cache) map[uint64]int {
	t.Helper()
	out := map[uint64]int{}
	cache.DB(c).View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("groups")).ForEach(func(k, v []byte) error {
			out[uint64(k[0])<<56|uint64(k[1])<<48|uint64(k[2])<<40|uint64(k[3])<<32|uint64(k[4])<<24|uint64(k[5])<<16|uint64(k[6])<<8|uint64(k[7])] += int(v[11])
			return nil
		})
	})
	return out
}

// TestNewerRunShadowsOlder: a certificate's newest record decides,
// whichever run or the delta holds it: a revocation written into a later
// run than the certificate revokes it, an upsert after it does not bring
// it back, and a full sync that lists it unrevoked leaves it revoked
// (revocation is final), across a reopen.
func TestNewerRunShadowsOlder(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 100, 100)
	mustApply(t, c, b)
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	x := b.Upserts[42]
	mustApply(t, c, &cache.Batch{From: 100, Next: 101, Revokes: []verify.CertID{x.ID}, Feed: b.Feed})
	if r, ok := lookup(t, c, x.ID); !ok || !r.Revoked {
		t.Fatal("the delta's revocation does not shadow the run's certificate")
	}
	if err := c.WriteRun(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Stats(); st.Runs != 2 || st.DeltaCerts != 0 || st.Certs != 100 {
		t.Fatalf("two runs, the delta empty, 100 certificates once each: %+v", st)
	}
	mustApply(t, c, &cache.Batch{From: 101, Next: 102, Upserts: []verify.Cert{x}, Feed: b.Feed})
	if r, ok := lookup(t, c, x.ID); !ok || !r.Revoked || r.Key != x.Key {
		t.Fatal("an upsert brought back a certificate revoked in a run")
	}
	snap := &cache.SnapshotPage{Epoch: 0, Snapshot: 200, Final: true, Upserts: cachetest.Batch(0, 100, 100).Upserts, Feed: b.Feed}
	if _, err := c.ApplySnapshot(snap); err != nil {
		t.Fatal(err)
	}
	c = reopen(t, c)
	if r, ok := lookup(t, c, x.ID); !ok || !r.Revoked {
		t.Fatal("a full sync listing it unrevoked undid the revocation")
	}
	if r, ok := lookup(t, c, b.Upserts[41].ID); !ok || r.Revoked || r.Key != b.Upserts[41].Key {
		t.Fatal("a neighbour of the revoked certificate is wrong")
	}
}

// TestRunsDroppedByExpiry: a run is deleted whole once every certificate
// in it expired more than the retention ago, not before, whatever runs are
// newer or older; its groups leave the file; the others answer as before.
func TestRunsDroppedByExpiry(t *testing.T) {
	c := cachetest.Open(t, nil)
	early := cachetest.Batch(0, 50, 100)
	late := cachetest.Batch(50, 100, 100)
	for i := range late.Upserts { // approved 6 hours later
		late.Upserts[i].NotBefore = late.Upserts[i].NotBefore.Add(6 * time.Hour)
		late.Upserts[i].NotAfter = late.Upserts[i].NotAfter.Add(6 * time.Hour)
	}
	late.From, late.Next, early.From, early.Next = 0, 50, 50, 100
	mustApply(t, c, late) // the later expiries in the older run
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, early)
	if err := c.WriteRun(t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	before := groupsOf(t, c)
	if len(before) != 2 {
		t.Fatalf("runs in the file: %v", before)
	}
	expiry := early.Upserts[0].NotAfter
	if n, err := c.Purge(expiry.Add(6*time.Hour), 7*time.Hour); err != nil || n != 0 {
		t.Fatalf("within the retention: %d deleted, %v", n, err)
	}
	n, err := c.Purge(expiry.Add(7*time.Hour+time.Second), 7*time.Hour)
	if err != nil || n != 50 {
		t.Fatalf("purge: %d deleted, %v; want the 50 of the newer run, expired", n, err)
	}
	if _, ok := lookup(t, c, early.Upserts[3].ID); ok {
		t.Fatal("a certificate of the dropped run is still found")
	}
	if r, ok := lookup(t, c, late.Upserts[3].ID); !ok || r.Key != late.Upserts[3].Key {
		t.Fatal("a certificate of the run kept is lost")
	}
	after := groupsOf(t, c)
	if len(after) != 1 || after[firstKey(before)] != 50 {
		t.Fatalf("groups in the file after the drop: %v (before %v)", after, before)
	}
	if st, _ := c.Stats(); st.Runs != 1 || st.Certs != 50 {
		t.Fatalf("stats: %+v", st)
	}
}

func firstKey(m map[uint64]int) uint64 {
	first := ^uint64(0)
	for k := range m {
		first = min(first, k)
	}
	return first
}

// TestFullSyncSplitByExpiry: a full sync's certificates are written into
// a run for each 3-hour window of expiry, so the earliest are deleted
// first, while the later ones answer.
func TestFullSyncSplitByExpiry(t *testing.T) {
	c := cachetest.Open(t, nil)
	certs := cachetest.Batch(0, 240, 240).Upserts
	for i := range certs { // approvals spread over a day
		d := time.Duration(i) * 6 * time.Minute
		certs[i].NotBefore, certs[i].NotAfter = certs[i].NotBefore.Add(d), certs[i].NotAfter.Add(d)
	}
	p1 := &cache.SnapshotPage{Epoch: 3, Snapshot: 240, Upserts: certs[:100]}
	if _, err := c.ApplySnapshot(p1); err != nil {
		t.Fatal(err)
	}
	c = reopen(t, c) // the resync resumes across a restart
	fs, _ := c.Feed()
	if fs.Resync == nil || fs.Resync.Certs != 100 {
		t.Fatalf("resync after the first page: %+v", fs.Resync)
	}
	p2 := &cache.SnapshotPage{Epoch: 3, Snapshot: 240, After: certs[99].ID, Final: true, Upserts: certs[100:], Feed: cachetest.Batch(0, 1, 1).Feed}
	if _, err := c.ApplySnapshot(p2); err != nil {
		t.Fatal(err)
	}
	st, _ := c.Stats()
	if st.Runs < 8 || st.Certs != 240 || st.Feed.Cursor != 240 || st.Feed.Resync != nil {
		t.Fatalf("after the full sync: %+v, want 8 runs or more", st)
	}
	for _, want := range certs {
		if r, ok := lookup(t, c, want.ID); !ok || r.Key != want.Key {
			t.Fatalf("certificate %s after the full sync", want.ID)
		}
	}
	// Six hours after the first expiries and the retention: the first
	// windows' runs are gone, the rest answer.
	n, err := c.Purge(certs[0].NotAfter.Add(7*time.Hour+6*time.Hour), 7*time.Hour)
	if err != nil || n == 0 || n >= 240 {
		t.Fatalf("purge: %d deleted, %v", n, err)
	}
	if _, ok := lookup(t, c, certs[0].ID); ok {
		t.Fatal("the first certificate's run is kept")
	}
	if r, ok := lookup(t, c, certs[239].ID); !ok || r.Key != certs[239].Key {
		t.Fatal("the last certificate's run is dropped")
	}
}

// TestMigrateSchema3: a cache of schema 3 (a record per certificate) is
// moved into a run at its first open for writing, its certificates,
// revocations and cursor kept; a read-only open refuses it with a clear
// error, and one record that fails authentication stops the move, leaving
// the file as it was (the agent then rebuilds it from the feed).
func TestMigrateSchema3(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	certs := cachetest.Batch(0, 300, 300).Upserts
	certs[7].Revoked = true
	if err := cache.WriteSchema3(path, cachetest.Key(), certs, 300, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Open(path, cachetest.Options(&cache.Options{ReadOnly: true})); !errors.Is(err, cache.ErrSchema) {
		t.Fatalf("read-only open of schema 3: %v, want ErrSchema", err)
	}
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Stats()
	if err != nil || st.Schema != cache.SchemaVersion || st.Runs != 1 || st.Certs != 300 || st.Feed.Cursor != 300 || !c.Synced() {
		t.Fatalf("after the move: %+v, %v", st, err)
	}
	for _, want := range certs {
		if r, ok := lookup(t, c, want.ID); !ok || r.Key != want.Key || r.Revoked != want.Revoked {
			t.Fatalf("certificate %s after the move", want.ID)
		}
	}
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}

	bad := filepath.Join(dir, "forged.db")
	if err := cache.WriteSchema3(bad, cachetest.Key(), certs, 300, &certs[100].ID); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(bad)
	_, err = cache.Open(bad, cachetest.Options(nil))
	if ce := corruptKind(err); ce == nil || ce.Kind != cache.Unauthentic {
		t.Fatalf("a forged record: %v, want an Unauthentic CorruptError", err)
	}
	if n, _ := cache.LegacySchema(bad); n != 3 {
		t.Fatalf("the file's schema after the refused move: %d, want 3 as it was", n)
	}
	if after, _ := os.ReadFile(bad); len(after) != len(before) {
		t.Fatal("the refused move changed the file")
	}
}

// TestLargeBatchBecomesRun: a batch too large for a record of the delta
// (an issuer's catch-up after an outage) is written as a run with the
// delta, whole or not at all: found at once and after a reopen.
func TestLargeBatchBecomesRun(t *testing.T) {
	o := cachetest.Options(&cache.Options{DeltaSegment: 4 * 4096})
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := cache.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, cachetest.Batch(0, 10, 5000)) // into the delta
	big := cachetest.Batch(10, 2010, 5000)        // 2,000 certificates: 130 KB
	big.Revokes = []verify.CertID{cachetest.Cert(3, 5000).ID}
	mustApply(t, c, big)
	st, _ := c.Stats()
	if st.Runs != 1 || st.DeltaCerts != 0 || st.Certs != 2010 || st.Feed.Cursor != 2010 {
		t.Fatalf("after the large batch: %+v, want one run holding it and the delta", st)
	}
	c.Close()
	if c, err = cache.Open(path, o); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range uint64(2010) {
		want := cachetest.Cert(i, 5000)
		if r, ok := lookup(t, c, want.ID); !ok || r.Key != want.Key || r.Revoked != (i == 3) {
			t.Fatalf("certificate %d after the reopen: found %v", i, ok)
		}
	}
}

// TestDeltaOfAnotherFile: a delta left beside a cache file made anew (the
// old one moved aside as damaged) is not read: the new file starts empty.
// A delta that lacks records its file's runs do not cover is damage.
func TestDeltaOfAnotherFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	o := cachetest.Options(&cache.Options{DeltaSegment: 2 * 4096}) // two batches a segment
	c, err := cache.Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, cachetest.Batch(0, 50, 50))
	c.Close()
	if _, err := cache.Quarantine(path, t0); err != nil {
		t.Fatal(err)
	}
	if c, err = cache.Open(path, o); err != nil {
		t.Fatal(err)
	}
	if st, _ := c.Stats(); st.Certs != 0 || st.Feed.Cursor != 0 || c.Synced() {
		t.Fatalf("a new file read the old one's delta: %+v", st)
	}
	for i := uint64(0); i < 10; i++ {
		mustApply(t, c, cachetest.Batch(i*10, i*10+10, 100))
	}
	c.Close()
	segs, _ := filepath.Glob(filepath.Join(cache.DeltaPath(path), "delta.*.log"))
	if len(segs) < 3 {
		t.Fatalf("%d delta segments", len(segs))
	}
	if err := os.Remove(segs[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Open(path, o); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("a delta without its first records: %v, want ErrCorrupt", err)
	}
}

// TestOverlappingBatchWritesOnlyNew: the feed client sends the current log
// page from its first change each round (a batch overlapping the cursor);
// what the cache holds already as the batch would write it is not written
// again, and the rest is.
func TestOverlappingBatchWritesOnlyNew(t *testing.T) {
	c := cachetest.Open(t, nil)
	mustApply(t, c, cachetest.Batch(0, 100, 1000))
	if err := c.WriteRun(t0); err != nil { // the first 100 in a run, the next 50 in the delta
		t.Fatal(err)
	}
	mustApply(t, c, cachetest.Batch(100, 150, 1000))
	before := c.DeltaUsage().Written
	page := cachetest.Batch(0, 160, 1000) // the page again, 10 new at its end
	page.Revokes = []verify.CertID{cachetest.Cert(3, 1000).ID}
	mustApply(t, c, page)
	if w := c.DeltaUsage().Written - before; w != 4096 {
		t.Fatalf("the overlapping page wrote %d bytes, want one block: the 10 new and the revocation", w)
	}
	if st, _ := c.Stats(); st.Certs != 160 || st.DeltaCerts != 61 || st.Feed.Cursor != 160 {
		t.Fatalf("after the page: %+v", st)
	}
	if r, ok := lookup(t, c, cachetest.Cert(3, 1000).ID); !ok || !r.Revoked {
		t.Fatal("the page's revocation is lost")
	}
	mustApply(t, c, &cache.Batch{From: 0, Next: 161, Upserts: cachetest.Batch(0, 161, 1000).Upserts, Feed: page.Feed})
	if r, ok := lookup(t, c, cachetest.Cert(3, 1000).ID); !ok || !r.Revoked {
		t.Fatal("a later page unrevoked a certificate")
	}
}

// TestCompactionKeepsEverything: a file far larger than its runs need
// (most of a full sync expired and its runs dropped) is written anew at
// the maintenance: smaller, every certificate kept with its key and
// revocation, the feed state kept, the file whole on its check and
// through a reopen.
func TestCompactionKeepsEverything(t *testing.T) {
	c := cachetest.Open(t, nil)
	const n = 300_000
	certs := cachetest.Batch(0, n, n).Upserts
	for i := range certs[:n-3000] { // all but the last 3,000 expire a day early
		certs[i].NotBefore, certs[i].NotAfter = certs[i].NotBefore.Add(-24*time.Hour), certs[i].NotAfter.Add(-24*time.Hour)
	}
	// Lookups go on throughout, as the gate's do, across every commit (the
	// file's mapping grows), the compaction's swap and the close: each is
	// answered, never an error, never a wrong key, and none holds a commit
	// back (the kept read transaction, reader.go).
	stop := make(chan struct{})
	var lookers sync.WaitGroup
	for g := range 2 {
		lookers.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				want := certs[r.IntN(n)]
				got, found, err := c.Lookup(want.ID, verify.Entry)
				if err != nil || found && got.Key != want.Key {
					t.Errorf("lookup during the writes: %v, found %v, key right %v", err, found, got.Key == want.Key)
					return
				}
			}
		})
	}
	stopLookers := sync.OnceFunc(func() { close(stop); lookers.Wait() })
	defer stopLookers()
	var after verify.CertID
	for i := 0; i < n; i += 50_000 {
		p := &cache.SnapshotPage{Epoch: 5, Snapshot: n, After: after, Upserts: certs[i : i+50_000], Final: i+50_000 == n, Feed: cachetest.Batch(0, 1, 1).Feed}
		if _, err := c.ApplySnapshot(p); err != nil {
			t.Fatal(err)
		}
		after = certs[i+49_999].ID
	}
	kept := certs[n-3000:]
	revoked := cachetest.Batch(n, n+1, 1) // a feed batch revoking one kept certificate
	revoked.Upserts, revoked.Revokes, revoked.From, revoked.Next = nil, []verify.CertID{kept[7].ID}, n, n+1
	revoked.Feed.Epoch = 5
	mustApply(t, c, revoked)
	sizeOf := func() int64 {
		fi, err := os.Stat(c.Path())
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := sizeOf()
	now := kept[0].NotAfter.Add(-time.Hour) // the early ones expired a day before, beyond the 7 h retention
	if _, err := c.Purge(now, 7*time.Hour); err != nil {
		t.Fatal(err)
	}
	if rs := c.RunState(); !rs.LastCompact.Equal(now) {
		t.Fatalf("after the purge: %+v; want the file compacted at %v (%d bytes before)", rs, now, before)
	}
	if got := sizeOf(); got*3 > before {
		t.Fatalf("file %d bytes after the compaction, %d before: want a third or less", got, before)
	}
	check := func(c *cache.Cache) {
		t.Helper()
		for i, want := range kept {
			r, ok := lookup(t, c, want.ID)
			if !ok || r.Key != want.Key || r.Revoked != (i == 7) {
				t.Fatalf("certificate %d after the compaction: %+v, found %v", i, r.Cert, ok)
			}
		}
		if _, ok := lookup(t, c, certs[0].ID); ok {
			t.Fatal("an expired certificate is back after the compaction")
		}
		if fs, _ := c.Feed(); fs.Cursor != n+1 || fs.Epoch != 5 {
			t.Fatalf("feed state after the compaction: %+v", fs)
		}
		if err := c.Check(); err != nil {
			t.Fatal(err)
		}
	}
	stopLookers()
	check(c)
	check(reopen(t, c))
}
