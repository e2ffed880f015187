package flashproto

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/internal/seglog"
	"gateagent/verify"
)

var t0 = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// TestLogJournalReopen: events, passages and acknowledgements survive a
// reopen as the journal promises: the events not acknowledged when the
// last record was written come back (the issuer drops the repeats), the
// sequence goes on, the passages are known.
func TestLogJournalReopen(t *testing.T) {
	dir := t.TempDir()
	j, err := OpenLogJournal(dir, 8*seglog.BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	id := verify.CertID{1, 2, 3}
	for i := range 6 {
		e := event.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: event.Decision, Reason: verify.OK, CertID: id}
		if seq, err := j.AppendEvent(e); err != nil || seq != uint64(i+1) {
			t.Fatalf("append %d: seq %d, %v", i, seq, err)
		}
	}
	j.DeleteEventsThrough(4) // acknowledged: written with the next record
	if _, err := j.RecordPassage(id, verify.Entry, event.Event{Time: t0.Add(time.Minute), Kind: event.Passage, Reason: verify.OK, CertID: id}); err != nil {
		t.Fatal(err)
	}
	j.DeleteEventsThrough(5) // not written by any record
	j.Close()
	j, err = OpenLogJournal(dir, 8*seglog.BlockSize)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	evs, _ := j.Events(0, 100)
	if len(evs) != 3 || evs[0].Seq != 5 || evs[2].Seq != 7 || evs[2].Kind != event.Passage {
		t.Fatalf("after reopen, events %v: want 5, 6 and the passage 7", evs)
	}
	if at, ok := j.LastPass(&id, verify.Entry); !ok || !at.Equal(t0.Add(time.Minute)) {
		t.Errorf("last passage %v %v", at, ok)
	}
	if seq, err := j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm}); err != nil || seq != 8 {
		t.Errorf("next event: seq %d, %v", seq, err)
	}
}

func cert(i int, at time.Time) verify.Cert {
	c := verify.Cert{NotBefore: at, NotAfter: at.Add(24 * time.Hour)}
	c.ID[0], c.ID[1] = byte(i>>8), byte(i)
	c.Key[0], c.Key[1] = 1, byte(i)
	return c
}

// certStore is what TestCertStores holds both candidate stores to.
type certStore interface {
	Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState, now time.Time) error
	Apply(b *cache.Batch) (bool, error)
	Lookup(id verify.CertID) (verify.Record, bool, error)
	Maintain(now time.Time, retention time.Duration) error
	Close() error
}

// TestCertStores: batches over a full sync, a revocation before its
// certificate and one after, the maintenance (a rebuild, a run written)
// that leaves the expired out, reopens that replay the delta: each store
// answers as cache.Cache would.
func TestCertStores(t *testing.T) {
	for name, open := range map[string]func(dir string) (certStore, error){
		"delta": func(dir string) (certStore, error) { return OpenDeltaCerts(dir, 8*seglog.BlockSize, time.Hour) },
		"runs":  func(dir string) (certStore, error) { return OpenRunCerts(dir, 8*seglog.BlockSize, time.Hour) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			d, err := open(dir)
			if err != nil {
				t.Fatal(err)
			}
			fs := cache.FeedState{Epoch: 7, IssuerTime: t0, SyncedAt: t0}
			full := []verify.Cert{cert(1, t0.Add(-30*time.Hour)), cert(3, t0), cert(5, t0)}
			if err := d.Load(func(yield func([]verify.Cert) bool) { yield(full) }, 3, fs, t0); err != nil {
				t.Fatal(err)
			}
			fs.IssuerTime = t0.Add(time.Minute)
			b := &cache.Batch{From: 3, Next: 6, Upserts: []verify.Cert{cert(4, t0)}, Revokes: []verify.CertID{cert(3, t0).ID, cert(9, t0).ID}, Feed: fs}
			if _, err := d.Apply(b); err != nil {
				t.Fatal(err)
			}
			b = &cache.Batch{From: 6, Next: 7, Upserts: []verify.Cert{cert(9, t0)}, Feed: fs}
			if _, err := d.Apply(b); err != nil {
				t.Fatal(err)
			}
			if skipped, err := d.Apply(b); err != nil || !skipped {
				t.Errorf("the same batch again: skipped %v, %v", skipped, err)
			}
			if _, err := d.Apply(&cache.Batch{From: 9, Next: 10, Upserts: []verify.Cert{cert(8, t0)}, Feed: fs}); err == nil {
				t.Error("a batch after a gap was applied")
			}
			want := func(d certStore, when string) {
				t.Helper()
				for _, c := range []struct {
					i              int
					found, revoked bool
				}{{3, true, true}, {4, true, false}, {5, true, false}, {9, true, true}, {2, false, false}} {
					r, ok, err := d.Lookup(cert(c.i, t0).ID)
					if err != nil || ok != c.found || ok && (r.Revoked != c.revoked || r.Key != cert(c.i, t0).Key) {
						t.Errorf("%s: cert %d: found %v revoked %v (%v), want %v %v", when, c.i, ok, r.Revoked, err, c.found, c.revoked)
					}
				}
			}
			want(d, "delta")
			d.Close()
			if d, err = open(dir); err != nil {
				t.Fatal(err)
			}
			want(d, "delta replayed")
			if err := d.Maintain(t0.Add(time.Hour), 4*time.Hour); err != nil {
				t.Fatal(err)
			}
			want(d, "maintained")
			if name == "delta" {
				if _, ok, _ := d.Lookup(cert(1, t0).ID); ok {
					t.Error("a certificate expired 5 h ago survived a rebuild with a retention of 4 h")
				}
			}
			d.Close()
			if d, err = open(dir); err != nil {
				t.Fatal(err)
			}
			want(d, "maintained and reopened")
			if _, err := d.Apply(&cache.Batch{From: 7, Next: 8, Upserts: []verify.Cert{cert(3, t0)}, Feed: fs}); err != nil {
				t.Fatal(err)
			}
			if r, _, _ := d.Lookup(cert(3, t0).ID); !r.Revoked {
				t.Error("an upsert after the maintenance brought a revoked certificate back")
			}
			// A day and more later everything of the full sync and the
			// first batches has expired beyond the retention.
			if _, err := d.Apply(&cache.Batch{From: 8, Next: 9, Upserts: []verify.Cert{cert(20, t0.Add(30*time.Hour))}, Feed: fs}); err != nil {
				t.Fatal(err)
			}
			if err := d.Maintain(t0.Add(30*time.Hour), 4*time.Hour); err != nil {
				t.Fatal(err)
			}
			if err := d.Maintain(t0.Add(32*time.Hour), 4*time.Hour); err != nil {
				t.Fatal(err)
			}
			if _, ok, _ := d.Lookup(cert(5, t0).ID); ok {
				t.Error("a certificate expired 8 h ago is still held with a retention of 4 h")
			}
			if r, ok, _ := d.Lookup(cert(20, t0).ID); !ok || r.NotBefore != t0.Add(30*time.Hour) {
				t.Error("the newest certificate is gone")
			}
			d.Close()
		})
	}
}

// TestIndex: the delta's index against a map, through growth, replaced
// records, a build from the slab (as at open) and a compaction (as after a
// rebuild).
func TestIndex(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	x := newIndex()
	want := map[string][]byte{}
	lsnOf := map[string]uint64{}
	var ids [][]byte
	check := func(when string) {
		t.Helper()
		if x.len() != len(want) {
			t.Fatalf("%s: %d indexed, want %d", when, x.len(), len(want))
		}
		for id, rec := range want {
			got, ok := x.get([]byte(id))
			if !ok || string(got) != string(rec) {
				t.Fatalf("%s: %x: %x %v, want %x", when, id, got, ok, rec)
			}
		}
		if _, ok := x.get(make([]byte, 16)); ok {
			t.Fatalf("%s: an ID never put is found", when)
		}
	}
	for lsn := uint64(1); lsn <= 5000; lsn++ {
		id := make([]byte, 16)
		if len(ids) > 0 && r.IntN(4) == 0 {
			id = ids[r.IntN(len(ids))] // a record replaced
		} else {
			binary.BigEndian.PutUint64(id, r.Uint64()|1)
			binary.BigEndian.PutUint64(id[8:], r.Uint64())
			ids = append(ids, id)
		}
		rec := make([]byte, recordLen)
		binary.BigEndian.PutUint64(rec, lsn)
		x.put(id, rec, lsn)
		want[string(id)], lsnOf[string(id)] = rec, lsn
	}
	check("put")
	y := &index{seed: x.seed + 2} // as at open: the log replayed, then built
	for i := range x.entries() {
		e := x.slab[i*entryLen : (i+1)*entryLen]
		if i%3 == 0 { // an older record of the same ID, earlier in the log
			old := append([]byte(nil), e...)
			old[verify.CertIDLen] ^= 0xff
			y.add(old, 0)
		}
		y.add(e, x.lsn[i])
	}
	y.build()
	x = y
	check("built")
	x.compact(2500)
	for id, l := range lsnOf {
		if l <= 2500 {
			delete(want, id)
		}
	}
	check("compacted")
}
