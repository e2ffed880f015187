package flashproto

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/verify"
)

// BoltStore is a replica of package cache's two files and their
// transactions (the same buckets, keys, values, fill percentages and
// chunks), opened with bbolt options package cache does not set, so that
// the harness can measure what the options alone change. With the zero
// BoltOptions it writes what package cache writes (docs/flash.md holds
// the two to the same bytes per operation).
type BoltStore struct {
	dir     string
	opts    BoltOptions
	certs   *bolt.DB
	journal *bolt.DB
	passes  map[[passKeyLen]byte]int64
	built   time.Time
	// RebuildSyncs counts the syncs of rebuilt files, which the harness
	// cannot see in the file it observes.
	RebuildSyncs int64
}

// BoltOptions are the variants measured.
type BoltOptions struct {
	// NoFreelistSync and Hashmap set bbolt's options of those names on
	// both files: the free list is not written at commit but rebuilt at
	// open by a scan of every page, and kept in a hash map.
	NoFreelistSync, Hashmap bool
	// Rebuild, when set, replaces the hourly purge of expired
	// certificates by a rebuild of the certificate file every Rebuild: a
	// new file written in ID order, pages full, without the certificates
	// expired longer than the retention ago, renamed over the old one.
	Rebuild time.Duration
}

var (
	bCerts    = []byte("certs")
	bMeta     = []byte("meta")
	bPassback = []byte("passback")
	bEvents   = []byte("events")
	kFeed     = []byte("feed")
	kAcked    = []byte("acked")
)

// OpenBoltStore opens (creating) cache.db and journal.db in dir.
func OpenBoltStore(dir string, o BoltOptions) (*BoltStore, error) {
	s := &BoltStore{dir: dir, opts: o, passes: map[[passKeyLen]byte]int64{}}
	var err error
	if s.certs, err = s.open("cache.db", bCerts); err != nil {
		return nil, err
	}
	if s.journal, err = s.open("journal.db", bPassback, bEvents); err != nil {
		s.certs.Close()
		return nil, err
	}
	return s, nil
}

func (s *BoltStore) boltOptions() *bolt.Options {
	o := &bolt.Options{NoStatistics: true, NoFreelistSync: s.opts.NoFreelistSync}
	if s.opts.Hashmap {
		o.FreelistType = bolt.FreelistMapType
	}
	return o
}

func (s *BoltStore) open(name string, buckets ...[]byte) (*bolt.DB, error) {
	db, err := bolt.Open(filepath.Join(s.dir, name), 0o600, s.boltOptions())
	if err != nil {
		return nil, err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range append(buckets, bMeta) {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// Paths are the two files.
func (s *BoltStore) Paths() []string {
	return []string{filepath.Join(s.dir, "cache.db"), filepath.Join(s.dir, "journal.db")}
}

func readFeed(tx *bolt.Tx) (cache.FeedState, error) {
	var fs cache.FeedState
	if v := tx.Bucket(bMeta).Get(kFeed); v != nil {
		return fs, json.Unmarshal(v, &fs)
	}
	return fs, nil
}

func writeFeed(tx *bolt.Tx, fs *cache.FeedState) error {
	v, err := json.Marshal(fs)
	if err != nil {
		return err
	}
	return tx.Bucket(bMeta).Put(kFeed, v)
}

// LoadPage writes one page of a full sync, as cache.ApplySnapshot does
// (the ID-ordered append path); final moves the cursor.
func (s *BoltStore) LoadPage(certs []verify.Cert, cursor uint64, fs cache.FeedState, final bool) error {
	return s.certs.Update(func(tx *bolt.Tx) error {
		if err := upsertAll(tx.Bucket(bCerts), certs); err != nil {
			return err
		}
		old, err := readFeed(tx)
		if err != nil {
			return err
		}
		if final {
			fs.Cursor = cursor
			s.built = fs.SyncedAt
			return writeFeed(tx, &fs)
		}
		old.Resync = &cache.Resync{Epoch: fs.Epoch, Snapshot: cursor}
		if len(certs) > 0 {
			old.Resync.After = certs[len(certs)-1].ID
		}
		return writeFeed(tx, &old)
	})
}

func upsertAll(b *bolt.Bucket, ups []verify.Cert) error {
	appending := true
	for i := 1; i < len(ups); i++ {
		if bytes.Compare(ups[i-1].ID[:], ups[i].ID[:]) >= 0 {
			appending = false
		}
	}
	if last, _ := b.Cursor().Last(); appending && len(ups) > 0 && last != nil && bytes.Compare(ups[0].ID[:], last) <= 0 {
		appending = false
	}
	if appending {
		b.FillPercent = 1.0
	}
	slab := make([]byte, len(ups)*recordLen)
	for i := range ups {
		u := &ups[i]
		v := slab[i*recordLen : (i+1)*recordLen]
		var flags byte
		if !appending {
			if ov := b.Get(u.ID[:]); len(ov) == recordLen && ov[0]&flagRevoke != 0 {
				flags = flagRevoke
			}
		}
		putRecord(v, u, flags)
		if err := b.Put(u.ID[:], v); err != nil {
			return err
		}
	}
	return nil
}

// Apply writes a feed batch in one transaction, as cache.Cache.Apply.
func (s *BoltStore) Apply(bt *cache.Batch) error {
	return s.certs.Update(func(tx *bolt.Tx) error {
		fs, err := readFeed(tx)
		if err != nil {
			return err
		}
		if bt.Next <= fs.Cursor || bt.From > fs.Cursor || bt.Feed.Epoch != fs.Epoch {
			return fmt.Errorf("%w: batch (%d, %d] at cursor %d", cache.ErrGap, bt.From, bt.Next, fs.Cursor)
		}
		b := tx.Bucket(bCerts)
		if err := upsertAll(b, bt.Upserts); err != nil {
			return err
		}
		slab := make([]byte, len(bt.Revokes)*recordLen)
		for i, id := range bt.Revokes {
			v := slab[i*recordLen : (i+1)*recordLen]
			if ov := b.Get(id[:]); len(ov) == recordLen {
				if ov[0]&flagRevoke != 0 {
					continue
				}
				copy(v, ov)
				v[0] |= flagRevoke
			} else {
				c := verify.Cert{NotBefore: bt.Feed.IssuerTime, NotAfter: bt.Feed.IssuerTime.Add(cache.MaxValidity)}
				putRecord(v, &c, flagRevoke|flagNoKey)
			}
			if err := b.Put(id[:], v); err != nil {
				return err
			}
		}
		nfs := bt.Feed
		nfs.Cursor = bt.Next
		return writeFeed(tx, &nfs)
	})
}

// Lookup reads a certificate and its last passage.
func (s *BoltStore) Lookup(id verify.CertID) (verify.Record, bool, error) {
	var r verify.Record
	found := false
	err := s.certs.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bCerts).Get(id[:])
		if len(v) != recordLen || v[0]&flagNoKey != 0 {
			return nil
		}
		found = true
		r.ID = id
		r.Revoked = v[0]&flagRevoke != 0
		r.NotBefore = time.Unix(int64(binary.BigEndian.Uint64(v[1:])), 0).UTC()
		r.NotAfter = time.Unix(int64(binary.BigEndian.Uint64(v[9:])), 0).UTC()
		copy(r.Key[:], v[17:])
		return nil
	})
	return r, found, err
}

const purgeChunk = 5000 // package cache's

// purge deletes, a chunk per transaction, the keys whose value old says
// are due, as package cache's purgeBucket.
func purge(db *bolt.DB, name []byte, old func(v []byte) bool) (int, error) {
	total := 0
	var resume []byte
	for {
		var done bool
		n := 0
		err := db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			cur := b.Cursor()
			k, v := cur.First()
			if resume != nil {
				k, v = cur.Seek(resume)
			}
			var due [][]byte
			for ; k != nil && len(due) < purgeChunk; k, v = cur.Next() {
				if old(v) {
					due = append(due, k)
				}
			}
			if k == nil {
				done = true
			} else {
				resume = append(resume[:0], k...)
			}
			for _, k := range due {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n = len(due)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if done {
			return total, nil
		}
	}
}

// Maintain purges the passages older than window, and the certificates
// expired more than retention ago: in place every call, or, with
// Rebuild set, by a rebuild every Rebuild.
func (s *BoltStore) Maintain(now time.Time, retention, window time.Duration) error {
	cutPass := now.Add(-window).UnixNano()
	if _, err := purge(s.journal, bPassback, func(v []byte) bool {
		return len(v) == 8 && int64(binary.BigEndian.Uint64(v)) < cutPass
	}); err != nil {
		return err
	}
	for k, ns := range s.passes {
		if ns < cutPass {
			delete(s.passes, k)
		}
	}
	cut := now.Add(-retention).Unix()
	expired := func(v []byte) bool { return len(v) == recordLen && int64(binary.BigEndian.Uint64(v[9:])) < cut }
	if s.opts.Rebuild == 0 {
		_, err := purge(s.certs, bCerts, expired)
		return err
	}
	if now.Sub(s.built) < s.opts.Rebuild {
		return nil
	}
	s.built = now
	return s.rebuild(expired)
}

// rebuild writes the certificate file anew in ID order without the
// records drop says to leave out, and renames it over the old one.
func (s *BoltStore) rebuild(drop func(v []byte) bool) error {
	path := filepath.Join(s.dir, "cache.db")
	tmp := path + ".new"
	os.Remove(tmp)
	o := s.boltOptions()
	o.NoSync, o.NoGrowSync = true, true
	db, err := bolt.Open(tmp, 0o600, o)
	if err != nil {
		return err
	}
	s.RebuildSyncs++ // a new file's first pages, synced whatever NoSync says
	err = s.certs.View(func(src *bolt.Tx) error {
		c := src.Bucket(bCerts).Cursor()
		k, v := c.First()
		for commits := 1; ; commits++ {
			err := db.Update(func(tx *bolt.Tx) error {
				b, err := tx.CreateBucketIfNotExists(bCerts)
				if err != nil {
					return err
				}
				b.FillPercent = 1.0
				for n := 0; k != nil && n < 12_000; k, v = c.Next() {
					if drop(v) {
						continue
					}
					if err := b.Put(k, v); err != nil {
						return err
					}
					n++
				}
				if k != nil {
					return nil
				}
				m, err := tx.CreateBucketIfNotExists(bMeta)
				if err != nil {
					return err
				}
				return m.Put(kFeed, src.Bucket(bMeta).Get(kFeed))
			})
			if err != nil {
				return err
			}
			if k == nil || commits%4 == 0 {
				s.RebuildSyncs++
				if err := db.Sync(); err != nil {
					return err
				}
			}
			if k == nil {
				return nil
			}
		}
	})
	if err == nil {
		err = db.Close()
	} else {
		db.Close()
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := s.certs.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	s.RebuildSyncs++
	if err := syncDir(s.dir); err != nil {
		return err
	}
	s.certs, err = bolt.Open(path, 0o600, s.boltOptions())
	return err
}

// AppendEvent stores e in the journal, as cache.Journal.AppendEvent.
func (s *BoltStore) AppendEvent(e event.Event) (uint64, error) {
	err := s.journal.Update(func(tx *bolt.Tx) error { return appendBoltEvent(tx, &e) })
	return e.Seq, err
}

func appendBoltEvent(tx *bolt.Tx, e *event.Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	b := tx.Bucket(bEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	b.FillPercent = 1.0
	return b.Put(binary.BigEndian.AppendUint64(nil, seq), encodeEvent(nil, e))
}

// RecordPassage stores the passage and the anti-passback state in one
// transaction, as cache.Journal.RecordPassage.
func (s *BoltStore) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	var k [passKeyLen]byte
	copy(k[:], id[:])
	k[verify.CertIDLen] = byte(dir)
	ns := e.Time.UnixNano()
	err := s.journal.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bPassback).Put(k[:], binary.BigEndian.AppendUint64(nil, uint64(ns))); err != nil {
			return err
		}
		return appendBoltEvent(tx, &e)
	})
	if err == nil {
		s.passes[k] = ns
	}
	return e.Seq, err
}

// Events returns the next upload, as cache.Journal.Events.
func (s *BoltStore) Events(after uint64, max int) ([]event.Event, error) {
	var out []event.Event
	err := s.journal.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bEvents).Cursor()
		for k, v := c.Seek(binary.BigEndian.AppendUint64(nil, after+1)); k != nil && len(out) < max; k, v = c.Next() {
			e, err := decodeEvent(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// DeleteEventsThrough deletes the acknowledged events and keeps the
// acknowledged sequence number, as cache.Journal.DeleteEventsThrough.
func (s *BoltStore) DeleteEventsThrough(seq uint64) (int, error) {
	n := 0
	err := s.journal.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bEvents)
		var keys [][]byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = c.Next() {
			keys = append(keys, k)
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		meta := tx.Bucket(bMeta)
		if old := meta.Get(kAcked); len(old) == 8 && binary.BigEndian.Uint64(old) >= seq {
			return nil
		}
		return meta.Put(kAcked, binary.BigEndian.AppendUint64(nil, seq))
	})
	return n, err
}

// Close closes both files.
func (s *BoltStore) Close() error { return errors.Join(s.certs.Close(), s.journal.Close()) }
