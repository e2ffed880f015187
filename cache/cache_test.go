package cache_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/verify"
)

var t0 = cachetest.Epoch

func mustApply(t *testing.T, c *cache.Cache, b *cache.Batch) cache.ApplyResult {
	t.Helper()
	res, err := c.Apply(b)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func lookup(t *testing.T, c *cache.Cache, id verify.CertID) (verify.Record, bool) {
	t.Helper()
	r, ok, err := c.Lookup(id, verify.Entry)
	if err != nil {
		t.Fatal(err)
	}
	return r, ok
}

// reopen closes c and opens its file again, as a restart of the agent does.
func reopen(t *testing.T, c *cache.Cache) *cache.Cache {
	t.Helper()
	path := c.Path()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c2.Close() })
	return c2
}

func dump(t *testing.T, c *cache.Cache) map[string]string {
	t.Helper()
	d, err := cache.Dump(c)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestApplyAndLookup(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 50, 50)
	b.Upserts[7].Revoked = true
	res := mustApply(t, c, b)
	if res.Skipped || res.Upserted != 50 || res.Cursor != 50 {
		t.Fatalf("result %+v", res)
	}
	for i, want := range b.Upserts {
		got, ok := lookup(t, c, want.ID)
		if !ok {
			t.Fatalf("cert %d not found", i)
		}
		if got.Cert.ID != want.ID || got.Key != want.Key || !got.NotBefore.Equal(want.NotBefore) ||
			!got.NotAfter.Equal(want.NotAfter) || got.Revoked != want.Revoked || !got.LastPass.IsZero() {
			t.Fatalf("cert %d: got %+v, want %+v", i, got.Cert, want)
		}
	}
	stranger := b.Upserts[0].ID
	stranger[15] ^= 0xff
	if _, ok := lookup(t, c, stranger); ok {
		t.Fatal("unknown cert found")
	}
	fs, err := c.Feed()
	if err != nil || fs.Cursor != 50 || fs.KeyID != "test" || !fs.IssuerTime.Equal(t0) || fs.MaxAge != time.Hour {
		t.Fatalf("feed state %+v, %v", fs, err)
	}
}

// TestReapplyChangesNothing: the same batch twice, or an older one, leaves
// the file byte for byte as it was.
func TestReapplyChangesNothing(t *testing.T) {
	c := cachetest.Open(t, nil)
	b1, b2 := cachetest.Batch(0, 10, 20), cachetest.Batch(10, 20, 20)
	mustApply(t, c, b1)
	mustApply(t, c, b2)
	before := dump(t, c)
	for _, b := range []*cache.Batch{b2, b1} {
		if res := mustApply(t, c, b); !res.Skipped || res.Cursor != 20 {
			t.Fatalf("re-apply of (%d, %d]: %+v, want skipped at 20", b.From, b.Next, res)
		}
	}
	if after := dump(t, c); !maps.Equal(before, after) {
		t.Fatal("re-applying changed the file")
	}
}

func TestGapRefused(t *testing.T) {
	c := cachetest.Open(t, nil)
	mustApply(t, c, cachetest.Batch(0, 10, 30))
	before := dump(t, c)
	_, err := c.Apply(cachetest.Batch(20, 30, 30))
	if !errors.Is(err, cache.ErrGap) {
		t.Fatalf("error %v, want ErrGap", err)
	}
	if !maps.Equal(before, dump(t, c)) {
		t.Fatal("a refused batch changed the file")
	}
}

// TestOverlapConverges: a batch that overlaps what the cache holds is
// applied; records are idempotent, so nothing is doubled.
func TestOverlapConverges(t *testing.T) {
	c := cachetest.Open(t, nil)
	mustApply(t, c, cachetest.Batch(0, 10, 30))
	res := mustApply(t, c, cachetest.Batch(5, 15, 30))
	st, err := c.Stats()
	if err != nil || res.Cursor != 15 || st.Certs != 15 {
		t.Fatalf("cursor %d, %d certs (%v); want 15 and 15", res.Cursor, st.Certs, err)
	}
}

func TestRevocationIsFinal(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 3, 3)
	mustApply(t, c, b)
	id := b.Upserts[1].ID
	mustApply(t, c, &cache.Batch{From: 3, Next: 4, Revokes: []verify.CertID{id}, Feed: b.Feed})
	if r, ok := lookup(t, c, id); !ok || !r.Revoked || r.Key != b.Upserts[1].Key {
		t.Fatalf("after revoke: %+v found=%v", r.Cert, ok)
	}
	// An upsert that says active, as a replayed snapshot page would.
	up := &cache.Batch{From: 4, Next: 5, Upserts: []verify.Cert{b.Upserts[1]}, Feed: b.Feed}
	mustApply(t, c, up)
	if r, _ := lookup(t, c, id); !r.Revoked {
		t.Fatal("an upsert brought a revoked certificate back")
	}
	// Revoking twice is harmless.
	mustApply(t, c, &cache.Batch{From: 5, Next: 6, Revokes: []verify.CertID{id, id}, Feed: b.Feed})
	if r, _ := lookup(t, c, id); !r.Revoked || r.Key != b.Upserts[1].Key {
		t.Fatal("second revocation lost the record")
	}
}

// TestRevocationBeforeCertificate: a revocation for a certificate the gate
// has not seen yet is kept, and wins when the certificate arrives.
func TestRevocationBeforeCertificate(t *testing.T) {
	c := cachetest.Open(t, nil)
	cert := cachetest.Cert(1, 2)
	feed := cache.FeedState{IssuerTime: t0}
	mustApply(t, c, &cache.Batch{From: 0, Next: 1, Revokes: []verify.CertID{cert.ID}, Feed: feed})
	if _, ok := lookup(t, c, cert.ID); ok {
		t.Fatal("a revocation alone made the certificate known")
	}
	mustApply(t, c, &cache.Batch{From: 1, Next: 2, Upserts: []verify.Cert{cert}, Feed: feed})
	r, ok := lookup(t, c, cert.ID)
	if !ok || !r.Revoked || r.Key != cert.Key {
		t.Fatalf("late certificate: found=%v %+v; want known and revoked", ok, r.Cert)
	}
	// The placeholder expires a day after the issuer's time and is purged then.
	c2 := cachetest.Open(t, nil)
	mustApply(t, c2, &cache.Batch{From: 0, Next: 1, Revokes: []verify.CertID{cert.ID}, Feed: feed})
	if n, err := c2.Purge(t0.Add(25*time.Hour), 0); err != nil || n != 1 {
		t.Fatalf("purge of the placeholder: %d, %v", n, err)
	}
}

func TestBadBatchWritesNothing(t *testing.T) {
	good := cachetest.Cert(0, 1)
	mod := func(f func(*verify.Cert)) []verify.Cert {
		c := good
		f(&c)
		return []verify.Cert{cachetest.Cert(0, 4), c}
	}
	tests := map[string]*cache.Batch{
		"zero key":              {From: 5, Next: 6, Upserts: mod(func(c *verify.Cert) { c.Key = verify.Key{} })},
		"ends before it starts": {From: 5, Next: 6, Upserts: mod(func(c *verify.Cert) { c.NotAfter = c.NotBefore.Add(-time.Second) })},
		"valid for 25 hours":    {From: 5, Next: 6, Upserts: mod(func(c *verify.Cert) { c.NotAfter = c.NotBefore.Add(25 * time.Hour) })},
		"approved in 1970":      {From: 5, Next: 6, Upserts: mod(func(c *verify.Cert) { c.NotBefore, c.NotAfter = time.Unix(0, 0), time.Unix(3600, 0) })},
		"cursor goes back":      {From: 5, Next: 4},
		"records, same cursor":  {From: 5, Next: 5, Upserts: []verify.Cert{good}},
		"too many records":      {From: 5, Next: 6, Revokes: make([]verify.CertID, cache.MaxBatchRecords+1)},
		"long key ID":           {From: 5, Next: 6, Feed: cache.FeedState{KeyID: strings.Repeat("k", 65)}},
		"negative max age":      {From: 5, Next: 6, Feed: cache.FeedState{MaxAge: -time.Second}},
	}
	c := cachetest.Open(t, nil)
	mustApply(t, c, cachetest.Batch(0, 5, 10))
	before := dump(t, c)
	for name, b := range tests {
		_, err := c.Apply(b)
		if !errors.Is(err, cache.ErrBadBatch) {
			t.Errorf("%s: error %v, want ErrBadBatch", name, err)
		}
		if !maps.Equal(before, dump(t, c)) {
			t.Fatalf("%s: a refused batch changed the file", name)
		}
	}
}

// TestFailurePartWayLeavesCacheAsBefore: a fault after half the records
// of a batch are written, and a full disk at commit, roll back everything.
func TestFailurePartWayLeavesCacheAsBefore(t *testing.T) {
	t.Run("fault inside the transaction", func(t *testing.T) {
		c := cachetest.Open(t, nil)
		mustApply(t, c, cachetest.Batch(0, 100, 300))
		before := dump(t, c)
		cache.SetFailAfter(c, 50)
		b := cachetest.Batch(100, 200, 300)
		b.Revokes = []verify.CertID{cachetest.Cert(3, 300).ID}
		if _, err := c.Apply(b); err == nil {
			t.Fatal("apply succeeded despite the fault")
		}
		if !maps.Equal(before, dump(t, c)) {
			t.Fatal("the failed batch left part of itself behind")
		}
		cache.SetFailAfter(c, 0)
		if res := mustApply(t, c, b); res.Cursor != 200 {
			t.Fatalf("retry: %+v", res)
		}
	})
	t.Run("disk full at commit", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "full.db")
		c, err := cache.Open(path, cachetest.Options(&cache.Options{MaxSize: 1 << 20}))
		if err != nil {
			t.Fatal(err)
		}
		mustApply(t, c, cachetest.Batch(0, 1000, 100_000))
		before := dump(t, c)
		_, err = c.Apply(cachetest.Batch(1000, 50_000, 100_000)) // ~3 MB of records
		if !errors.Is(err, berrors.ErrMaxSizeReached) {
			t.Fatalf("error %v, want the size cap", err)
		}
		if !maps.Equal(before, dump(t, c)) {
			t.Fatal("the failed batch left part of itself behind")
		}
		c.Close()
		cachetest.CheckFile(t, path)
	})
}

// reopenJournal closes j and opens its file again, as a restart does.
func reopenJournal(t *testing.T, j *cache.Journal) *cache.Journal {
	t.Helper()
	path := j.Path()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j2, err := cache.OpenJournal(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j2.Close() })
	return j2
}

func TestEvents(t *testing.T) {
	j := cachetest.OpenJournal(t, nil)
	id := cachetest.Cert(0, 1).ID
	var seqs []uint64
	for i := range 5 {
		seq, err := j.AppendEvent(event.Event{
			Time: t0.Add(time.Duration(i) * time.Second), Kind: event.Decision,
			Reason: verify.Reason(1 + i), Direction: verify.Exit, CertID: id,
			StepOffset: int64(i - 2), Detail: fmt.Sprintf("scan %d", i),
		})
		if err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("sequence numbers %v", seqs)
		}
	}
	evs, err := j.Events(seqs[1], 2)
	if err != nil || len(evs) != 2 || evs[0].Seq != seqs[2] || evs[1].Seq != seqs[3] {
		t.Fatalf("Events(%d, 2) = %+v, %v", seqs[1], evs, err)
	}
	e := evs[0]
	if !e.Time.Equal(t0.Add(2*time.Second)) || e.Kind != event.Decision || e.Reason != verify.Reason(3) ||
		e.Direction != verify.Exit || e.CertID != id || e.StepOffset != 0 || e.Detail != "scan 2" {
		t.Fatalf("event read back as %+v", e)
	}
	if n, err := j.DeleteEventsThrough(seqs[2]); err != nil || n != 3 {
		t.Fatalf("DeleteEventsThrough: %d, %v", n, err)
	}
	evs, _ = j.Events(0, 100)
	if len(evs) != 2 || evs[0].Seq != seqs[3] {
		t.Fatalf("after acknowledgement: %+v", evs)
	}
	if b, err := j.Backlog(); err != nil || b.Events != 2 || !b.Oldest.Equal(t0.Add(3*time.Second)) || b.LastSeq != seqs[4] {
		t.Fatalf("Backlog = %+v, %v; want 2 events from %v, last %d", b, err, t0.Add(3*time.Second), seqs[4])
	}
	// Sequence numbers are never reused, even after deletion and reopening.
	j2 := reopenJournal(t, j)
	j2.DeleteEventsThrough(1 << 62)
	seq, err := j2.AppendEvent(event.Event{Time: t0, Kind: event.Alarm, Reason: verify.Undecided})
	if err != nil || seq != seqs[4]+1 {
		t.Fatalf("after reopen: seq %d, %v; want %d", seq, err, seqs[4]+1)
	}
}

func TestEventRefused(t *testing.T) {
	j := cachetest.OpenJournal(t, nil)
	for name, e := range map[string]event.Event{
		"no kind":     {Time: t0},
		"bad kind":    {Time: t0, Kind: 99},
		"bad reason":  {Time: t0, Kind: event.Decision, Reason: 99},
		"no time":     {Kind: event.Decision},
		"long detail": {Time: t0, Kind: event.Alarm, Detail: strings.Repeat("x", event.MaxDetail+1)},
		"not UTF-8":   {Time: t0, Kind: event.Alarm, Detail: "\xff\xfe"},
	} {
		if _, err := j.AppendEvent(e); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if b, _ := j.Backlog(); b.Events != 0 {
		t.Fatalf("%d events stored", b.Events)
	}
}

// TestPassage: the journal's anti-passback state reaches the verifier
// through Store, and survives a restart.
func TestPassage(t *testing.T) {
	s := cachetest.OpenStore(t)
	b := cachetest.Batch(0, 2, 2)
	mustApply(t, s.Cache, b)
	id := b.Upserts[0].ID
	at := t0.Add(90 * time.Minute)
	seq, err := s.Journal.RecordPassage(id, verify.Entry, event.Event{Time: at, Kind: event.Passage, Reason: verify.OK, Direction: verify.Entry, CertID: id})
	if err != nil || seq == 0 {
		t.Fatal(seq, err)
	}
	check := func(s *cache.Store) {
		t.Helper()
		if r, ok, err := s.Lookup(id, verify.Entry); err != nil || !ok || !r.LastPass.Equal(at) {
			t.Fatalf("entry: last pass %v (%v, %v), want %v", r.LastPass, ok, err, at)
		}
		if r, ok, _ := s.Lookup(id, verify.Exit); !ok || !r.LastPass.IsZero() {
			t.Fatalf("exit: last pass %v, want none", r.LastPass)
		}
		if r, ok, _ := s.Lookup(b.Upserts[1].ID, verify.Entry); !ok || !r.LastPass.IsZero() {
			t.Fatalf("other cert: last pass %v, want none", r.LastPass)
		}
	}
	check(s)
	// The state survives a restart.
	s2 := &cache.Store{Cache: s.Cache, Journal: reopenJournal(t, s.Journal)}
	check(s2)
	if evs, _ := s2.Journal.Events(0, 10); len(evs) != 1 || evs[0].Kind != event.Passage {
		t.Fatalf("events %+v", evs)
	}
	if _, err := s2.Journal.RecordPassage(id, 0, event.Event{Time: at, Kind: event.Passage}); err == nil {
		t.Fatal("a passage without direction was recorded")
	}
}

// TestStoreRefusesBeforeTheFirstSync: a new (or rebuilt) cache decides
// nothing until a sync has completed; a full sync's last page, or a log
// batch, ends that.
func TestStoreRefusesBeforeTheFirstSync(t *testing.T) {
	s := cachetest.OpenStore(t)
	id := cachetest.Cert(0, 1).ID
	if _, _, err := s.Lookup(id, verify.Entry); !errors.Is(err, cache.ErrNotSynced) {
		t.Fatalf("lookup in a new cache: %v, want ErrNotSynced", err)
	}
	if _, err := s.Cache.ApplySnapshot(&cache.SnapshotPage{Epoch: 7, Snapshot: 0, Upserts: []verify.Cert{cachetest.Cert(0, 1)}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Lookup(id, verify.Entry); !errors.Is(err, cache.ErrNotSynced) {
		t.Fatalf("lookup part-way through a full sync: %v, want ErrNotSynced", err)
	}
	if _, err := s.Cache.ApplySnapshot(&cache.SnapshotPage{Epoch: 7, Snapshot: 0, After: id, Final: true, Feed: cache.FeedState{Epoch: 7}}); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Lookup(id, verify.Entry); err != nil || !ok {
		t.Fatalf("lookup after the full sync: %v %v", ok, err)
	}
	// Synced survives a restart, even at cursor 0 (an issuer with no
	// changes yet): the epoch says a full sync completed.
	if c2 := reopen(t, s.Cache); !c2.Synced() {
		t.Fatal("reopened cache forgot its completed sync")
	}
}

func TestPurge(t *testing.T) {
	s := cachetest.OpenStore(t)
	c := s.Cache
	const n = 12_000 // more than one purge chunk
	for from := uint64(0); from < n; from += 4000 {
		b := cachetest.Batch(from, from+4000, n)
		for i := range b.Upserts {
			if i%2 == 1 { // every other certificate was approved a day later
				b.Upserts[i].NotBefore = b.Upserts[i].NotBefore.Add(24 * time.Hour)
				b.Upserts[i].NotAfter = b.Upserts[i].NotAfter.Add(24 * time.Hour)
			}
		}
		mustApply(t, c, b)
	}
	old, young := cachetest.Cert(0, n).ID, cachetest.Cert(1, n).ID
	s.Journal.RecordPassage(young, verify.Entry, event.Event{Time: t0, Kind: event.Passage})
	s.Journal.RecordPassage(old, verify.Entry, event.Event{Time: t0.Add(47 * time.Hour), Kind: event.Passage})

	// At t0+48h, the first half expired 24h ago, the second half just now.
	res, err := s.Purge(t0.Add(48*time.Hour), 12*time.Hour, time.Hour)
	if err != nil || res.Certs != n/2 || res.Passbacks != 1 {
		t.Fatalf("purge: %+v, %v; want %d certs and 1 passage", res, err, n/2)
	}
	if _, ok := lookup(t, c, old); ok {
		t.Error("expired certificate kept")
	}
	r, ok, err := s.Lookup(young, verify.Entry)
	if err != nil || !ok {
		t.Fatal("certificate inside its retention purged", err)
	}
	if !r.LastPass.IsZero() {
		t.Error("old passage kept in memory")
	}
	if st, _ := s.Stats(); st.Certs != n/2 || st.Passbacks != 1 {
		t.Fatalf("stats after purge: %+v", st)
	}
}

func TestStats(t *testing.T) {
	s := cachetest.OpenStore(t)
	c := s.Cache
	mustApply(t, c, cachetest.Batch(0, 7, 7))
	s.Journal.AppendEvent(event.Event{Time: t0.Add(time.Minute), Kind: event.Alarm})
	s.Journal.AppendEvent(event.Event{Time: t0.Add(2 * time.Minute), Kind: event.Alarm})
	synced := t0.Add(3 * time.Minute)
	if err := c.RecordSync(cache.FeedState{KeyID: "k2", IssuerTime: synced, SyncedAt: synced, MaxAge: time.Hour}); err != nil {
		t.Fatal(err)
	}
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Certs != 7 || st.Events != 2 || st.LastSeq != 2 || !st.OldestAt.Equal(t0.Add(time.Minute)) ||
		st.Feed.Cursor != 7 || st.Feed.KeyID != "k2" || !st.Feed.SyncedAt.Equal(synced) || st.FileSize <= 0 || st.Schema != cache.SchemaVersion {
		t.Fatalf("stats %+v", st)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()

	t.Run("schema of another build", func(t *testing.T) {
		path := filepath.Join(dir, "future.db")
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			t.Fatal(err)
		}
		cache.DB(c).Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("meta")).Put([]byte("schema"), binary.BigEndian.AppendUint32(nil, 5))
		})
		c.Close()
		_, err = cache.Open(path, cachetest.Options(nil))
		if !errors.Is(err, cache.ErrSchema) || !strings.Contains(err.Error(), "version 5") {
			t.Fatalf("error %v, want ErrSchema naming version 5", err)
		}
	})
	t.Run("under another cache key", func(t *testing.T) {
		path := filepath.Join(dir, "keyed.db")
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		jpath := filepath.Join(dir, "keyed-journal.db")
		j, err := cache.OpenJournal(jpath, cachetest.Options(nil))
		if err != nil {
			t.Fatal(err)
		}
		j.Close()
		before, _ := os.ReadFile(path)
		other, _ := cache.NewKey(bytes.Repeat([]byte{9}, cache.KeyLen))
		if _, err := cache.Open(path, &cache.Options{Key: other}); !errors.Is(err, cache.ErrWrongKey) {
			t.Fatalf("cache: %v, want ErrWrongKey", err)
		}
		if _, err := cache.OpenJournal(jpath, &cache.Options{Key: other}); !errors.Is(err, cache.ErrWrongKey) {
			t.Fatalf("journal: %v, want ErrWrongKey", err)
		}
		if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
			t.Fatal("the refused open changed the file")
		}
		if _, err := cache.Open(path, nil); !errors.Is(err, cache.ErrNoKey) {
			t.Fatalf("without a key: %v, want ErrNoKey", err)
		}
		if _, err := cache.NewKey(make([]byte, 31)); !errors.Is(err, cache.ErrKeyLength) {
			t.Fatalf("a key of 31 bytes: %v, want ErrKeyLength", err)
		}
	})
	t.Run("plaintext cache of schema 2", func(t *testing.T) {
		path := filepath.Join(dir, "schema2.db")
		if err := cachetest.WriteLegacy(path, cachetest.Batch(0, 3, 3).Upserts, 3, 1); err != nil {
			t.Fatal(err)
		}
		if _, err := cache.Open(path, cachetest.Options(nil)); !errors.Is(err, cache.ErrPlaintext) || !strings.Contains(err.Error(), "schema 2") {
			t.Fatalf("error %v, want ErrPlaintext naming schema 2", err)
		}
	})
	t.Run("bbolt file of another program", func(t *testing.T) {
		path := filepath.Join(dir, "other.db")
		db, _ := bolt.Open(path, 0o600, nil)
		db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("widgets")); return err })
		db.Close()
		if _, err := cache.Open(path, cachetest.Options(nil)); !errors.Is(err, cache.ErrCorrupt) {
			t.Fatalf("error %v, want ErrCorrupt", err)
		}
	})
	t.Run("a journal opened as a cache", func(t *testing.T) {
		path := filepath.Join(dir, "journal.db")
		j, err := cache.OpenJournal(path, cachetest.Options(nil))
		if err != nil {
			t.Fatal(err)
		}
		j.Close()
		_, err = cache.Open(path, cachetest.Options(nil))
		if ce := corruptKind(err); ce == nil || ce.Kind != cache.Foreign {
			t.Fatalf("error %v, want a Foreign CorruptError", err)
		}
		if _, err := cache.OpenJournal(path, cachetest.Options(nil)); err != nil {
			t.Fatalf("the refused open changed the journal: %v", err)
		}
	})
	t.Run("not a bbolt file", func(t *testing.T) {
		path := filepath.Join(dir, "garbage.db")
		os.WriteFile(path, []byte(strings.Repeat("not a database ", 1000)), 0o600)
		_, err := cache.Open(path, cachetest.Options(nil))
		if ce := corruptKind(err); ce == nil || ce.Kind != cache.Damaged {
			t.Fatalf("error %v, want a Damaged CorruptError", err)
		}
	})
	t.Run("too short to be a bbolt file", func(t *testing.T) {
		path := filepath.Join(dir, "short.db")
		os.WriteFile(path, []byte(strings.Repeat("\x01", 500)), 0o600)
		_, err := cache.Open(path, cachetest.Options(nil))
		if ce := corruptKind(err); ce == nil || ce.Kind != cache.Truncated {
			t.Fatalf("error %v, want a Truncated CorruptError", err)
		}
	})
	t.Run("empty, read-only", func(t *testing.T) {
		path := filepath.Join(dir, "empty.db")
		os.WriteFile(path, nil, 0o600)
		_, err := cache.Open(path, cachetest.Options(&cache.Options{ReadOnly: true}))
		if ce := corruptKind(err); ce == nil || ce.Kind != cache.Empty {
			t.Fatalf("error %v, want an Empty CorruptError", err)
		}
		// Opened for writing, an empty file is set up as a new one.
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			t.Fatalf("empty file opened for writing: %v", err)
		}
		c.Close()
	})
	t.Run("permission denied stays an OS error", func(t *testing.T) {
		if os.Geteuid() == 0 {
			// root reads any file; refuse through a missing directory instead
			_, err := cache.Open(filepath.Join(dir, "no-such-dir", "c.db"), cachetest.Options(nil))
			if errors.Is(err, cache.ErrCorrupt) || !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("error %v, want the OS's not-exist, not ErrCorrupt", err)
			}
			return
		}
		path := filepath.Join(dir, "noperm.db")
		os.WriteFile(path, nil, 0o000)
		_, err := cache.Open(path, cachetest.Options(nil))
		if errors.Is(err, cache.ErrCorrupt) || !errors.Is(err, os.ErrPermission) {
			t.Fatalf("error %v, want the OS's permission error, not ErrCorrupt", err)
		}
	})
	t.Run("locked by the daemon", func(t *testing.T) {
		path := filepath.Join(dir, "locked.db")
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = cache.Open(path, cachetest.Options(&cache.Options{LockTimeout: 50 * time.Millisecond}))
		if !errors.Is(err, cache.ErrLocked) {
			t.Fatalf("error %v, want ErrLocked", err)
		}
	})
	t.Run("read-only, absent", func(t *testing.T) {
		_, err := cache.Open(filepath.Join(dir, "absent.db"), cachetest.Options(&cache.Options{ReadOnly: true}))
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("error %v, want not-exist", err)
		}
	})
	t.Run("read-only refuses writes", func(t *testing.T) {
		path := filepath.Join(dir, "ro.db")
		c, _ := cache.Open(path, cachetest.Options(nil))
		c.Close()
		ro, err := cache.Open(path, cachetest.Options(&cache.Options{ReadOnly: true}))
		if err != nil {
			t.Fatal(err)
		}
		defer ro.Close()
		if _, err := ro.Apply(cachetest.Batch(0, 1, 1)); !errors.Is(err, cache.ErrReadOnly) {
			t.Fatalf("apply: %v", err)
		}
		if err := ro.Check(); err != nil {
			t.Fatalf("check read-only: %v", err)
		}
		jpath := filepath.Join(dir, "ro-journal.db")
		j, _ := cache.OpenJournal(jpath, cachetest.Options(nil))
		j.Close()
		jro, err := cache.OpenJournal(jpath, cachetest.Options(&cache.Options{ReadOnly: true}))
		if err != nil {
			t.Fatal(err)
		}
		defer jro.Close()
		if _, err := jro.AppendEvent(event.Event{Time: t0, Kind: event.Alarm}); !errors.Is(err, cache.ErrReadOnly) {
			t.Fatalf("append: %v", err)
		}
	})
}

// corruptKind returns err's *CorruptError, nil when it has none.
func corruptKind(err error) *cache.CorruptError {
	var ce *cache.CorruptError
	if errors.As(err, &ce) {
		return ce
	}
	return nil
}

// TestCorruptRecordIsAnError: a damaged record makes the lookup fail
// (the gate stays shut), not decide.
func TestCorruptRecordIsAnError(t *testing.T) {
	c := cachetest.Open(t, nil)
	cert := cachetest.Cert(0, 1)
	mustApply(t, c, &cache.Batch{From: 0, Next: 1, Upserts: []verify.Cert{cert}})
	if _, err := c.Purge(t0, 48*time.Hour); err != nil { // the delta written as a run
		t.Fatal(err)
	}
	var k, good []byte
	cache.DB(c).Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("groups"))
		k, good = b.Cursor().First()
		k, good = bytes.Clone(k), bytes.Clone(good)
		return b.Put(k, []byte("short"))
	})
	if _, _, err := c.Lookup(cert.ID, verify.Entry); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("error %v, want ErrCorrupt", err)
	}
	// Mend it, so the cleanup's integrity check judges the file, not the plant.
	cache.DB(c).Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("groups")).Put(k, good) })
	if r, ok := lookup(t, c, cert.ID); !ok || r.Key != cert.Key {
		t.Fatal("mended group does not read back")
	}
}

// TestCheckFindsDamage overwrites a page in the middle of a closed file:
// Check must report it.
func TestCheckFindsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "damaged.db")
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	mustApply(t, c, cachetest.Batch(0, 5000, 5000))
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil {
		t.Fatalf("healthy file: %v", err)
	}
	c.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	page := int64(os.Getpagesize())
	junk := []byte(strings.Repeat("\xde\xad\xbe\xef", int(page)/4))
	// Damage a run of pages past the meta pages, where the B+tree lives.
	for off := 4 * page; off < fi.Size()/2; off += 8 * page {
		f.WriteAt(junk, off)
	}
	f.Close()
	c, err = cache.Open(path, cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		if !errors.Is(err, cache.ErrCorrupt) {
			t.Fatalf("open of a damaged file: %v", err)
		}
		return
	}
	defer c.Close()
	if err := c.Check(); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("Check of a damaged file: %v, want ErrCorrupt", err)
	}
	// Every lookup on the damaged file answers, found or not or an error:
	// none panics, and none finds a certificate with the wrong key.
	corrupt := 0
	for i := range uint64(5000) {
		want := cachetest.Cert(i, 5000)
		r, ok, err := c.Lookup(want.ID, verify.Entry)
		switch {
		case errors.Is(err, cache.ErrCorrupt):
			corrupt++
		case err != nil:
			t.Fatalf("lookup %d: %v", i, err)
		case ok && r.Key != want.Key:
			t.Fatalf("lookup %d on a damaged file found a wrong key", i)
		}
	}
	t.Logf("%d of 5000 lookups reported the damage", corrupt)
}

func TestLookupAllocatesLittle(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 100, 200)
	mustApply(t, c, b)
	if err := c.WriteRun(cachetest.Epoch); err != nil { // a run, as the maintenance writes it
		t.Fatal(err)
	}
	d := cachetest.Batch(100, 200, 200) // and a delta over it
	mustApply(t, c, d)
	for _, id := range []verify.CertID{b.Upserts[42].ID, d.Upserts[42].ID} {
		if _, ok := lookup(t, c, id); !ok {
			t.Fatalf("%s not found", id)
		}
		// A lookup reuses the kept transaction and its cursor: in the
		// run or in the delta, it allocates nothing.
		if allocs := testing.AllocsPerRun(200, func() { c.Lookup(id, verify.Entry) }); allocs > 0 {
			t.Fatalf("Lookup of %s allocates %.0f times", id, allocs)
		}
	}
}

// TestLive: the certificates not yet expired are counted, the expired
// ones (kept for the retention) are not, a revocation is.
func TestLive(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 10, 10)
	for i := range 4 {
		b.Upserts[i].NotAfter = t0.Add(time.Hour) // expire earlier
	}
	b.Upserts[9].Revoked = true
	mustApply(t, c, b)
	for _, tc := range []struct {
		at   time.Time
		want int
	}{{t0, 10}, {t0.Add(time.Hour), 10}, {t0.Add(time.Hour + time.Second), 6}, {t0.Add(25 * time.Hour), 0}} {
		n, err := c.Live(tc.at)
		if err != nil || n != tc.want {
			t.Errorf("live at %v: %d, %v; want %d", tc.at.Sub(t0), n, err, tc.want)
		}
	}
}

// TestJournalCompactsDuringAnOutage: with the issuer taking no upload,
// every event stays, and the journal's segments would grow a block per
// event for as long as the outage lasts; past compactSegments the
// journal writes its state densely (a checkpoint) and gives back the
// segments before it. Every event and passage is there after a reopen,
// and once the issuer acknowledges them the segments go back.
func TestJournalCompactsDuringAnOutage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	o := cachetest.Options(&cache.Options{JournalSegment: 4 * 4096}) // four records a segment
	j, err := cache.OpenJournal(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	const n = 600
	ids := cachetest.Batch(0, n, n).Upserts
	maxSegs := 0
	for i := range n {
		e := event.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: event.Passage, Direction: verify.Entry, CertID: ids[i].ID, Detail: fmt.Sprint("event ", i)}
		if _, err := j.RecordPassage(ids[i].ID, verify.Entry, e); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			// An upload refused: nothing acknowledged. The hourly purge
			// keeps the passages of the last 10 minutes.
			if _, err := j.PurgePassages(e.Time, 10*time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		maxSegs = max(maxSegs, j.Usage().Segments)
	}
	// Without compaction: 151 segments (a record each, four a segment).
	if maxSegs > 40 {
		t.Fatalf("%d live segments at most for %d events: the journal does not compact", maxSegs, n)
	}
	j.Close()
	j, err = cache.OpenJournal(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	evs, err := j.Events(0, 2*n)
	if err != nil || len(evs) != n {
		t.Fatalf("after a reopen: %d events, %v; want %d", len(evs), err, n)
	}
	for i, e := range evs {
		if e.Seq != uint64(i+1) || e.Detail != fmt.Sprint("event ", i) {
			t.Fatalf("event %d reads %+v", i, e)
		}
	}
	last := ids[n-1].ID
	if at, ok, err := j.LastPass(&last, verify.Entry); err != nil || !ok || !at.Equal(t0.Add((n-1)*time.Second)) {
		t.Fatalf("the last passage after a reopen: %v %v %v", at, ok, err)
	}
	if _, err := j.DeleteEventsThrough(evs[n-1].Seq); err != nil {
		t.Fatal(err)
	}
	if _, err := j.PurgePassages(t0.Add(2*n*time.Second), 10*time.Minute); err != nil {
		t.Fatal(err)
	}
	if s := j.Usage().Segments; s > 2 {
		t.Fatalf("%d live segments once every event is acknowledged and every passage purged", s)
	}
	t.Logf("%d live segments at most during the outage of %d events", maxSegs, n)
}
