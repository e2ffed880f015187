package cache_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
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

	bolt "go.etcd.io/bbolt"
)

// The upgrade from a release whose files were not sealed, cut by power at
// random instants: the journal.db of schema 1 is moved into the journal's
// log (one checkpoint, then renamed journal.db.migrated), the cache of schema 2 rebuilt from the feed
// into a new file that replaces it once it holds a full sync. The writer
// is this test binary again, with rebuildEnv naming the directory; it
// does what the agent does at start, and reports each step.
const (
	rebuildEnv    = "GATEAGENT_REBUILD_DIR"
	rebuildCerts  = 6000
	rebuildPage   = 250
	rebuildEvents = 12000
)

func rebuildFixture() (certs []verify.Cert, events []event.Event, passes map[[17]byte]int64) {
	certs = cachetest.Batch(0, rebuildCerts, rebuildCerts).Upserts
	for seq := uint64(1); seq <= rebuildEvents; seq++ {
		events = append(events, event.Event{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Millisecond), Kind: event.Decision,
			Reason: verify.OK, Direction: verify.Entry, CertID: certs[seq%rebuildCerts].ID, Detail: "before sealing"})
	}
	passes = map[[17]byte]int64{}
	for i := range 30 {
		var k [17]byte
		copy(k[:], certs[i*7].ID[:])
		k[16] = byte(verify.Entry)
		passes[k] = t0.Add(time.Duration(i) * time.Second).UnixNano()
	}
	return certs, events, passes
}

// rebuildWriter upgrades the files in dir as the agent's start does, and
// reports each step on stdout; it never returns.
func rebuildWriter(dir string) {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "writer:", err); os.Exit(3) }
	certs, _, _ := rebuildFixture()
	path := filepath.Join(dir, "cache.db")
	opts := cachetest.Options(&cache.Options{LockTimeout: 5 * time.Second})
	j, err := cache.OpenJournal(cache.JournalPath(path), opts) // migrates, resuming
	if err != nil {
		fail(err)
	}
	fmt.Println("journal migrated")
	c, err := cache.Open(path, opts)
	if errors.Is(err, cache.ErrPlaintext) {
		o := *opts
		o.Replaces = path
		c, err = cache.Open(cache.RebuildPath(path), &o)
	}
	if err != nil {
		fail(err)
	}
	fs, err := c.Feed()
	if err != nil {
		fail(err)
	}
	from := 0
	if fs.Resync != nil {
		from, _ = slices.BinarySearchFunc(certs, fs.Resync.After, func(c verify.Cert, id verify.CertID) int { return bytes.Compare(c.ID[:], id[:]) })
		from++
	}
	for c.Rebuilding() != "" {
		to := min(from+rebuildPage, len(certs))
		p := &cache.SnapshotPage{Epoch: 5, Snapshot: rebuildCerts, Upserts: certs[from:to], Final: to == len(certs),
			Feed: cache.FeedState{MaxAge: time.Hour, SyncedAt: t0}}
		if from > 0 {
			p.After = certs[from-1].ID
		}
		if _, err := c.ApplySnapshot(p); err != nil {
			fail(err)
		}
		fmt.Printf("page %d\n", to)
		from = to
	}
	c.Close()
	j.Close()
	fmt.Println("done")
	select {}
}

// TestPowerCutDuringUpgrade kills the upgrade at random instants; after
// each cut both files are whole, the old cache is untouched until the new
// one replaces it, no event or passage is lost or changed, and at the end
// every key opens from the new cache and none is left in plaintext.
func TestPowerCutDuringUpgrade(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 3))
	dir := t.TempDir()
	path := filepath.Join(dir, "cache.db")
	certs, events, passes := rebuildFixture()
	if err := cachetest.WriteLegacy(path, certs, rebuildCerts, 4); err != nil {
		t.Fatal(err)
	}
	if err := cache.WriteJournalV1(cache.LegacyJournalPath(cache.JournalPath(path)), events, rebuildEvents, passes); err != nil {
		t.Fatal(err)
	}
	legacy, _ := os.ReadFile(path)
	legacySum := sha256.Sum256(legacy)
	finished := false
	for round := 0; round < 12 && !finished; round++ {
		finished = runUpgrade(t, dir, time.Duration(r.IntN(120))*time.Millisecond)
		checkUpgrade(t, dir, round, certs, events, passes, legacySum)
	}
	if !finished {
		finished = runUpgrade(t, dir, -1) // to the end
		checkUpgrade(t, dir, 99, certs, events, passes, legacySum)
	}
	if !finished {
		t.Fatal("the upgrade did not finish")
	}
	// Finished: the cache is sealed and whole, every key opens, and no
	// key is in any file of the directory.
	c, err := cache.Open(path, cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	if rep, err := c.Authenticate(); err != nil || rep.Failed != 0 || rep.Records != rebuildCerts+3 { // and the feed state, the runs' record, the resync state
		t.Fatalf("authenticate: %+v, %v", rep, err)
	}
	for _, want := range certs {
		if r, ok, err := c.Lookup(want.ID, verify.Entry); err != nil || !ok || r.Key != want.Key {
			t.Fatalf("cert %s after the upgrade: %v %v", want.ID, ok, err)
		}
	}
	filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error { // the delta's and the journal's files too
		if err != nil || e.IsDir() {
			return err
		}
		data, _ := os.ReadFile(path)
		for _, cert := range certs[:200] {
			if holdsKey(data, cert.Key) {
				t.Fatalf("%s holds the key of cert %s", path, cert.ID)
			}
		}
		return nil
	})
}

// runUpgrade runs the writer on dir and kills it extra after its first
// report (never, with extra < 0); it reports whether the upgrade finished.
func runUpgrade(t *testing.T, dir string, extra time.Duration) bool {
	t.Helper()
	cmd, out, stderr := startWriter(t, rebuildEnv+"="+dir)
	defer cmd.Process.Kill()
	lines := make(chan string, 1000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	var timer <-chan time.Time
	if extra >= 0 {
		timer = time.After(extra) // from the start: the journal's migration is cut too
	}
	done := false
	for !done {
		select {
		case l, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("writer stopped by itself: %s", stderr.String())
			}
			if l == "done" {
				done = true
			}
		case <-timer:
			cmd.Process.Kill()
			for l := range lines {
				done = done || l == "done"
			}
			cmd.Wait()
			return done
		case <-time.After(60 * time.Second):
			t.Fatalf("writer silent for 60 s: %s", stderr.String())
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	return true
}

// checkUpgrade checks the files after a cut, reading them only.
func checkUpgrade(t *testing.T, dir string, round int, certs []verify.Cert, events []event.Event, passes map[[17]byte]int64, legacySum [32]byte) {
	t.Helper()
	path := filepath.Join(dir, "cache.db")
	jpath := cache.JournalPath(path)
	for _, p := range []string{path, jpath, cache.LegacyJournalPath(jpath)} {
		if _, err := os.Stat(p); p != path && err != nil {
			continue // the journal not yet migrated, or migrated
		}
		if _, err := cache.CheckFile(p); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	ro := cachetest.Options(&cache.Options{ReadOnly: true})
	j, err := cache.OpenJournal(jpath, ro)
	if err != nil {
		t.Fatalf("round %d: journal: %v", round, err)
	}
	got, err := j.Events(0, 2*rebuildEvents) // a migrated journal authenticates each
	if err != nil || len(got) != len(events) {
		t.Fatalf("round %d: %d events, %v", round, len(got), err)
	}
	for i := range got {
		if got[i] != events[i] {
			t.Fatalf("round %d: event %d reads %+v, was %+v", round, i, got[i], events[i])
		}
	}
	stage := fmt.Sprintf("journal schema %d", j.Schema())
	for k, ns := range passes {
		id := verify.CertID(k[:16])
		if at, ok, err := j.LastPass(&id, verify.Entry); err != nil || !ok || at.UnixNano() != ns {
			t.Fatalf("round %d: passage of %s: %v %v %v", round, id, at, ok, err)
		}
	}
	j.Close()
	if n, err := cache.LegacySchema(path); err != nil {
		t.Fatalf("round %d: %v", round, err)
	} else if n == 2 {
		data, _ := os.ReadFile(path)
		if sha256.Sum256(data) != legacySum {
			t.Fatalf("round %d: the old cache changed before the new one replaced it", round)
		}
	} else {
		stage += ", cache replaced"
		if _, err := os.Stat(cache.RebuildPath(path)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("round %d: the cache is replaced but the rebuild file is still there: %v", round, err)
		}
	}
	rebuild := cache.RebuildPath(path)
	if _, err := os.Stat(rebuild); err == nil {
		stage += ", cache rebuilding"
		c, err := cache.Open(rebuild, ro)
		var ce *cache.CorruptError
		if errors.As(err, &ce) && ce.Kind == cache.Empty {
			// Cut between the file's creation and its first buckets: the
			// next start opens it for writing and fills it.
			t.Logf("round %d: %s, the rebuild file without buckets yet", round, stage)
			return
		}
		if err != nil {
			t.Fatalf("round %d: rebuild file: %v", round, err)
		}
		if rep, err := c.Authenticate(); err != nil || rep.Failed != 0 {
			t.Fatalf("round %d: rebuild file: %+v, %v", round, rep, err)
		}
		// The full sync's progress is what its run holds: the pages
		// written before the cut, each whole, and nothing after.
		fs, _ := c.Feed()
		if r := fs.Resync; r != nil {
			held, listed := 0, 0
			cache.DB(c).View(func(tx *bolt.Tx) error {
				cur := tx.Bucket([]byte("groups")).Cursor()
				for _, rr := range r.Runs {
					n := 0
					for k, v := cur.Seek(binary.BigEndian.AppendUint64(nil, rr.Seq)); k != nil && binary.BigEndian.Uint64(k) == rr.Seq; k, v = cur.Next() {
						n += int(v[11])
					}
					if n != rr.Certs {
						t.Errorf("round %d: run %d of the resync holds %d certificates, it says %d", round, rr.Seq, n, rr.Certs)
					}
					held, listed = held+n, listed+rr.Certs
				}
				return nil
			})
			if held != r.Certs || listed != r.Certs || r.Certs > 0 && r.After != certs[r.Certs-1].ID {
				t.Fatalf("round %d: the resync says %d certificates up to %s, its runs hold %d", round, r.Certs, r.After, held)
			}
		}
		c.Close()
	}
	t.Logf("round %d: %s", round, stage)
}
