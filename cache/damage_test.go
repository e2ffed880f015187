package cache_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
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

// TestFaultIsCorruption: a read through the memory map at an address the
// file no longer backs (here: the file cut short under an open cache, as a
// failing disk or another process could) raises SIGBUS. Without
// debug.SetPanicOnFault that is a fatal "fault" no recover catches; the
// cache turns it into ErrCorrupt.
func TestFaultIsCorruption(t *testing.T) {
	c := cachetest.Open(t, nil)
	b := cachetest.Batch(0, 5000, 5000)
	mustApply(t, c, b)
	if err := c.WriteRun(t0); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	orig, err := os.ReadFile(c.Path())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.WriteFile(c.Path(), orig, 0o600) }) // whole again for the cleanup's check
	if err := os.Truncate(c.Path(), int64(os.Getpagesize())*4); err != nil {
		t.Fatal(err)
	}
	faults := 0
	for i := range uint64(5000) {
		_, _, err := c.Lookup(cachetest.Cert(i, 5000).ID, verify.Entry)
		var ce *cache.CorruptError
		switch {
		case errors.As(err, &ce):
			faults++
		case err != nil:
			t.Fatalf("lookup %d: %v, want a CorruptError", i, err)
		}
	}
	if faults == 0 {
		t.Fatalf("no lookup met the cut (file was %d bytes)", fi.Size())
	}
	if _, err := c.Live(t0); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("count of a cut file's live certificates: %v, want ErrCorrupt", err)
	}
	if err := c.Check(); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("check of a cut file: %v, want ErrCorrupt", err)
	}
	t.Logf("%d of 5000 lookups faulted and reported it", faults)
}

// fixture is a closed cache of n certificates and a closed journal of
// events events and a passage for each of the first passes certificates,
// as the agent leaves them.
type fixture struct {
	cache, journal string
	certs          []verify.Cert
	passes         int
}

func newFixture(t testing.TB, n, events, passes int) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{cache: filepath.Join(dir, "cache.db"), journal: filepath.Join(dir, "journal"), passes: passes}
	c, err := cache.Open(f.cache, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	for from := 0; from < n; from += 1000 {
		b := cachetest.Batch(uint64(from), uint64(min(from+1000, n)), uint64(n))
		f.certs = append(f.certs, b.Upserts...)
		if _, err := c.Apply(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WriteRun(t0); err != nil { // the certificates in the file
		t.Fatal(err)
	}
	c.Close()
	j, err := cache.OpenJournal(f.journal, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	for i := range events {
		e := event.Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: event.Decision, Reason: verify.OK,
			Direction: verify.Entry, CertID: f.certs[i%n].ID, Detail: fmt.Sprintf("event %d", i)}
		if i < passes {
			_, err = j.RecordPassage(f.certs[i].ID, verify.Entry, e)
		} else {
			_, err = j.AppendEvent(e)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	return f
}

// overwrite writes data at off in the file at path.
func overwrite(t testing.TB, path string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

// TestDamagedFilesAreRefusedOrWhole damages copies of a real cache and
// journal at seeded random places (runs of random bytes, as a failing
// disk or a stray write leaves) and opens each as the agent does: every
// outcome is a CorruptError or a file that is whole (its check passes,
// and it stays whole through writes and a reopen), and the check without
// bbolt (CheckFile) agrees with the open. Nothing crashes.
func TestDamagedFilesAreRefusedOrWhole(t *testing.T) {
	f := newFixture(t, 3000, 400, 50)
	// A seed of each run's own, and seeds that once found a fault:
	// 1795994201853661173 damages the newest meta page, so bbolt opens the
	// file as it stood before its run was listed (no runs, the run's
	// groups orphans, one of them damaged); a lookup answered "not held"
	// after the check had found the damage.
	for _, seed := range []uint64{uint64(time.Now().UnixNano()), 1795994201853661173} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { damageTrials(t, f, seed) })
	}
}

// damageTrials is TestDamagedFilesAreRefusedOrWhole's trials from seed.
func damageTrials(t *testing.T, f *fixture, seed uint64) {
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	base := map[string][]byte{}
	segs, _ := filepath.Glob(filepath.Join(f.journal, "journal.*.log"))
	if len(segs) != 1 {
		t.Fatalf("journal segments %v, want one", segs)
	}
	for _, p := range []string{f.cache, segs[0]} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		base[p] = b
	}
	refused, whole := 0, 0
	for trial := range 120 {
		src := []string{f.cache, segs[0]}[trial%2]
		b := bytes.Clone(base[src])
		span := len(b)
		if src != f.cache {
			span = 460 * 4096 // the records: an event or a passage a block; zeros after
		}
		for range 1 + r.IntN(3) {
			at := r.IntN(span)
			for i := range 1 + r.IntN(32) {
				if at+i < len(b) {
					b[at+i] = byte(r.Uint32())
				}
			}
		}
		path := filepath.Join(t.TempDir(), filepath.Base(src))
		file := path
		if src != f.cache {
			path = filepath.Join(t.TempDir(), "journal")
			file = filepath.Join(path, filepath.Base(src))
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_, checkErr := cache.CheckFile(path)
		var openErr error
		if src == f.cache {
			openErr = exerciseCache(t, path, f)
		} else {
			openErr = exerciseJournal(t, path)
		}
		// The check needs no key, so it cannot see a record that fails
		// authentication; the open refuses a file whose cursor or key
		// check value does, as Unauthentic.
		if unauth := corruptKind(openErr); checkErr == nil && unauth != nil && unauth.Kind == cache.Unauthentic {
			checkErr = openErr
		}
		if (checkErr == nil) != (openErr == nil) {
			t.Fatalf("trial %d (%s): CheckFile says %v, the open says %v", trial, filepath.Base(src), checkErr, openErr)
		}
		if openErr != nil {
			if !errors.Is(openErr, cache.ErrCorrupt) {
				t.Fatalf("trial %d: %v, want ErrCorrupt", trial, openErr)
			}
			refused++
		} else {
			whole++
		}
		// A salvage reads what it can of any file.
		j := cachetest.OpenJournal(t, nil)
		if _, err := j.Salvage(path, t0); err != nil {
			t.Fatalf("trial %d: salvage: %v", trial, err)
		}
	}
	t.Logf("%d damaged files refused, %d whole (the bytes hit free space or record data)", refused, whole)
}

// exerciseCache opens a possibly damaged cache for writing and, when it
// opens, uses it as the agent does; the file must then stay whole. Damage
// in the certificates' tree may be found after the open (Checked): the
// cache must then refuse every lookup and write.
func exerciseCache(t *testing.T, path string, f *fixture) error {
	t.Helper()
	release := cache.HoldChecks(t)
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		return err
	}
	for _, cert := range f.certs[:200] {
		c.Lookup(cert.ID, verify.Entry) // before the check ends: a damaged page is an error; none panics
	}
	release()
	if err := usedAfterCheck(t, c, f.certs[0].ID); err != nil {
		return err
	}
	if err := c.Check(); err != nil {
		t.Fatalf("opened and checked, but its check fails: %v", err)
	}
	for _, cert := range f.certs[:200] {
		c.Lookup(cert.ID, verify.Entry) // a damaged record is an error; none panics
	}
	if _, err := c.Stats(); err != nil && !errors.Is(err, cache.ErrCorrupt) {
		t.Fatal(err)
	}
	fs, _ := c.Feed()
	c.Apply(cachetest.Batch(fs.Cursor, fs.Cursor+100, 1<<40))
	c.Purge(t0.Add(72*time.Hour), 0)
	c.Close()
	if _, err := cache.CheckFile(path); err != nil {
		t.Fatalf("a file that opened whole is not whole after writes: %v", err)
	}
	return nil
}

// usedAfterCheck waits for the check of c's certificates and returns what
// it found; when it found damage, c must refuse a lookup and a write (and
// is closed).
func usedAfterCheck(t testing.TB, c *cache.Cache, id verify.CertID) error {
	t.Helper()
	err := c.Checked()
	if err == nil {
		return nil
	}
	if !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("the check after the open: %v, want ErrCorrupt", err)
	}
	if _, found, lerr := c.Lookup(id, verify.Entry); !errors.Is(lerr, cache.ErrCorrupt) {
		t.Fatalf("a lookup in a cache found damaged (%v): %v found %v, want ErrCorrupt", err, lerr, found)
	}
	fs, _ := c.Feed()
	if _, aerr := c.Apply(cachetest.Batch(fs.Cursor, fs.Cursor+10, 1<<40)); !errors.Is(aerr, cache.ErrCorrupt) {
		t.Fatalf("a write to a cache found damaged: %v, want ErrCorrupt", aerr)
	}
	if cerr := c.Close(); cerr != nil {
		t.Fatal(cerr)
	}
	return err
}

func exerciseJournal(t *testing.T, path string) error {
	t.Helper()
	j, err := cache.OpenJournal(path, cachetest.Options(nil))
	if err != nil {
		return err
	}
	if err := j.Check(); err != nil {
		t.Fatalf("opened, but its check fails: %v", err)
	}
	j.Backlog()
	evs, _ := j.Events(0, 1000)
	j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm, Detail: "after"})
	j.RecordPassage(cachetest.Cert(1, 2).ID, verify.Exit, event.Event{Time: t0, Kind: event.Passage})
	if len(evs) > 10 {
		j.DeleteEventsThrough(evs[10].Seq)
	}
	j.PurgePassages(t0.Add(time.Hour), time.Minute)
	j.Close()
	if _, err := cache.CheckFile(path); err != nil {
		t.Fatalf("a journal that opened whole is not whole after writes: %v", err)
	}
	return nil
}

// TestSalvageCountsLostEvents: a journal with one record of events
// destroyed in its middle (and some events already acknowledged) is
// refused; a salvage copies every other event, counts exactly the one
// destroyed as lost, and continues the numbering after the last one.
func TestSalvageCountsLostEvents(t *testing.T) {
	f := newFixture(t, 100, 500, 30)
	j, err := cache.OpenJournal(f.journal, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.DeleteEventsThrough(40); err != nil { // the issuer has 1..40
		t.Fatal(err)
	}
	// The acknowledgement rides on the next record.
	if _, err := j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm, Detail: "after the upload"}); err != nil {
		t.Fatal(err)
	}
	want, err := j.Events(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	segs, _ := filepath.Glob(filepath.Join(f.journal, "journal.*.log"))
	// Record 1 is the journal's first (its key check value), then one
	// record per event: event 100's is the 101st block.
	overwrite(t, segs[0], 100*4096, bytes.Repeat([]byte{0xEE}, 4096))
	if _, err := cache.OpenJournal(f.journal, cachetest.Options(nil)); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("open of the damaged journal: %v, want ErrCorrupt", err)
	}
	if _, err := cache.CheckFile(f.journal); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("check of the damaged journal: %v, want ErrCorrupt", err)
	}
	moved, err := cache.Quarantine(f.journal, t0)
	if err != nil {
		t.Fatal(err)
	}
	nj, err := cache.OpenJournal(f.journal, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer nj.Close()
	res, err := nj.Salvage(moved, t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := nj.Events(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	lost := len(want) - len(got)
	if lost != 1 || res.Events != len(got) || res.Lost != lost || !res.LostExact || res.NextSeq != 502 {
		t.Fatalf("salvage %+v; %d of %d events read back", res, len(got), len(want))
	}
	byseq := map[uint64]event.Event{}
	for _, e := range want {
		byseq[e.Seq] = e
	}
	for _, e := range got {
		if w, ok := byseq[e.Seq]; !ok || w != e {
			t.Fatalf("salvaged event %d is %+v, was %+v", e.Seq, e, w)
		}
	}
	if seq, err := nj.AppendEvent(event.Event{Time: t0, Kind: event.Alarm}); err != nil || seq != 502 {
		t.Fatalf("next event: seq %d, %v; want 502", seq, err)
	}
	// The passages were in other records: the anti-passback state is kept.
	s := &cache.Store{Cache: openCache(t, f.cache), Journal: nj}
	if r, _, err := s.Lookup(f.certs[7].ID, verify.Entry); err != nil || r.LastPass.IsZero() {
		t.Fatalf("passage of cert 7 after the salvage: %v %v", r.LastPass, err)
	}
}

// TestSalvageNeverReusesNumbers: with a journal.db's (schema 1 or 2, as
// a migration may find one damaged) root page destroyed
// (its sequence and acknowledgement unreadable in the newest tree), and
// with both meta pages destroyed (nothing readable), the new journal
// numbers its events past anything the old one can have used.
func TestSalvageNeverReusesNumbers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wreck func(t *testing.T, path string)
	}{
		{"root page", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path)
			ps := os.Getpagesize()
			m := b[16:]
			if binary.LittleEndian.Uint64(b[ps+16+48:]) > binary.LittleEndian.Uint64(m[48:]) {
				m = b[ps+16:]
			}
			root := int64(binary.LittleEndian.Uint64(m[16:]))
			overwrite(t, path, root*int64(ps), bytes.Repeat([]byte{0xEE}, 64))
		}},
		{"both meta pages", func(t *testing.T, path string) {
			ps := os.Getpagesize()
			overwrite(t, path, 0, bytes.Repeat([]byte{0xEE}, 2*ps))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "journal.db")
			var evs []event.Event
			for i := range 300 {
				evs = append(evs, event.Event{Seq: uint64(i + 1), Time: t0.Add(time.Duration(i) * time.Second), Kind: event.Alarm, Detail: fmt.Sprintf("event %d", i)})
			}
			if err := cache.WriteJournalV1(path, evs, 300, nil); err != nil {
				t.Fatal(err)
			}
			tc.wreck(t, path)
			if _, err := cache.CheckFile(path); !errors.Is(err, cache.ErrCorrupt) {
				t.Fatalf("check: %v, want ErrCorrupt", err)
			}
			j := cachetest.OpenJournal(t, nil)
			now := time.Now()
			res, err := j.Salvage(path, now)
			if err != nil {
				t.Fatal(err)
			}
			if res.NextSeq <= 300 {
				t.Fatalf("salvage %+v: the next event would reuse a number the old journal used", res)
			}
			if res.LostExact && res.Events+res.Lost != 300 {
				t.Fatalf("salvage %+v: exact, but %d+%d != 300", res, res.Events, res.Lost)
			}
			t.Logf("salvage %+v", res)
		})
	}
}

func openCache(t *testing.T, path string) *cache.Cache {
	t.Helper()
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestQuarantine: a damaged file moves aside under its time, and only the
// newest three such copies are kept.
func TestQuarantine(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	var moved []string
	for i := range 5 {
		os.WriteFile(path, []byte{byte(i)}, 0o600)
		m, err := cache.Quarantine(path, t0.Add(time.Duration(i)*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		moved = append(moved, m)
	}
	if want := path + ".damaged-20261123T120000Z"; moved[4] != want {
		t.Fatalf("moved to %s, want %s", moved[4], want)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the damaged file is still in place: %v", err)
	}
	kept, _ := filepath.Glob(path + ".damaged-*")
	if !slices.Equal(kept, moved[2:]) {
		t.Fatalf("kept %v, want the newest three %v", kept, moved[2:])
	}
	// Two in the same second keep both.
	os.WriteFile(path, []byte{9}, 0o600)
	if m, err := cache.Quarantine(path, t0.Add(4*time.Hour)); err != nil || m != moved[4]+"-2" {
		t.Fatalf("second in the same second: %s, %v", m, err)
	}
}

// TestFirstKeyMustBeItsParents: a leaf's first key changed on the disk,
// still in order between its neighbours, is damage: bbolt finds a page in
// its parent by that key when it writes the page again, and with another
// key it added the page to its parent a second time and freed the page of
// the old entry, which the tree still used (a purge then left a page free
// and in use). A group's key is also its last ID (group.go), so the check
// has two reasons to refuse it; either way it refuses the file before
// bbolt writes to it.
func TestFirstKeyMustBeItsParents(t *testing.T) {
	f := newFixture(t, 3000, 0, 0)
	pages := cachetest.LeavesInUse(t, f.cache, 24, 1)
	if len(pages) < 3 {
		t.Fatalf("%d leaf pages of groups, want at least 3", len(pages))
	}
	b, err := os.ReadFile(f.cache)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	off := pages[1] * ps
	at := off + 16
	k0 := b[at+int(binary.LittleEndian.Uint32(b[at+4:])):][:24]
	k0[23]-- // a key after the group before, before its own
	if err := os.WriteFile(f.cache, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = cache.CheckFile(f.cache)
	if ce := corruptKind(err); ce == nil || ce.Page != uint64(pages[1]) {
		t.Fatalf("check of a leaf whose first key moved: %v, want damage on page %d", err, pages[1])
	}
	// The agent's open leaves the certificates to the check beside the
	// gate, which finds it before anything is written.
	c, err := cache.Open(f.cache, cachetest.Options(nil))
	if err != nil {
		t.Fatalf("the agent's open: %v (the certificates are checked after it)", err)
	}
	if err := usedAfterCheck(t, c, f.certs[0].ID); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("the check of the certificates: %v, want the damage", err)
	}
}
