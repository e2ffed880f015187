// Package cachetest opens real cache files for tests and builds synthetic
// certificates for benchmarks, as bbolt's internal/btesting does for bbolt.
package cachetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/verify"
)

// KeyBytes is the cache key of the tests: the same in every run. Write it
// to a key file (mode 0600) for a gate's config.
func KeyBytes() []byte { return bytes.Repeat([]byte{0x5a}, cache.KeyLen) }

// Key is the cache key of KeyBytes.
func Key() *cache.Key {
	k, err := cache.NewKey(KeyBytes())
	if err != nil {
		panic(err)
	}
	return k
}

// WriteKey writes KeyBytes to a new key file (mode 0600) in dir and
// returns its path, for a gate config's keys.cache_key.
func WriteKey(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "cache.key")
	if err := os.WriteFile(path, KeyBytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Options returns opts (or new options) with the test key set.
func Options(opts *cache.Options) *cache.Options {
	var o cache.Options
	if opts != nil {
		o = *opts
	}
	if o.Key == nil {
		o.Key = Key()
	}
	return &o
}

// Open opens a new cache file in t.TempDir, under the test key unless opts
// gives one. When the test ends it closes the cache (if the test has not)
// and runs the integrity check on the file.
func Open(t testing.TB, opts *cache.Options) *cache.Cache {
	t.Helper()
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := cache.Open(path, Options(opts))
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
	path := filepath.Join(t.TempDir(), "journal")
	j, err := cache.OpenJournal(path, Options(opts))
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
	c, err := cache.Open(filepath.Join(dir, "cache.db"), Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	j, err := cache.OpenJournal(cache.JournalPath(c.Path()), Options(nil))
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

// WriteLegacy writes a certificate cache as builds before sealed keys did
// (schema 2): the certificates' keys in plaintext, no MACs, the feed state
// at cursor with a completed sync of epoch. For the tests of its rebuild,
// and the unsealed control run of the key search.
func WriteLegacy(path string, certs []verify.Cert, cursor, epoch uint64) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		meta.Put([]byte("schema"), []byte{0, 0, 0, 2})
		meta.Put([]byte("kind"), []byte("cache"))
		fs, _ := json.Marshal(cache.FeedState{Cursor: cursor, Epoch: epoch, MaxAge: time.Hour, KeyID: "test", IssuerTime: Epoch, SyncedAt: Epoch})
		meta.Put([]byte("feed"), fs)
		cb, err := tx.CreateBucket([]byte("certs"))
		if err != nil {
			return err
		}
		for i := range certs {
			v := Record(&certs[i])
			if certs[i].Revoked {
				v[0] = 1
			}
			if err := cb.Put(certs[i].ID[:], v); err != nil {
				return err
			}
		}
		return nil
	})
}

// DamageRecord changes one byte (xor x) at offset at of the value stored
// under key in bucket of the closed cache or journal file at path, as a
// failing SD card would: the file stays whole page by page, only the
// record's bytes change.
//
// Bucket "certs" names a certificate's record in the run that holds it
// (the cache must have written it as a run: Cache.WriteRun), at its
// offset in a record of schema 3 (flags 0, not_before 1–8, not_after
// 9–16, nonce 17–28, sealed key 29–60, tag 61–76; a revocation stored
// before its certificate has no key, its tag at 29–44): the same field
// of the group that holds it is changed (a group keeps a time's low 4
// bytes: its high 4 name the first of them).
func DamageRecord(path, bucket string, key []byte, at int, x byte) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	if bucket == "certs" {
		return damageCert(db, key, at, x)
	}
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return fmt.Errorf("no bucket %q", bucket)
		}
		v := b.Get(key)
		if v == nil {
			return fmt.Errorf("no record %s/%x", bucket, key)
		}
		if at < 0 || at >= len(v) {
			return fmt.Errorf("record %s/%x has %d bytes, no byte %d", bucket, key, len(v), at)
		}
		v = bytes.Clone(v)
		v[at] ^= x
		return b.Put(key, v)
	})
}

// LeavesInUse returns the leaf pages of the closed cache or journal file
// at path that hold at least minKeys records of keySize-byte keys and that
// the file uses (a copy with that page's type destroyed is refused, where a
// free page's would not be), in file order.
func LeavesInUse(t testing.TB, path string, keySize uint32, minKeys int) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ps := os.Getpagesize()
	try := filepath.Join(t.TempDir(), "try.db")
	var found []int
	for p := 2; (p+1)*ps <= len(b); p++ {
		off := p * ps
		if binary.LittleEndian.Uint64(b[off:]) != uint64(p) || binary.LittleEndian.Uint16(b[off+8:]) != 0x02 ||
			int(binary.LittleEndian.Uint16(b[off+10:])) < minKeys || binary.LittleEndian.Uint32(b[off+16+8:]) != keySize {
			continue
		}
		c := bytes.Clone(b)
		c[off+8] = 0x40
		if err := os.WriteFile(try, c, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := cache.CheckFile(try); err != nil {
			found = append(found, p)
		}
	}
	return found
}

// WreckPage destroys the type of page p of the closed file at path (a
// leaf becomes a page type bbolt does not know).
func WreckPage(t testing.TB, path string, p int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{0x40, 0}, int64(p*os.Getpagesize()+8)); err != nil {
		t.Fatal(err)
	}
}

// The journal's records on the disk, as internal/seglog and package cache
// write them: a 32-byte header (magic, CRC-32C of the rest and the
// payload, generation, LSN, length, kind) at the start of a 4 KB block,
// then the payload, whose head is the key check value (16), acked (8)
// and the last sequence number (8).
const (
	logHeader   = 32
	journalHead = 32
	passKey     = 17
	passValue   = 24
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalRecords calls fn with each whole record of the closed journal
// at dir: its segment file's bytes, the record's offset, kind and
// payload; fn returns whether it changed the bytes (the record's CRC is
// then made whole again and the file written back).
func journalRecords(dir string, fn func(off int, kind byte, payload []byte) bool) error {
	segs, err := filepath.Glob(filepath.Join(dir, "journal.*.log"))
	if err != nil {
		return err
	}
	sort.Strings(segs)
	for _, seg := range segs {
		data, err := os.ReadFile(seg)
		if err != nil {
			return err
		}
		changed := false
		for off := 0; off+logHeader <= len(data); off += 4096 {
			h := data[off:]
			n := int(binary.LittleEndian.Uint32(h[24:]))
			if binary.LittleEndian.Uint32(h) != 0x474c4731 || off+logHeader+n > len(data) ||
				crc32.Checksum(h[8:logHeader+n], castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
				continue
			}
			if fn(off, h[28], h[logHeader:logHeader+n]) {
				binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(h[8:logHeader+n], castagnoli))
				changed = true
			}
		}
		if changed {
			if err := os.WriteFile(seg, data, 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// DamageJournalRecord XORs byte at of what the closed journal at dir
// holds under key in bucket with x, in every record that holds it, and
// makes each record's CRC whole again (as deliberate tampering would, so
// that only the MAC can tell): "events", the event sealed, key its
// sequence number (8, big-endian); "passback", the passage's time ‖ MAC,
// key its cert ID ‖ direction.
func DamageJournalRecord(dir, bucket string, key []byte, at int, x byte) error {
	found := false
	err := journalRecords(dir, func(_ int, kind byte, p []byte) bool {
		pos := -1
		switch {
		case bucket == "events" && kind == 1 && len(p) > journalHead+8 && bytes.Equal(p[journalHead:journalHead+8], key):
			pos = journalHead + 8 + at
		case bucket == "events" && kind == 2 && len(p) > journalHead+passKey+passValue+8 &&
			bytes.Equal(p[journalHead+passKey+passValue:journalHead+passKey+passValue+8], key):
			pos = journalHead + passKey + passValue + 8 + at
		case bucket == "passback" && (kind == 2 || kind == 3) && len(p) >= journalHead+passKey+passValue &&
			bytes.Equal(p[journalHead:journalHead+passKey], key):
			pos = journalHead + passKey + at
		}
		if pos < 0 || pos >= len(p) {
			return false
		}
		p[pos] ^= x
		found = true
		return true
	})
	if err == nil && !found {
		err = fmt.Errorf("no %s record %x in the journal %s", bucket, key, dir)
	}
	return err
}

// WreckJournalRecord overwrites the n-th record (from 1) of the closed
// journal at dir with bytes no record has, as a bad block would: with
// whole records after it, the journal is damaged.
func WreckJournalRecord(dir string, n int) error {
	i, at := 0, -1
	if err := journalRecords(dir, func(off int, _ byte, _ []byte) bool {
		if i++; i == n {
			at = off
		}
		return false
	}); err != nil {
		return err
	}
	if at < 0 || i <= n {
		return fmt.Errorf("the journal %s has %d records: none after record %d", dir, i, n)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "journal.*.log"))
	sort.Strings(segs)
	f, err := os.OpenFile(segs[0], os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteAt(bytes.Repeat([]byte{0xEE}, 64), int64(at))
	return err
}

// The layout of a run's group (cache/group.go), for damageCert.
const (
	groupHeadLen = 11 + 1 + 1 + 16
	clearLen     = 16 + 1 + 4 + 4
	blockSize    = 8
	blockBytes   = blockSize*32 + 16
	recHeadLen   = 17
	recNonceLen  = 12
)

// damageCert changes the field of certificate id at (a schema 3 record's
// offset) in the group that holds it.
func damageCert(db *bolt.DB, id []byte, at int, x byte) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("groups"))
		if b == nil {
			return fmt.Errorf("no bucket %q", "groups")
		}
		cur := b.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			n := int(v[11])
			for i := range n {
				e := v[groupHeadLen+i*clearLen:]
				if !bytes.Equal(e[:16], id) {
					continue
				}
				noKey := e[16]&2 != 0
				sealed := groupHeadLen + n*clearLen
				blk := i / blockSize
				tag := sealed + blk*blockBytes + (min(n, (blk+1)*blockSize)-blk*blockSize)*32
				h := groupHeadLen + i*clearLen + 16
				var off int
				switch {
				case at == 0:
					off = h
				case at < 9: // the times' low 4 bytes are the group's
					off = h + 1 + max(0, at-5)
				case at < recHeadLen:
					off = h + 5 + max(0, at-13)
				case at < recHeadLen+recNonceLen: // the group's nonce
					off = min(at-recHeadLen, 10)
				case !noKey && at < recHeadLen+recNonceLen+32:
					off = sealed + blk*blockBytes + i%blockSize*32 + at - recHeadLen - recNonceLen
				case noKey:
					off = tag + at - recHeadLen - recNonceLen
				default:
					off = tag + at - recHeadLen - recNonceLen - 32
				}
				if off >= len(v) {
					return fmt.Errorf("certificate %x: no byte %d", id, at)
				}
				v = bytes.Clone(v)
				v[off] ^= x
				return b.Put(bytes.Clone(k), v)
			}
		}
		return fmt.Errorf("no record certs/%x: the certificate is in no run (Cache.WriteRun)", id)
	})
}
