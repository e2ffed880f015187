package cache_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/verify"
)

// holdsKey reports whether data holds key raw, in hex or in base64.
func holdsKey(data []byte, key verify.Key) bool {
	return bytes.Contains(data, key[:]) || bytes.Contains(data, []byte(hex.EncodeToString(key[:]))) ||
		bytes.Contains(data, []byte(base64.StdEncoding.EncodeToString(key[:])[:40]))
}

// TestNoKeyInTheFile: after a full load and a log page, no certificate key
// is in the cache file, raw, hex or base64; the same certificates in a
// cache of schema 2 are all found (so the search can fail).
func TestNoKeyInTheFile(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 2000, 2000)
	mustApply(t, c, b)
	mustApply(t, c, &cache.Batch{From: 2000, Next: 2001, Revokes: []verify.CertID{b.Upserts[7].ID}, Feed: b.Feed})
	data, err := os.ReadFile(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	for _, cert := range b.Upserts {
		if holdsKey(data, cert.Key) {
			t.Fatalf("cert %s: its key is in the cache file", cert.ID)
		}
	}
	legacy := t.TempDir() + "/legacy.db"
	if err := cachetest.WriteLegacy(legacy, b.Upserts, 2000, 1); err != nil {
		t.Fatal(err)
	}
	ld, _ := os.ReadFile(legacy)
	for _, cert := range b.Upserts {
		if !holdsKey(ld, cert.Key) {
			t.Fatalf("control: cert %s not found in the plaintext cache", cert.ID)
		}
	}
}

// flip changes one byte of the stored value of key in bucket, in place.
// flipJournal XORs byte at of what the journal j holds under key in
// bucket with x, on the disk (read at its next open) and in its memory.
func flipJournal(t *testing.T, j *cache.Journal, bucket string, key []byte, at int, x byte) {
	t.Helper()
	if err := cachetest.DamageJournalRecord(j.Path(), bucket, key, at, x); err != nil {
		t.Fatal(err)
	}
	cache.FlipJournalMemory(j, bucket, key, at, x)
}

func flip(t *testing.T, db *bolt.DB, bucket string, key []byte, at int, x byte) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		v := bytes.Clone(tx.Bucket([]byte(bucket)).Get(key))
		if v == nil {
			t.Fatalf("no %s/%x", bucket, key)
		}
		v[at] ^= x
		return tx.Bucket([]byte(bucket)).Put(key, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// The byte offsets of a certificate record, by field.
var recordFields = []struct {
	name string
	at   int
}{
	{"flags", 0},
	{"not_before", 1 + 7},
	{"not_after", 9 + 7},
	{"nonce", cache.HeadLen + 3},
	{"sealed key", cache.HeadLen + cache.NonceLen + 5},
	{"tag", cache.RecordLen - 1},
}

// TestRecordDamageIsNeverUsed: one byte changed in any field of a
// certificate record (a valid one, a revoked one, a revocation stored
// before its certificate) fails authentication: the lookup is an
// *AuthError naming the certificate, the verifier decides nothing (never
// a grant), and the feed's record, applied again, heals it.
func TestRecordDamageIsNeverUsed(t *testing.T) {
	now := t0.Add(time.Hour)
	for _, kind := range []string{"valid", "revoked", "revocation only"} {
		for _, f := range recordFields {
			if kind == "revocation only" && f.name == "sealed key" {
				continue // it has no key
			}
			xs := []byte{0x01, 0x80}
			if f.name == "flags" {
				// The revocation bit: the byte the tester
				// cleared. (Another bit is an unknown flag or the
				// wrong length: damage the integrity check sees.)
				xs = []byte{cache.FlagRevoke}
			}
			for _, x := range xs {
				s := cachetest.OpenStore(t)
				b := cachetest.Batch(0, 10, 10)
				cert := b.Upserts[3]
				mustApply(t, s.Cache, b)
				at := f.at
				switch kind {
				case "revoked":
					mustApply(t, s.Cache, &cache.Batch{From: 10, Next: 11, Revokes: []verify.CertID{cert.ID}, Feed: b.Feed})
					cert.Revoked = true
				case "revocation only":
					cert = cachetest.Cert(99, 100) // never upserted
					mustApply(t, s.Cache, &cache.Batch{From: 10, Next: 11, Revokes: []verify.CertID{cert.ID}, Feed: b.Feed})
					if f.name == "tag" {
						at = cache.NoKeyLen - 1
					}
				}
				if err := s.Cache.WriteRun(t0); err != nil { // the records into the file
					t.Fatal(err)
				}
				if err := cache.FlipCert(s.Cache, cert.ID[:], at, x); err != nil {
					t.Fatal(err)
				}
				_, _, err := s.Cache.Lookup(cert.ID, verify.Entry)
				var ae *cache.AuthError
				if !errors.As(err, &ae) || !errors.Is(err, cache.ErrAuth) || ae.Bucket != "certs" || !bytes.Equal(ae.Key, cert.ID[:]) {
					t.Fatalf("%s record, %s ^ %#x: lookup %v, want an AuthError naming it", kind, f.name, x, err)
				}
				if id, ok := ae.CertID(); !ok || id != cert.ID {
					t.Fatalf("AuthError.CertID = %v, %v", id, ok)
				}
				v, err := verify.New(verify.Config{Store: s, Clock: verify.ClockFunc(func() time.Time { return now }),
					Policy: verify.DefaultPolicy(verify.Entry), TrustedAfter: t0.Add(-time.Hour)})
				if err != nil {
					t.Fatal(err)
				}
				tok := verify.NewToken(&cert.Key, cert.ID, verify.StepOf(now))
				d, err := v.Verify([]byte(tok.String()))
				if d.Granted() || d.Reason != verify.Undecided || !errors.Is(err, verify.ErrStore) || !errors.Is(err, cache.ErrAuth) {
					t.Fatalf("%s record, %s ^ %#x: decision %v, %v; want undecided", kind, f.name, x, d.Reason, err)
				}
				// The group that holds it fails whole: each of its
				// certificates is named.
				if r, err := s.Cache.Authenticate(); err != nil || r.Failed < 1 || !slices.ContainsFunc(r.Bad, func(e *cache.AuthError) bool {
					return e.Record() == "certificate "+cert.ID.String()
				}) {
					t.Fatalf("authenticate: %+v, %v", r, err)
				}
				if kind == "revocation only" {
					continue // the feed no longer has a certificate to heal it with: a resync's sweep drops it
				}
				// Healed: the feed's record replaces it (a snapshot page,
				// as a resync lays it).
				if _, err := s.Cache.ApplySnapshot(&cache.SnapshotPage{Epoch: 0, Snapshot: 11, Upserts: []verify.Cert{cert}, Final: true, Feed: b.Feed}); err != nil {
					t.Fatalf("heal: %v", err)
				}
				r, ok, err := s.Cache.Lookup(cert.ID, verify.Entry)
				if err != nil || !ok || r.Key != cert.Key || r.Revoked != cert.Revoked {
					t.Fatalf("%s record after the heal: %+v %v %v", kind, r, ok, err)
				}
			}
		}
	}
}

// TestKeyMovedToAnotherCert: a certificate's ID changed in its group (its
// key moved to another certificate), or a group moved to another run,
// fails authentication.
func TestKeyMovedToAnotherCert(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 10, 10)
	mustApply(t, c, b)
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	a := b.Upserts[2]
	for _, at := range []int{-16, -1} { // the first and last byte of its ID
		if err := cache.FlipCert(c, a.ID[:], at, 1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Lookup(b.Upserts[5].ID, verify.Entry); !errors.Is(err, cache.ErrAuth) {
			t.Fatalf("ID byte %d changed: %v, want ErrAuth", at, err)
		}
		// Put it back (the ID as changed, changed again).
		moved := a.ID
		moved[16+at] ^= 1
		if err := cache.FlipCert(c, moved[:], at, 1); err != nil {
			t.Fatal(err)
		}
		if r, ok, err := c.Lookup(a.ID, verify.Entry); err != nil || !ok || r.Key != a.Key {
			t.Fatalf("put back: %v %v", ok, err)
		}
	}
	// The same group under another run's number.
	mustApply(t, c, cachetest.Batch(10, 20, 20))
	if err := c.WriteRun(t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var k2, v2, planted []byte
	cache.DB(c).Update(func(tx *bolt.Tx) error {
		bk := tx.Bucket([]byte("groups"))
		cur := bk.Cursor()
		k1, v1 := cur.First()
		k2, v2 = cur.Last()
		k2, v2 = bytes.Clone(k2), bytes.Clone(v2)
		planted = append(bytes.Clone(k2[:8]), k1[8:]...)
		bk.Delete(k2)
		return bk.Put(planted, bytes.Clone(v1))
	})
	var ae *cache.AuthError
	n := 0
	for i := range uint64(20) {
		if _, _, err := c.Lookup(cachetest.Cert(i, 20).ID, verify.Entry); errors.As(err, &ae) {
			n++
		}
	}
	if r, _ := c.Authenticate(); n == 0 && r.Failed == 0 {
		t.Fatal("a group moved to another run authenticates")
	}
	cache.DB(c).Update(func(tx *bolt.Tx) error { // back as it was, for the cleanup's check
		bk := tx.Bucket([]byte("groups"))
		bk.Delete(planted)
		return bk.Put(k2, v2)
	})
	if r, _ := c.Authenticate(); r.Failed != 0 {
		t.Fatalf("put back: %+v", r)
	}
}

// TestRevokeOverDamagedRecord: a revocation for a certificate whose record
// fails authentication replaces it with a revocation without key: the
// certificate is refused from then on.
func TestRevokeOverDamagedRecord(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 10, 10)
	mustApply(t, c, b)
	cert := b.Upserts[4]
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	if err := cache.FlipCert(c, cert.ID[:], 0, 1); err != nil {
		t.Fatal(err)
	}
	res, err := c.Apply(&cache.Batch{From: 10, Next: 11, Revokes: []verify.CertID{cert.ID}, Feed: b.Feed})
	if err != nil || len(res.Replaced) != 1 {
		t.Fatalf("revoke over a damaged record: %+v, %v", res, err)
	}
	if _, ok, err := c.Lookup(cert.ID, verify.Entry); err != nil || ok {
		t.Fatalf("after the revocation: found %v, %v; want refused as unknown", ok, err)
	}
	if _, err := c.ApplySnapshot(&cache.SnapshotPage{Snapshot: 11, Final: true, Upserts: []verify.Cert{cert}, Feed: b.Feed}); err != nil {
		t.Fatal(err)
	}
	if r, ok, err := c.Lookup(cert.ID, verify.Entry); err != nil || !ok || !r.Revoked {
		t.Fatalf("a later upsert undid the revocation: %+v %v %v", r, ok, err)
	}
}

// TestFeedStateDamage: a feed state that fails authentication (it is read
// at the open: the cursor the runs reflect) makes the cache rebuild whole
// at its next open (Unauthentic); Authenticate finds it while the cache
// is open; a full sync writes it anew.
func TestFeedStateDamage(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 10, 10)
	mustApply(t, c, b)
	flip(t, cache.DB(c), "meta", []byte("feed"), 3, 1)
	if r, _ := c.Authenticate(); r.Failed != 1 || r.Bad[0].Record() != "feed state" {
		t.Fatalf("authenticate: %+v", r)
	}
	path := c.Path()
	c.Close()
	_, err := cache.Open(path, cachetest.Options(nil))
	if ce := corruptKind(err); ce == nil || ce.Kind != cache.Unauthentic {
		t.Fatalf("reopen: %v, want an Unauthentic CorruptError", err)
	}
	// While open: a resync writes it anew.
	c2 := cachetest.Open(t, nil)
	mustApply(t, c2, b)
	flip(t, cache.DB(c2), "meta", []byte("feed"), 3, 1)
	if _, err := c2.ApplySnapshot(&cache.SnapshotPage{Epoch: 2, Snapshot: 10, Final: true, Upserts: b.Upserts, Feed: b.Feed}); err != nil {
		t.Fatal(err)
	}
	if fs, err := c2.Feed(); err != nil || fs.Cursor != 10 || fs.Epoch != 2 {
		t.Fatalf("after the resync: %+v, %v", fs, err)
	}
	if r, _ := c2.Authenticate(); r.Failed != 0 {
		t.Fatalf("authenticate after the resync: %+v", r)
	}
	c2 = reopen(t, c2)
	if fs, err := c2.Feed(); err != nil || fs.Cursor != 10 || fs.Epoch != 2 {
		t.Fatalf("reopened after the resync: %+v, %v", fs, err)
	}
}

// TestPassageDamage: a passage that fails authentication refuses its
// certificate's lookups in that direction (never a grant: it cannot be
// known whether the passenger passed within the window), and its repair
// puts a passage at the moment the damage was found: the certificate is
// refused as PASSBACK for one window, then granted.
func TestPassageDamage(t *testing.T) {
	s := cachetest.OpenStore(t)
	b := cachetest.Batch(0, 10, 10)
	mustApply(t, s.Cache, b)
	cert := b.Upserts[1]
	passed := t0.Add(10 * time.Minute)
	if _, err := s.Journal.RecordPassage(cert.ID, verify.Entry, event.Event{Time: passed, Kind: event.Passage, Direction: verify.Entry, CertID: cert.ID}); err != nil {
		t.Fatal(err)
	}
	var pk [17]byte
	copy(pk[:], cert.ID[:])
	pk[16] = byte(verify.Entry)
	for _, at := range []int{2, 8 + 3} { // the time, the MAC
		jpath := s.Journal.Path()
		flipJournal(t, s.Journal, "passback", pk[:], at, 0x40)
		s.Journal.Close()
		j, err := cache.OpenJournal(jpath, cachetest.Options(nil))
		if err != nil {
			t.Fatalf("a journal with one unauthentic passage must open: %v", err)
		}
		t.Cleanup(func() { j.Close() })
		s.Journal = j
		if _, _, err := j.LastPass(&cert.ID, verify.Entry); !errors.Is(err, cache.ErrAuth) {
			t.Fatalf("byte %d: last passage %v, want ErrAuth", at, err)
		}
		if _, _, err := s.Lookup(cert.ID, verify.Entry); !errors.Is(err, cache.ErrAuth) {
			t.Fatalf("byte %d: store lookup %v, want ErrAuth", at, err)
		}
		if _, _, err := j.LastPass(&cert.ID, verify.Exit); err != nil {
			t.Fatalf("the other direction: %v", err)
		}
		if r, _ := j.Authenticate(); r.Failed != 1 || r.Bad[0].Record() != "passage of "+cert.ID.String()+" (entry)" {
			t.Fatalf("authenticate: %+v", r)
		}
		// The purge keeps it, for its repair.
		if n, err := j.PurgePassages(t0.Add(48*time.Hour), time.Hour); err != nil || n != 0 {
			t.Fatalf("purge: %d, %v", n, err)
		}
		found := t0.Add(3 * time.Hour)
		if ok, err := j.RepairPassage(cert.ID, verify.Entry, found); err != nil || !ok {
			t.Fatalf("repair: %v, %v", ok, err)
		}
		if ok, err := j.RepairPassage(cert.ID, verify.Entry, found.Add(time.Hour)); err != nil || ok {
			t.Fatalf("second repair: %v, %v; want nothing to do", ok, err)
		}
		r, ok, err := s.Lookup(cert.ID, verify.Entry)
		if err != nil || !ok || !r.LastPass.Equal(found) {
			t.Fatalf("after the repair: %v %v %v", r.LastPass, ok, err)
		}
	}
}

// TestEventDamage: an event that fails authentication is named by Events,
// and is not uploaded as it is: an alarm under its number says it was
// damaged.
func TestEventDamage(t *testing.T) {
	j := cachetest.OpenJournal(t, nil)
	for i := range 5 {
		if _, err := j.AppendEvent(event.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, Detail: "fine"}); err != nil {
			t.Fatal(err)
		}
	}
	flipJournal(t, j, "events", binary.BigEndian.AppendUint64(nil, 3), 2, 1) // reason OK → another
	if _, err := j.Events(0, 10); !errors.Is(err, cache.ErrAuth) || !bytes.Contains([]byte(err.Error()), []byte("event 3")) {
		t.Fatalf("events: %v, want an AuthError naming event 3", err)
	}
	now := t0.Add(time.Hour)
	evs, bad, err := j.UploadBatch(10, now)
	if err != nil || len(evs) != 5 || len(bad) != 1 || bad[0] != 3 {
		t.Fatalf("upload batch: %d events, damaged %v, %v", len(evs), bad, err)
	}
	if e := evs[2]; e.Seq != 3 || e.Kind != event.Alarm || !e.Time.Equal(now) || e.Validate() != nil {
		t.Fatalf("event 3 uploaded as %+v, want an alarm in its place", e)
	}
	if e := evs[3]; e.Seq != 4 || e.Detail != "fine" {
		t.Fatalf("event 4 uploaded as %+v", e)
	}
}

// TestSettle: after a resync, a record that authenticates is healed; one
// that still fails (the feed no longer holds it) is deleted, so its
// certificate is refused as unknown rather than undecided.
func TestSettle(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 10, 10)
	mustApply(t, c, b)
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	gone := cachetest.Cert(99, 100).ID
	mustApply(t, c, &cache.Batch{From: 10, Next: 11, Revokes: []verify.CertID{gone}, Feed: b.Feed})
	if err := c.WriteRun(t0.Add(time.Hour)); err != nil { // a run of its own
		t.Fatal(err)
	}
	if err := cache.FlipCert(c, gone[:], 5, 1); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[verify.CertID]string{b.Upserts[0].ID: "healed", gone: "deleted", cachetest.Cert(98, 100).ID: "absent"} {
		if got, err := c.Settle(id); err != nil || got != want {
			t.Errorf("settle %s: %q, %v; want %q", id, got, err, want)
		}
	}
	if _, ok, err := c.Lookup(gone, verify.Entry); err != nil || ok {
		t.Fatalf("after the settle: %v %v, want unknown", ok, err)
	}
}

// TestRenumber: the events not yet uploaded get numbers after the
// issuer's last, in their order, each sealed under its new number (read
// back authenticated, after a reopen too); one that failed authentication
// becomes an alarm; the next event follows them.
func TestRenumber(t *testing.T) {
	j := cachetest.OpenJournal(t, nil)
	for i := range 5 {
		if _, err := j.AppendEvent(event.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, Detail: fmt.Sprint("event ", i+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := j.DeleteEventsThrough(1); err != nil {
		t.Fatal(err)
	}
	flipJournal(t, j, "events", binary.BigEndian.AppendUint64(nil, 4), 2, 1)
	now := t0.Add(time.Hour)
	if n, err := j.Renumber(3, now); err != nil || n != 4 {
		t.Fatalf("renumber after 3: %d %v, want 4 events", n, err)
	}
	j = reopenJournal(t, j)
	evs, err := j.Events(0, 10)
	if err != nil || len(evs) != 4 {
		t.Fatalf("events after the renumbering: %d %v", len(evs), err)
	}
	for i, want := range []string{"event 2", "event 3", "event 4 failed its integrity check", "event 5"} {
		e := evs[i]
		if e.Seq != uint64(4+i) || !strings.HasPrefix(e.Detail, want) {
			t.Errorf("event %d: seq %d %q, want seq %d %q", i, e.Seq, e.Detail, 4+i, want)
		}
	}
	if e := evs[2]; e.Kind != event.Alarm || !e.Time.Equal(now) {
		t.Errorf("the damaged event became %+v, want an alarm at %v", e, now)
	}
	if e := evs[3]; e.Kind != event.Decision || !e.Time.Equal(t0.Add(4*time.Second)) {
		t.Errorf("event 5 renumbered as %+v: its content must stay", e)
	}
	if seq, err := j.AppendEvent(event.Event{Time: now, Kind: event.Alarm, Detail: "next"}); err != nil || seq != 8 {
		t.Fatalf("the next event: seq %d %v, want 8", seq, err)
	}
}

// TestPassages: the journal's passages since a time, each with its
// certificate, direction and time; one that failed authentication is not
// among them (it is not the journal's to give).
func TestPassages(t *testing.T) {
	j := cachetest.OpenJournal(t, nil)
	ids := []verify.CertID{cachetest.Cert(1, 10).ID, cachetest.Cert(2, 10).ID, cachetest.Cert(3, 10).ID}
	for i, id := range ids {
		at := t0.Add(time.Duration(i) * 10 * time.Minute)
		if _, err := j.RecordPassage(id, verify.Exit, event.Event{Time: at, Kind: event.Passage, Direction: verify.Exit, CertID: id}); err != nil {
			t.Fatal(err)
		}
	}
	got := j.Passages(t0.Add(10 * time.Minute))
	slices.SortFunc(got, func(a, b cache.Passage) int { return a.At.Compare(b.At) })
	if len(got) != 2 || got[0].Cert != ids[1] || got[1].Cert != ids[2] || got[0].Dir != verify.Exit || !got[1].At.Equal(t0.Add(20*time.Minute)) {
		t.Fatalf("passages since 10 min: %+v", got)
	}
	pk := append(ids[2][:], byte(verify.Exit))
	flipJournal(t, j, "passback", pk, 2, 0x40)
	if got := reopenJournal(t, j).Passages(t0); len(got) != 2 || slices.ContainsFunc(got, func(p cache.Passage) bool { return p.Cert == ids[2] }) {
		t.Fatalf("passages with one unauthentic: %+v, want the two others", got)
	}
}
