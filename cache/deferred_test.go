package cache_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"testing"
	"testing/synctest"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/verify"
)

// TestLookupsBeforeTheCheckEnds: Open leaves the certificates' tree to a
// check in the background, and a lookup made before that check ends
// checks the pages on its own way down: on a whole file every certificate
// is found with its key; on a file with one leaf damaged (a key out of
// order, which no record's authentication would catch), the open
// succeeds, a lookup that reaches the leaf is refused as ErrCorrupt while
// another is answered, and once the check ends the cache refuses every
// lookup and every write, naming the page.
func TestLookupsBeforeTheCheckEnds(t *testing.T) {
	f := newFixture(t, 5000, 0, 0)

	release := cache.HoldChecks(t)
	c, err := cache.Open(f.cache, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range f.certs {
		got, ok := lookup(t, c, want.ID)
		if !ok || got.Key != want.Key {
			t.Fatalf("before the check ended: cert %s found %v, key right %v", want.ID, ok, got.Key == want.Key)
		}
	}
	release()
	if err := c.Checked(); err != nil {
		t.Fatalf("a whole file: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// The victim is the last of its group, in the middle of the run: its
	// ID is also the key of the group's leaf, which is changed.
	data, err := os.ReadFile(f.cache)
	if err != nil {
		t.Fatal(err)
	}
	leaves := cachetest.LeavesInUse(t, f.cache, 24, 1)
	if len(leaves) < 3 {
		t.Fatalf("%d leaves of groups", len(leaves))
	}
	page := uint64(leaves[len(leaves)/2])
	elem := int(page)*os.Getpagesize() + 16
	at := elem + int(binary.LittleEndian.Uint32(data[elem+4:])) + 8 // the key's ID
	var victim verify.Cert
	for _, c := range f.certs {
		if bytes.Equal(c.ID[:], data[at:at+16]) {
			victim = c
		}
	}
	if victim.ID == (verify.CertID{}) {
		t.Fatal("the leaf's key names no certificate")
	}
	overwrite(t, f.cache, int64(at), []byte{^victim.ID[0]}) // the key out of order in its leaf
	release = cache.HoldChecks(t)
	c, err = cache.Open(f.cache, cachetest.Options(nil))
	if err != nil {
		t.Fatalf("the open reads no certificate, yet: %v", err)
	}
	if _, _, err := c.Lookup(victim.ID, verify.Entry); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("a lookup through the damaged leaf: %v, want ErrCorrupt", err)
	}
	if got, ok := lookup(t, c, f.certs[10].ID); !ok || got.Key != f.certs[10].Key {
		t.Fatal("a lookup far from the damage is not answered")
	}
	release()
	err = c.Checked()
	var ce *cache.CorruptError
	if !errors.As(err, &ce) || ce.Page != page {
		t.Fatalf("the check after the open: %v, want damage on page %d", err, page)
	}
	if _, _, err := c.Lookup(f.certs[10].ID, verify.Entry); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("a lookup once the damage is found: %v, want ErrCorrupt", err)
	}
	if _, err := c.Apply(cachetest.Batch(5000, 5010, 1<<40)); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("a write once the damage is found: %v, want ErrCorrupt", err)
	}
	if _, err := c.Stats(); !errors.Is(err, cache.ErrCorrupt) {
		t.Fatalf("stats once the damage is found: %v, want ErrCorrupt", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cache.CheckFile(f.cache); !errors.As(err, &ce) || ce.Page != page {
		t.Fatalf("CheckFile: %v, want the same damage", err)
	}
}

// TestWritesWaitForTheCheck: nothing is written to the cache before the
// check of its certificates has passed (the check reads the file as Open
// found it), and the write then goes through.
func TestWritesWaitForTheCheck(t *testing.T) {
	f := newFixture(t, 3000, 0, 0)
	synctest.Test(t, func(t *testing.T) {
		release := cache.HoldChecks(t)
		c, err := cache.Open(f.cache, cachetest.Options(nil))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		applied := make(chan error, 1)
		go func() {
			_, err := c.Apply(cachetest.Batch(3000, 3010, 1<<40))
			applied <- err
		}()
		synctest.Wait()
		select {
		case err := <-applied:
			t.Fatalf("a write went through before the check: %v", err)
		default:
		}
		release()
		if err := <-applied; err != nil {
			t.Fatal(err)
		}
		if err := c.Checked(); err != nil {
			t.Fatal(err)
		}
		if _, ok := lookup(t, c, cachetest.Cert(3005, 1<<40).ID); !ok {
			t.Fatal("the write is not in the cache")
		}
	})
}
