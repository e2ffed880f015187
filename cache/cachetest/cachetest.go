// Package cachetest opens real cache files for tests and builds synthetic
// certificates for benchmarks, as bbolt's internal/btesting does for bbolt.
package cachetest

import (
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/verify"
)

// Open opens a new cache file in t.TempDir. When the test ends it closes the
// cache (if the test has not) and runs bbolt's integrity check on the file.
func Open(t testing.TB, opts *cache.Options) *cache.Cache {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := cache.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); CheckFile(t, path) })
	return c
}

// OpenJournal opens a new journal in t.TempDir, closed and checked when
// the test ends, as Open does.
func OpenJournal(t testing.TB, opts *cache.Options) *cache.Journal {
	t.Helper()
	path := filepath.Join(t.TempDir(), "journal.db")
	j, err := cache.OpenJournal(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(); CheckFile(t, path) })
	return j
}

// OpenStore opens a new cache and its journal beside it, as the agent
// keeps them, closed and checked when the test ends.
func OpenStore(t testing.TB) *cache.Store {
	t.Helper()
	dir := t.TempDir()
	c, err := cache.Open(filepath.Join(dir, "cache.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	j, err := cache.OpenJournal(cache.JournalPath(c.Path()), nil)
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		j.Close()
		CheckFile(t, c.Path())
		CheckFile(t, j.Path())
	})
	return &cache.Store{Cache: c, Journal: j}
}

// CheckFile fails the test unless the closed cache or journal file at
// path is whole (cache.CheckFile).
func CheckFile(t testing.TB, path string) {
	t.Helper()
	if _, err := cache.CheckFile(path); err != nil {
		t.Errorf("integrity check: %v", err)
	}
}

// Epoch is the approval time of every synthetic certificate.
var Epoch = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

// Cert returns the i-th of n synthetic certificates, valid for 24 hours
// from Epoch. IDs ascend with i and spread over the whole ID space, as the
// feed's ID-ordered full sync delivers them; the rest of each ID and the
// key are pseudo-random, derived from i.
func Cert(i, n uint64) verify.Cert {
	h := sha256.Sum256(binary.BigEndian.AppendUint64([]byte("gateagent synthetic cert"), i))
	var c verify.Cert
	binary.BigEndian.PutUint64(c.ID[:8], i*(^uint64(0)/n))
	copy(c.ID[8:], h[:8])
	copy(c.Key[:], h[:])
	c.Key[0] |= 1 // never the all-zero key
	c.NotBefore = Epoch
	c.NotAfter = Epoch.Add(24 * time.Hour)
	return c
}

// Batch returns the batch of synthetic certificates [from, to) of n, as the
// feed would send it during a full sync: cursor from → to.
func Batch(from, to, n uint64) *cache.Batch {
	b := &cache.Batch{From: from, Next: to, Upserts: make([]verify.Cert, 0, to-from)}
	for i := from; i < to; i++ {
		b.Upserts = append(b.Upserts, Cert(i, n))
	}
	b.Feed = cache.FeedState{KeyID: "test", IssuerTime: Epoch, MaxAge: time.Hour, SyncedAt: Epoch}
	return b
}
