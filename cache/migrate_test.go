package cache_test

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
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

// TestMoveToJournal: a cache of schema 1 opens, and its events and
// passages move into the journal under their own numbers, exactly once:
// a cut between the two transactions (the old cache file back as it was)
// repeats the move without duplicating, resending or renumbering anything.
func TestMoveToJournal(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	certs, events, _ := schema1(t, path)
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Schema() != 1 || !c.Synced() {
		t.Fatalf("schema %d, synced %v", c.Schema(), c.Synced())
	}
	j, err := cache.OpenJournal(cache.JournalPath(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	mv, err := cache.MoveToJournal(c, j)
	if err != nil || mv.Events != 20 || mv.Passbacks != 2 {
		t.Fatalf("move: %+v, %v", mv, err)
	}
	got, _ := j.Events(0, 100)
	if len(got) != 20 {
		t.Fatalf("%d events in the journal, want 20", len(got))
	}
	for i, e := range got {
		if e != events[i] {
			t.Fatalf("event %d moved as %+v, was %+v", i, e, events[i])
		}
	}
	s := &cache.Store{Cache: c, Journal: j}
	if r, ok, err := s.Lookup(certs[4].ID, verify.Entry); err != nil || !ok || !r.LastPass.Equal(t0.Add(time.Minute)) {
		t.Fatalf("passage of cert 4 after the move: %v %v %v", r.LastPass, ok, err)
	}
	c.Close()
	c = openCache(t, path)
	d, _ := cache.Dump(c)
	for k := range maps.Keys(d) {
		if strings.HasPrefix(k, "events/") || strings.HasPrefix(k, "passback/") {
			t.Fatalf("the cache still holds %s after the move", k)
		}
	}
	if c.Schema() != cache.SchemaVersion {
		t.Fatalf("schema %d after the move", c.Schema())
	}
	c.Close()

	// The issuer acknowledges 11..15; then the power is cut after the
	// journal's commit and before the cache's, which is as it was.
	if _, err := j.DeleteEventsThrough(15); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	c = openCache(t, path)
	if mv, err := cache.MoveToJournal(c, j); err != nil || mv.Events != 0 || mv.Passbacks != 0 {
		t.Fatalf("repeated move: %+v, %v; want nothing moved", mv, err)
	}
	if got, _ := j.Events(0, 100); len(got) != 15 || got[0].Seq != 16 {
		t.Fatalf("after the repeat: %d events from %d, want 16..30", len(got), got[0].Seq)
	}
	if seq, err := j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm}); err != nil || seq != 31 {
		t.Fatalf("next event: %d, %v; want 31", seq, err)
	}
}

// TestMoveToJournalKeepsNewerNumbers: a journal already numbered past the
// cache keeps its numbers: an event the journal holds under a number is
// never replaced (that is what makes a repeated move idempotent), and the
// numbering continues from the higher of the two sequences.
func TestMoveToJournalKeepsNewerNumbers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	schema1(t, path)
	j, err := cache.OpenJournal(cache.JournalPath(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	for range 40 {
		j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm})
	}
	c := openCache(t, path)
	if _, err := cache.MoveToJournal(c, j); err != nil {
		t.Fatal(err)
	}
	if b, _ := j.Backlog(); b.LastSeq != 40 || b.Events != 40 {
		t.Fatalf("backlog %+v: want the journal's own 40", b)
	}
	if evs, _ := j.Events(10, 1); evs[0].Kind != event.Alarm {
		t.Fatalf("event 11 replaced by the cache's: %+v", evs[0])
	}
}
