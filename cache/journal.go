package cache

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/event"
	"gateagent/verify"
)

// JournalSchema is the layout of the journal this build reads and writes.
const JournalSchema = 1

// The journal's file:
//
//	meta      schema → 1; kind → "journal"; acked → the last sequence
//	          number the issuer acknowledged (8, big-endian)
//	passback  cert ID ‖ direction → time of the last passage (Unix ns)
//	events    sequence number (8, big-endian) → the event
//
// It is apart from the certificate cache because it is what only the gate
// knows (the feed can rebuild the certificates, not this), and because a
// grant's commit to a small file writes fewer pages than one to the file
// of a million certificates, whose free list bbolt rewrites at every
// commit (README, "The journal apart").

// Journal is the gate's event log and anti-passback state, in a small
// bbolt file of its own. Its methods are safe for concurrent use.
type Journal struct {
	db       *bolt.DB
	path     string
	readOnly bool

	// passes mirrors the passback bucket in memory: the state is small
	// (passages within the window) and read on every scan, so the lookup
	// reads it here instead of descending a B+tree. It is written only
	// after the bucket's transaction commits.
	passMu sync.RWMutex
	passes map[[passKeyLen]byte]int64
}

// OpenJournal opens the journal at path, creating it when absent (unless
// ReadOnly). The file is checked whole first: a file that is not gives a
// *CorruptError (errors.Is ErrCorrupt) and is left as it is.
func OpenJournal(path string, opts *Options) (*Journal, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	db, err := openDB(path, o)
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	j := &Journal{db: db, path: path, readOnly: o.ReadOnly}
	err = j.init()
	if err == nil {
		err = j.loadPasses()
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	return j, nil
}

func (j *Journal) init() error {
	var found int
	err := j.view(func(tx *bolt.Tx) error {
		var err error
		found, err = fileSchema(tx, j.path, kindJournal)
		if err != nil || found == 0 {
			return err
		}
		for _, b := range [][]byte{bucketPassback, bucketEvents} {
			if tx.Bucket(b) == nil {
				return damaged(j.path, 0, "bucket %q missing", b)
			}
		}
		return nil
	})
	if err != nil || found != 0 {
		return err
	}
	if j.readOnly {
		return &CorruptError{Path: j.path, Kind: Empty, Detail: "no buckets yet", Problems: 1}
	}
	return j.update(func(tx *bolt.Tx) error {
		return createFile(tx, kindJournal, JournalSchema, bucketPassback, bucketEvents)
	})
}

// loadPasses fills the in-memory copy of the passback bucket.
func (j *Journal) loadPasses() error {
	j.passes = make(map[[passKeyLen]byte]int64)
	return j.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPassback).ForEach(func(k, v []byte) error {
			if checkPassRecord(k, v) != nil {
				return damaged(j.path, 0, "passback entry of %d+%d bytes", len(k), len(v))
			}
			j.passes[[passKeyLen]byte(k)] = int64(binary.BigEndian.Uint64(v))
			return nil
		})
	})
}

func (j *Journal) view(fn func(*bolt.Tx) error) error {
	return safely(j.path, func() error { return j.db.View(fn) })
}

func (j *Journal) update(fn func(*bolt.Tx) error) error {
	if j.readOnly {
		return ErrReadOnly
	}
	return safely(j.path, func() error { return j.db.Update(fn) })
}

// Close closes the file. Every committed change is already on disk.
func (j *Journal) Close() error {
	if err := j.db.Close(); err != nil {
		return fmt.Errorf("journal: close %s: %w", j.path, err)
	}
	return nil
}

// Path returns the file's path.
func (j *Journal) Path() string { return j.path }

// Check checks the whole file, as Cache.Check does.
func (j *Journal) Check() error {
	if err := checkDB(j.db, j.path, j.readOnly); err != nil {
		return fmt.Errorf("journal: check %s: %w", j.path, err)
	}
	return nil
}

// LastPass returns the time of id's last passage in direction dir, from
// memory.
func (j *Journal) LastPass(id *verify.CertID, dir verify.Direction) (time.Time, bool) {
	j.passMu.RLock()
	ns, ok := j.passes[passKey(id, dir)]
	j.passMu.RUnlock()
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, ns).UTC(), true
}

// Passbacks counts the passages held (within the window, once purged).
func (j *Journal) Passbacks() int {
	j.passMu.RLock()
	defer j.passMu.RUnlock()
	return len(j.passes)
}

func appendEvent(tx *bolt.Tx, e *event.Event) error {
	if err := e.Validate(); err != nil {
		return err
	}
	b := tx.Bucket(bucketEvents)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	e.Seq = seq
	// Sequence numbers only grow: every new key goes at the end, so pages
	// can be filled whole.
	b.FillPercent = 1.0
	return b.Put(u64(seq), encodeEvent(e))
}

// AppendEvent stores e durably and returns its sequence number.
func (j *Journal) AppendEvent(e event.Event) (uint64, error) {
	if err := j.update(func(tx *bolt.Tx) error { return appendEvent(tx, &e) }); err != nil {
		return 0, fmt.Errorf("journal: append %s event: %w", e.Kind, err)
	}
	return e.Seq, nil
}

// RecordPassage stores, in one transaction, that id passed in direction dir
// at e.Time (the anti-passback state) and the event e that reports it.
func (j *Journal) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	if dir != verify.Entry && dir != verify.Exit {
		return 0, fmt.Errorf("journal: record passage of %s: direction %v", id, dir)
	}
	pk := passKey(&id, dir)
	ns := e.Time.UnixNano()
	err := j.update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketPassback).Put(pk[:], u64(uint64(ns))); err != nil {
			return err
		}
		if err := appendEvent(tx, &e); err != nil {
			return err
		}
		tx.OnCommit(func() {
			j.passMu.Lock()
			j.passes[pk] = ns
			j.passMu.Unlock()
		})
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("journal: record passage of %s: %w", id, err)
	}
	return e.Seq, nil
}

// Events returns up to max events with a sequence number above after, in
// order: the next upload.
func (j *Journal) Events(after uint64, max int) ([]event.Event, error) {
	var out []event.Event
	err := j.view(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketEvents).Cursor()
		for k, v := cur.Seek(u64(after + 1)); k != nil && len(out) < max; k, v = cur.Next() {
			if len(k) != 8 {
				return damaged(j.path, 0, "event key of %d bytes", len(k))
			}
			e, err := decodeEvent(binary.BigEndian.Uint64(k), v)
			if err != nil {
				return damaged(j.path, 0, "%v", err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: read events after %d: %w", after, err)
	}
	return out, nil
}

// DeleteEventsThrough deletes the events up to and including seq, once the
// issuer has acknowledged them, and returns how many it deleted. It keeps
// seq as the last acknowledged sequence number, which tells a salvage of
// a damaged journal where the events it should find begin.
func (j *Journal) DeleteEventsThrough(seq uint64) (int, error) {
	n := 0
	err := j.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		var keys [][]byte
		cur := b.Cursor()
		for k, _ := cur.First(); k != nil && binary.BigEndian.Uint64(k) <= seq; k, _ = cur.Next() {
			keys = append(keys, k)
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		n = len(keys)
		meta := tx.Bucket(bucketMeta)
		if old := meta.Get(keyAcked); len(old) == 8 && binary.BigEndian.Uint64(old) >= seq {
			return nil
		}
		return meta.Put(keyAcked, u64(seq))
	})
	if err != nil {
		return 0, fmt.Errorf("journal: delete events through %d: %w", seq, err)
	}
	return n, nil
}

// Backlog is the event log not yet uploaded.
type Backlog struct {
	Events  int       `json:"events"`
	Oldest  time.Time `json:"oldest,omitzero"`
	LastSeq uint64    `json:"last_seq"`
}

// Backlog counts the events not yet uploaded.
func (j *Journal) Backlog() (Backlog, error) {
	var b Backlog
	err := j.view(func(tx *bolt.Tx) error {
		ev := tx.Bucket(bucketEvents)
		b.LastSeq = ev.Sequence()
		b.Events = ev.Stats().KeyN
		if _, v := ev.Cursor().First(); v != nil {
			e, err := decodeEvent(0, v)
			if err != nil {
				return damaged(j.path, 0, "%v", err)
			}
			b.Oldest = e.Time
		}
		return nil
	})
	if err != nil {
		return Backlog{}, fmt.Errorf("journal: backlog: %w", err)
	}
	return b, nil
}
