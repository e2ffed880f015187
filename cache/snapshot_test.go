package cache_test

import (
	"errors"
	"testing"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/verify"
)

func snapPage(epoch, snap uint64, after verify.CertID, from, to, n uint64, final bool) *cache.SnapshotPage {
	b := cachetest.Batch(from, to, n)
	b.Feed.Epoch = epoch
	return &cache.SnapshotPage{Epoch: epoch, Snapshot: snap, After: after, Final: final, Upserts: b.Upserts, Feed: b.Feed}
}

func TestSnapshotResumesAndHandsOverToTheLog(t *testing.T) {
	c := cachetest.Open(t, nil)
	const n = 30
	if _, err := c.ApplySnapshot(snapPage(7, 100, verify.CertID{}, 0, 10, n, false)); err != nil {
		t.Fatal(err)
	}
	fs, _ := c.Feed()
	if fs.Resync == nil || fs.Resync.After != cachetest.Cert(9, n).ID || fs.Resync.Certs != 10 || fs.Cursor != 0 {
		t.Fatalf("progress after page 1: %+v %+v", fs, fs.Resync)
	}
	// A page that skips ahead, or of another snapshot, writes nothing.
	for _, p := range []*cache.SnapshotPage{
		snapPage(7, 100, cachetest.Cert(14, n).ID, 15, 20, n, false),
		snapPage(7, 101, cachetest.Cert(9, n).ID, 10, 20, n, false),
		snapPage(8, 100, cachetest.Cert(9, n).ID, 10, 20, n, false),
	} {
		if _, err := c.ApplySnapshot(p); !errors.Is(err, cache.ErrGap) {
			t.Fatalf("out-of-order page: %v, want ErrGap", err)
		}
	}
	// A log batch of the new epoch cannot land before the snapshot ends.
	lb := cachetest.Batch(0, 1, n)
	lb.Feed.Epoch = 7
	if _, err := c.Apply(lb); !errors.Is(err, cache.ErrGap) {
		t.Fatalf("log batch during resync: %v, want ErrGap", err)
	}
	// Reopen (an agent restart) and continue where it stopped.
	path := c.Path()
	c.Close()
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.ApplySnapshot(snapPage(7, 100, cachetest.Cert(9, n).ID, 10, n, n, true)); err != nil {
		t.Fatal(err)
	}
	fs, _ = c.Feed()
	if fs.Resync != nil || fs.Cursor != 100 || fs.Epoch != 7 {
		t.Fatalf("after the final page: cursor %d epoch %d resync %+v", fs.Cursor, fs.Epoch, fs.Resync)
	}
	st, _ := c.Stats()
	if st.Certs != n {
		t.Fatalf("%d certs, want %d", st.Certs, n)
	}
	// The log continues from the snapshot's position.
	b := &cache.Batch{From: 100, Next: 101, Revokes: []verify.CertID{cachetest.Cert(3, n).ID}, Feed: fs}
	mustApply(t, c, b)
	r, ok, err := c.Lookup(cachetest.Cert(3, n).ID, verify.Entry)
	if err != nil || !ok || !r.Revoked {
		t.Fatalf("revocation after resync: %+v %v %v", r, ok, err)
	}
}

// A resync laid over a cache that holds a revocation keeps it, even when
// the snapshot says valid (the snapshot predates the revocation).
func TestSnapshotKeepsRevocations(t *testing.T) {
	c := cachetest.Open(t, nil)
	const n = 5
	mustApply(t, c, cachetest.Batch(0, n, n))
	mustApply(t, c, &cache.Batch{From: n, Next: n + 1, Revokes: []verify.CertID{cachetest.Cert(2, n).ID}})
	if _, err := c.ApplySnapshot(snapPage(9, 3, verify.CertID{}, 0, n, n, true)); err != nil {
		t.Fatal(err)
	}
	r, ok, err := c.Lookup(cachetest.Cert(2, n).ID, verify.Entry)
	if err != nil || !ok || !r.Revoked {
		t.Fatalf("revocation lost by a resync: %+v %v %v", r, ok, err)
	}
	fs, _ := c.Feed()
	if fs.Epoch != 9 || fs.Cursor != 3 {
		t.Fatalf("feed state %+v", fs)
	}
}

func TestSnapshotRefusesDisorder(t *testing.T) {
	c := cachetest.Open(t, nil)
	p := snapPage(1, 1, verify.CertID{}, 0, 3, 3, true)
	p.Upserts[0], p.Upserts[1] = p.Upserts[1], p.Upserts[0]
	if _, err := c.ApplySnapshot(p); !errors.Is(err, cache.ErrBadBatch) {
		t.Fatalf("unordered page: %v", err)
	}
	if st, _ := c.Stats(); st.Certs != 0 || st.Feed.Resync != nil {
		t.Fatalf("refused page wrote: %+v", st)
	}
}

// The benchmarks' raw floor writes values of the size the cache stores
// for a certificate in a run.
func TestFloorRecordIsTheCacheRecord(t *testing.T) {
	c := cachetest.Open(t, nil)
	if _, err := c.Apply(cachetest.Batch(0, 610, 610)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	bytes, certs := 0, 0
	cache.DB(c).View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("groups")).ForEach(func(k, v []byte) error {
			bytes += len(v)
			certs += int(v[11])
			return nil
		})
	})
	if certs != 610 || (bytes+certs-1)/certs != cachetest.StoredCertBytes {
		t.Errorf("cache stores %d bytes for %d certificates, cachetest.StoredCertBytes is %d", bytes, certs, cachetest.StoredCertBytes)
	}
}
