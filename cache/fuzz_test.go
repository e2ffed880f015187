package cache_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/verify"

	bolt "go.etcd.io/bbolt"
)

// FuzzOpenDamaged opens the bytes of a small real cache, and of a small
// real journal, as the fuzzer mutates them: each open is an error, or a
// file that works and stays whole through the agent's writes and a
// reopen. A salvage reads any of them. Nothing may crash (a panic, or a
// memory fault reading through the map, fails the run).
func FuzzOpenDamaged(f *testing.F) {
	fx := newFixture(f, 300, 60, 10)
	segs, _ := filepath.Glob(filepath.Join(fx.journal, "journal.*.log"))
	for _, p := range []string{fx.cache, segs[0]} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		if p != fx.cache {
			b = b[:80*4096] // the records; zeros after
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "cache.db")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		_, checkErr := cache.CheckFile(path)
		release := cache.HoldChecks(t)
		c, err := cache.Open(path, cachetest.Options(nil))
		if err == nil {
			for _, cert := range fx.certs[:20] {
				c.Lookup(cert.ID, verify.Entry) // before the check of the certificates ends
			}
			release()
			if err = usedAfterCheck(t, c, fx.certs[0].ID); err != nil && checkErr == nil {
				t.Fatalf("the check after the open found damage that CheckFile does not: %v", err)
			}
		}
		if errors.Is(err, cache.ErrLocked) {
			t.Fatal(err)
		}
		if err == nil {
			if checkErr != nil && len(data) > 0 {
				t.Fatalf("the open took a file CheckFile refuses: %v", checkErr)
			}
			if err := c.Check(); err != nil {
				t.Fatalf("opened, but its check fails: %v", err)
			}
			for _, cert := range fx.certs[:20] {
				c.Lookup(cert.ID, verify.Entry)
			}
			c.Stats()
			fs, _ := c.Feed()
			c.Apply(cachetest.Batch(fs.Cursor, fs.Cursor+20, 1<<40))
			c.Purge(t0.Add(72*time.Hour), 0)
			c.Close()
			if _, err := cache.CheckFile(path); err != nil {
				t.Fatalf("a cache that opened whole is not whole after writes: %v", err)
			}
		}

		// The same bytes as the journal's segment, made a whole number of
		// blocks (a segment of another length is refused before it is
		// read).
		jpath := filepath.Join(dir, "journal")
		seg := filepath.Join(jpath, "journal.00000000000000000001.log")
		jdata := append(bytes.Clone(data), make([]byte, (4096-len(data)%4096)%4096)...)
		if err := os.Mkdir(jpath, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(seg, jdata, 0o600); err != nil {
			t.Fatal(err)
		}
		if j, err := cache.OpenJournal(jpath, cachetest.Options(nil)); err == nil {
			if err := j.Check(); err != nil {
				t.Fatalf("opened, but its check fails: %v", err)
			}
			evs, _ := j.Events(0, 100)
			j.Backlog()
			j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm, Detail: "fuzz"})
			j.RecordPassage(fx.certs[0].ID, verify.Entry, event.Event{Time: t0, Kind: event.Passage})
			if len(evs) > 2 {
				j.DeleteEventsThrough(evs[2].Seq)
			}
			j.Close()
			if _, err := cache.CheckFile(jpath); err != nil {
				t.Fatalf("a journal that opened whole is not whole after writes: %v", err)
			}
		}

		os.RemoveAll(jpath)
		os.Mkdir(jpath, 0o700)
		os.WriteFile(seg, jdata, 0o600)
		into, err := cache.OpenJournal(filepath.Join(dir, "new"), cachetest.Options(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer into.Close()
		if _, err := into.Salvage(jpath, t0); err != nil {
			t.Fatalf("salvage: %v", err)
		}
	})
}

// FuzzSealedGroup feeds the group decoder (the one every lookup in a run
// runs) arbitrary keys and group bytes, seeded with real groups (valid
// certificates, a revoked one, a revocation without key; a first group
// and one after it): it never panics, and it accepts nothing but the
// groups the cache sealed, under the keys they were sealed for: a changed
// byte anywhere, or a group under another key (another run, another last
// ID), fails authentication or is refused as malformed.
func FuzzSealedGroup(f *testing.F) {
	c := cachetest.Open(f, nil)
	b := cachetest.Batch(0, 100, 100)
	if _, err := c.Apply(b); err != nil {
		f.Fatal(err)
	}
	if _, err := c.Apply(&cache.Batch{From: 100, Next: 101, Revokes: []verify.CertID{b.Upserts[1].ID, cachetest.Cert(9, 10).ID}, Feed: b.Feed}); err != nil {
		f.Fatal(err)
	}
	if err := c.WriteRun(t0); err != nil {
		f.Fatal(err)
	}
	genuine := map[string]bool{}
	cache.DB(c).View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("groups")).ForEach(func(k, v []byte) error {
			genuine[string(k)+string(v)] = true
			f.Add(bytes.Clone(k), bytes.Clone(v))
			return nil
		})
	})
	f.Add([]byte{}, []byte{})
	f.Add(make([]byte, 24), make([]byte, 111))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		n, shaped, ok := cache.OpenGroup(c, k, v)
		if ok && !genuine[string(k)+string(v)] {
			t.Fatalf("accepted a group the cache did not seal: key %x, %d bytes, %d certificates", k, len(v), n)
		}
		if ok && !shaped {
			t.Fatal("accepted a group of the wrong shape")
		}
		if !ok && n != 0 {
			t.Fatal("a refused group gave certificates")
		}
	})
}
