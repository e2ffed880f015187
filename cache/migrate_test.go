package cache_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/verify"
)

// schema1 writes a cache as builds before the journal left it: 50
// certificates, 20 events numbered 11..30 (1..10 uploaded and deleted)
// with the bucket's sequence at 30, and passages of two certificates.
func schema1(t *testing.T, path string) ([]verify.Cert, []event.Event, map[[17]byte]int64) {
	t.Helper()
	certs := cachetest.Batch(0, 50, 50).Upserts
	var events []event.Event
	for seq := uint64(11); seq <= 30; seq++ {
		events = append(events, event.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: event.Decision,
			Reason: verify.OK, Direction: verify.Entry, CertID: certs[seq%50].ID, Detail: "old"})
	}
	passes := map[[17]byte]int64{}
	for i, ns := range map[int]int64{3: t0.UnixNano(), 4: t0.Add(time.Minute).UnixNano()} {
		var k [17]byte
		copy(k[:], certs[i].ID[:])
		k[16] = byte(verify.Entry)
		passes[k] = ns
	}
	if err := cache.WriteSchema1(path, certs, events, 30, passes); err != nil {
		t.Fatal(err)
	}
	return certs, events, passes
}

// TestMoveLegacyJournal: a cache of schema 1 is refused as plaintext, and
// its events and passages move into the journal under their own numbers,
// each given its MAC, exactly once: the old file is not written to, and
// the move repeated (the agent restarted before the rebuild replaced the
// old file) duplicates, resends and renumbers nothing.
func TestMoveLegacyJournal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	certs, events, _ := schema1(t, path)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Open(path, cachetest.Options(nil)); !errors.Is(err, cache.ErrPlaintext) {
		t.Fatalf("open a cache of schema 1: %v, want ErrPlaintext", err)
	}
	if n, err := cache.LegacySchema(path); n != 1 || err != nil {
		t.Fatalf("LegacySchema: %d, %v", n, err)
	}
	j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	mv, err := cache.MoveLegacyJournal(path, j)
	if err != nil || mv.Events != 20 || mv.Passbacks != 2 {
		t.Fatalf("move: %+v, %v", mv, err)
	}
	got, err := j.Events(0, 100) // each authenticated
	if err != nil || len(got) != 20 {
		t.Fatalf("%d events in the journal (%v), want 20", len(got), err)
	}
	for i, e := range got {
		if e != events[i] {
			t.Fatalf("event %d moved as %+v, was %+v", i, e, events[i])
		}
	}
	if at, ok, err := j.LastPass(&certs[4].ID, verify.Entry); err != nil || !ok || !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("passage of cert 4 after the move: %v %v %v", at, ok, err)
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, old) {
		t.Fatal("the move wrote to the old cache file")
	}

	// The issuer acknowledges 11..15; the agent restarts before the
	// rebuild ends and repeats the move.
	if _, err := j.DeleteEventsThrough(15); err != nil {
		t.Fatal(err)
	}
	if mv, err := cache.MoveLegacyJournal(path, j); err != nil || mv.Events != 0 || mv.Passbacks != 0 {
		t.Fatalf("repeated move: %+v, %v; want nothing moved", mv, err)
	}
	if got, _ := j.Events(0, 100); len(got) != 15 || got[0].Seq != 16 {
		t.Fatalf("after the repeat: %d events from %d, want 16..30", len(got), got[0].Seq)
	}
	if seq, err := j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm}); err != nil || seq != 31 {
		t.Fatalf("next event: %d, %v; want 31", seq, err)
	}
}

// TestMoveLegacyJournalKeepsNewerNumbers: a journal already numbered past
// the cache keeps its numbers: an event the journal holds under a number
// is never replaced (that is what makes a repeated move idempotent), and
// the numbering continues from the higher of the two sequences.
func TestMoveLegacyJournalKeepsNewerNumbers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	schema1(t, path)
	j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for range 40 {
		j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm})
	}
	if _, err := cache.MoveLegacyJournal(path, j); err != nil {
		t.Fatal(err)
	}
	if b, _ := j.Backlog(); b.LastSeq != 40 || b.Events != 40 {
		t.Fatalf("backlog %+v: want the journal's own 40", b)
	}
	if evs, _ := j.Events(10, 1); evs[0].Kind != event.Alarm {
		t.Fatalf("event 11 replaced by the cache's: %+v", evs[0])
	}
}

// TestLegacyCacheRebuilt: a cache of schema 2 (keys in plaintext) is not
// trusted and not re-encrypted: a new file is filled from the feed beside
// it, the old one stays until the new one holds a full sync, and then the
// new file replaces it under its name, the handle following. No key of
// the old file is left in the directory.
func TestLegacyCacheRebuilt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	certs := cachetest.Batch(0, 300, 300).Upserts
	if err := cachetest.WriteLegacy(path, certs, 300, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.Open(path, cachetest.Options(nil)); !errors.Is(err, cache.ErrPlaintext) {
		t.Fatalf("open a cache of schema 2: %v, want ErrPlaintext", err)
	}
	if n, err := cache.LegacySchema(path); n != 2 || err != nil {
		t.Fatalf("LegacySchema: %d, %v", n, err)
	}
	rebuild := cache.RebuildPath(path)
	c, err := cache.Open(rebuild, cachetest.Options(&cache.Options{Replaces: path}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Synced() || c.Rebuilding() != path {
		t.Fatalf("new file: synced %v, rebuilding %q", c.Synced(), c.Rebuilding())
	}
	page := func(from, to int, final bool) {
		t.Helper()
		p := &cache.SnapshotPage{Epoch: 7, Snapshot: 300, Final: final, Upserts: certs[from:to]}
		if from > 0 {
			p.After = certs[from-1].ID
		}
		if final {
			p.Feed = cache.FeedState{MaxAge: time.Hour, SyncedAt: t0}
		}
		if _, err := c.ApplySnapshot(p); err != nil {
			t.Fatal(err)
		}
	}
	page(0, 100, false)
	page(100, 200, false)
	if _, err := os.Stat(path); err != nil || c.Path() != rebuild {
		t.Fatalf("mid-rebuild: old file %v, cache at %s", err, c.Path())
	}
	if n, _ := cache.LegacySchema(path); n != 2 {
		t.Fatal("the old cache changed during the rebuild")
	}
	page(200, 300, true)
	if c.Path() != path || c.Rebuilding() != "" || !c.Synced() {
		t.Fatalf("after the full sync: at %s, rebuilding %q, synced %v", c.Path(), c.Rebuilding(), c.Synced())
	}
	if _, err := os.Stat(rebuild); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the rebuild file is still there: %v", err)
	}
	for _, want := range certs {
		r, ok, err := c.Lookup(want.ID, verify.Entry)
		if err != nil || !ok || r.Key != want.Key {
			t.Fatalf("cert %s after the rebuild: %v %v", want.ID, ok, err)
		}
	}
	// A write to the renamed file lands in it (the handle followed).
	if _, err := c.Apply(&cache.Batch{From: 300, Next: 301, Revokes: []verify.CertID{certs[0].ID}, Feed: cache.FeedState{Epoch: 7}}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	data, _ := os.ReadFile(path)
	entries, _ := os.ReadDir(dir)
	for _, cert := range certs {
		if bytes.Contains(data, cert.Key[:]) {
			t.Fatalf("cert %s: its key is in plaintext in the new cache", cert.ID)
		}
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"cache.db", "cache.db.delta"}) {
		t.Fatalf("directory holds %v after the rebuild, want the cache and its delta alone", names)
	}
	c = openCache(t, path)
	if r, ok, err := c.Lookup(certs[0].ID, verify.Entry); err != nil || !ok || !r.Revoked {
		t.Fatalf("reopened: cert 0 %v %v %+v", ok, err, r)
	}
}

// TestJournalMigration: a journal.db of schema 1 (no MACs) is moved into
// the journal's log at its first open for writing: every event and
// passage authenticates afterwards and reads as before, and journal.db is
// renamed; opened read-only (diag) before that, it is read as it is.
func TestJournalMigration(t *testing.T) {
	jdir := filepath.Join(t.TempDir(), "journal")
	path := cache.LegacyJournalPath(jdir)
	certs := cachetest.Batch(0, 10, 10).Upserts
	var events []event.Event
	for seq := uint64(1); seq <= 2500; seq++ {
		events = append(events, event.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Second), Kind: event.Decision,
			Reason: verify.OK, Direction: verify.Entry, CertID: certs[seq%10].ID, Detail: "before MACs"})
	}
	var k [17]byte
	copy(k[:], certs[2].ID[:])
	k[16] = byte(verify.Exit)
	if err := cache.WriteJournalV1(path, events, 2500, map[[17]byte]int64{k: t0.UnixNano()}); err != nil {
		t.Fatal(err)
	}
	ro, err := cache.OpenJournal(jdir, cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ro.Events(0, 10); err != nil || len(got) != 10 || got[0] != events[0] {
		t.Fatalf("read-only, before the migration: %v, %v", got, err)
	}
	if ro.Schema() != 1 {
		t.Fatalf("read-only, before the migration: schema %d, want 1", ro.Schema())
	}
	ro.Close()
	if _, err := os.Stat(jdir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a read-only open made the journal's directory: %v", err)
	}
	j, err := cache.OpenJournal(jdir, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	got, err := j.Events(0, 5000)
	if err != nil || len(got) != len(events) {
		t.Fatalf("after the migration: %d events, %v", len(got), err)
	}
	for i := range got {
		if got[i] != events[i] {
			t.Fatalf("event %d migrated as %+v, was %+v", i, got[i], events[i])
		}
	}
	if at, ok, err := j.LastPass(&certs[2].ID, verify.Exit); err != nil || !ok || !at.Equal(t0) {
		t.Fatalf("passage after the migration: %v %v %v", at, ok, err)
	}
	if r, err := j.Authenticate(); err != nil || r.Failed != 0 || r.Records != 2501 {
		t.Fatalf("authenticate after the migration: %+v, %v", r, err)
	}
	j.Close()
	cachetest.CheckFile(t, jdir)
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("journal.db is still there after its migration: %v", err)
	}
	if _, err := os.Stat(path + ".migrated"); err != nil {
		t.Fatalf("journal.db not kept as journal.db.migrated: %v", err)
	}
	j, err = cache.OpenJournal(jdir, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := j.Events(0, 5000); err != nil || len(got) != len(events) || j.Schema() != cache.JournalSchema {
		t.Fatalf("reopened after the migration: %d events, %v, schema %d", len(got), err, j.Schema())
	}
	j.Close()
	other, _ := cache.NewKey(bytes.Repeat([]byte{1}, cache.KeyLen))
	if _, err := cache.OpenJournal(jdir, &cache.Options{Key: other}); !errors.Is(err, cache.ErrWrongKey) {
		t.Fatalf("migrated journal under another key: %v, want ErrWrongKey", err)
	}
}
