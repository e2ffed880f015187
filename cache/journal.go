package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/event"
	"gateagent/verify"
)

// JournalSchema is the layout of the journal this build reads and writes:
// 2, every passage and event with a MAC under the cache key. A journal of
// schema 1 is migrated in place when it is opened for writing.
const JournalSchema = 2

// The journal's file:
//
//	meta      schema → 2; kind → "journal"; keycheck → the cache key's
//	          check value; acked → the last sequence number the issuer
//	          acknowledged (8, big-endian)
//	passback  cert ID ‖ direction → time of the last passage (Unix ns) ‖ MAC
//	events    sequence number (8, big-endian) → the event ‖ MAC
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
	key      *Key
	// legacy: a journal of schema 1 opened read-only (diag), whose
	// records have no MAC yet; they are read as they are.
	legacy bool

	// passes mirrors the passback bucket in memory: the state is small
	// (passages within the window) and read on every scan, so the lookup
	// reads it here instead of descending a B+tree. It is written only
	// after the bucket's transaction commits. bad holds the passages that
	// failed authentication when read: their lookups are refused until
	// RepairPassage replaces them.
	passMu sync.RWMutex
	passes map[[passKeyLen]byte]int64
	bad    map[[passKeyLen]byte]bool
}

// OpenJournal opens the journal at path, creating it when absent (unless
// ReadOnly). The file is checked whole first: a file that is not gives a
// *CorruptError (errors.Is ErrCorrupt) and is left as it is. A journal of
// schema 1 is migrated (its events and passages given their MACs, a batch
// per transaction, resumable after a power cut); a journal made under
// another cache key gives ErrWrongKey.
func OpenJournal(path string, opts *Options) (*Journal, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Key == nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, ErrNoKey)
	}
	db, _, err := openDB(path, o, "")
	if err != nil {
		return nil, fmt.Errorf("journal: open %s: %w", path, err)
	}
	j := &Journal{db: db, path: path, readOnly: o.ReadOnly, key: o.Key}
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
	var check []byte
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
		meta := tx.Bucket(bucketMeta)
		if check = meta.Get(keyCheck); check == nil {
			return nil // a journal of schema 1 before its migration
		}
		return fileKey(j.key, meta, j.path, func() bool {
			// Evidence that the key is right after all: the first
			// passage or event authenticates.
			if k, v := tx.Bucket(bucketPassback).Cursor().First(); k != nil {
				if _, ok := openPass(j.key, k, v); ok {
					return true
				}
			}
			k, v := tx.Bucket(bucketEvents).Cursor().First()
			if len(k) != 8 {
				return false
			}
			_, ok, _ := openEvent(j.key, binary.BigEndian.Uint64(k), v)
			return ok
		})
	})
	switch {
	case err != nil:
		return err
	case found == 0 && j.readOnly:
		return &CorruptError{Path: j.path, Kind: Empty, Detail: "no buckets yet", Problems: 1}
	case found == 0:
		return j.update(func(tx *bolt.Tx) error {
			return createFile(tx, kindJournal, JournalSchema, j.key, bucketPassback, bucketEvents)
		})
	case check == nil && found == JournalSchema:
		return damaged(j.path, 0, "key check value missing")
	}
	if found == 1 {
		if j.readOnly {
			j.legacy = true
			return nil
		}
		return j.migrate()
	}
	return nil
}

// migrateBatch is how many events one migration transaction rewrites.
const migrateBatch = 1000

// migrate gives a journal of schema 1 its MACs: the key check value first
// (so that a migration resumed under another key is refused), then the
// events a batch per transaction, then the passages, then the schema.
// Each record says by its own shape whether it has been done, so a
// migration cut by a power failure resumes where it stopped. The records
// are trusted once, as they were written: from then on they are
// authenticated.
func (j *Journal) migrate() error {
	err := j.update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(keyCheck); v != nil {
			return checkKey(j.key, v)
		}
		return meta.Put(keyCheck, j.key.check[:])
	})
	if err != nil {
		return fmt.Errorf("migrate to schema %d: %w", JournalSchema, err)
	}
	var resume []byte
	for done := false; !done; {
		err := j.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketEvents)
			b.FillPercent = 1.0
			cur := b.Cursor()
			k, v := cur.First()
			if resume != nil {
				k, v = cur.Seek(resume)
			}
			type kv struct{ k, v []byte }
			var batch []kv
			for ; k != nil && len(batch) < migrateBatch; k, v = cur.Next() {
				if v[0] == eventVersion {
					continue
				}
				nv, err := upgradeEvent(j.key, binary.BigEndian.Uint64(k), v)
				if err != nil {
					return damaged(j.path, 0, "%v", err)
				}
				batch = append(batch, kv{bytes.Clone(k), nv})
			}
			if k == nil {
				done = true
			} else {
				resume = bytes.Clone(k)
			}
			for _, r := range batch {
				if err := b.Put(r.k, r.v); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("migrate events to schema %d: %w", JournalSchema, err)
		}
	}
	err = j.update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPassback)
		type kv struct{ k, v []byte }
		var up []kv
		if err := pb.ForEach(func(k, v []byte) error {
			if len(v) == passLenV1 {
				up = append(up, kv{bytes.Clone(k), passValue(j.key, k, int64(binary.BigEndian.Uint64(v)))})
			}
			return nil
		}); err != nil {
			return err
		}
		for _, r := range up {
			if err := pb.Put(r.k, r.v); err != nil {
				return err
			}
		}
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], JournalSchema)
		return tx.Bucket(bucketMeta).Put(keySchema, v[:])
	})
	if err != nil {
		return fmt.Errorf("migrate passages to schema %d: %w", JournalSchema, err)
	}
	return nil
}

// loadPasses fills the in-memory copy of the passback bucket, each
// passage authenticated; one that fails is marked bad.
func (j *Journal) loadPasses() error {
	j.passes = make(map[[passKeyLen]byte]int64)
	j.bad = make(map[[passKeyLen]byte]bool)
	return j.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPassback).ForEach(func(k, v []byte) error {
			if checkPassRecord(k, v) != nil {
				return damaged(j.path, 0, "passback entry of %d+%d bytes", len(k), len(v))
			}
			pk := [passKeyLen]byte(k)
			if j.legacy && len(v) == passLenV1 {
				j.passes[pk] = int64(binary.BigEndian.Uint64(v))
				return nil
			}
			if ns, ok := openPass(j.key, k, v); ok {
				j.passes[pk] = ns
			} else {
				j.bad[pk] = true
			}
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

// Schema is the file's layout: JournalSchema, or 1 for a journal opened
// read-only before its migration.
func (j *Journal) Schema() int {
	if j.legacy {
		return 1
	}
	return JournalSchema
}

// Check checks the whole file, as Cache.Check does.
func (j *Journal) Check() error {
	if err := checkDB(j.db, j.path, j.readOnly); err != nil {
		return fmt.Errorf("journal: check %s: %w", j.path, err)
	}
	return nil
}

// LastPass returns the time of id's last passage in direction dir, from
// memory. A passage that failed authentication is an *AuthError: it
// cannot say whether the certificate passed here within the window.
func (j *Journal) LastPass(id *verify.CertID, dir verify.Direction) (time.Time, bool, error) {
	pk := passKey(id, dir)
	j.passMu.RLock()
	ns, ok := j.passes[pk]
	bad := len(j.bad) > 0 && j.bad[pk]
	j.passMu.RUnlock()
	if bad {
		return time.Time{}, false, &AuthError{Path: j.path, Bucket: "passback", Key: append([]byte(nil), pk[:]...)} // a copy: pk stays on the stack
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return time.Unix(0, ns).UTC(), true, nil
}

// RepairPassage replaces a passage of id in direction dir that failed
// authentication with one at time at, authenticated. The true time cannot
// be known (the feed cannot give it back: only the gate saw the passage),
// so the caller gives the latest it can have been, the moment the damage
// was found: the certificate is then refused in this direction for one
// anti-passback window, never let through twice. A passage that
// authenticates (already repaired, or written since) is left alone; the
// result says whether one was replaced.
func (j *Journal) RepairPassage(id verify.CertID, dir verify.Direction, at time.Time) (bool, error) {
	pk := passKey(&id, dir)
	ns := at.UnixNano()
	repaired := false
	err := j.update(func(tx *bolt.Tx) error {
		pb := tx.Bucket(bucketPassback)
		if v := pb.Get(pk[:]); v != nil {
			if _, ok := openPass(j.key, pk[:], v); ok {
				return nil
			}
		} else {
			j.passMu.RLock()
			bad := j.bad[pk]
			j.passMu.RUnlock()
			if !bad {
				return nil
			}
		}
		if err := pb.Put(pk[:], passValue(j.key, pk[:], ns)); err != nil {
			return err
		}
		repaired = true
		j.mirrorOnCommit(tx, pk, ns)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("journal: repair passage of %s: %w", id, err)
	}
	return repaired, nil
}

// Passage is one passage the journal holds (its anti-passback state).
type Passage struct {
	Cert verify.CertID
	Dir  verify.Direction
	At   time.Time
}

// Passages returns the passages at or after since that authenticated when
// the journal was opened or were recorded since, in no order.
func (j *Journal) Passages(since time.Time) []Passage {
	cut := since.UnixNano()
	j.passMu.RLock()
	defer j.passMu.RUnlock()
	var out []Passage
	for pk, ns := range j.passes {
		if ns < cut || j.bad[pk] {
			continue
		}
		var p Passage
		copy(p.Cert[:], pk[:verify.CertIDLen])
		p.Dir, p.At = verify.Direction(pk[verify.CertIDLen]), time.Unix(0, ns)
		out = append(out, p)
	}
	return out
}

// Passbacks counts the passages held (within the window, once purged).
func (j *Journal) Passbacks() int {
	j.passMu.RLock()
	defer j.passMu.RUnlock()
	return len(j.passes)
}

func appendEvent(tx *bolt.Tx, k *Key, e *event.Event) error {
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
	return b.Put(u64(seq), encodeEvent(k, seq, e))
}

// AppendEvent stores e durably and returns its sequence number.
func (j *Journal) AppendEvent(e event.Event) (uint64, error) {
	if err := j.update(func(tx *bolt.Tx) error { return appendEvent(tx, j.key, &e) }); err != nil {
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
		if err := tx.Bucket(bucketPassback).Put(pk[:], passValue(j.key, pk[:], ns)); err != nil {
			return err
		}
		if err := appendEvent(tx, j.key, &e); err != nil {
			return err
		}
		j.mirrorOnCommit(tx, pk, ns)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("journal: record passage of %s: %w", id, err)
	}
	return e.Seq, nil
}

// Events returns up to max events with a sequence number above after, in
// order, each authenticated: one that fails is an *AuthError naming it.
func (j *Journal) Events(after uint64, max int) ([]event.Event, error) {
	var out []event.Event
	err := j.readEvents(after, max, func(e event.Event, ok bool) error {
		if !ok {
			return &AuthError{Path: j.path, Bucket: "events", Key: u64(e.Seq)}
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("journal: read events after %d: %w", after, err)
	}
	return out, nil
}

// UploadBatch returns the oldest events not yet uploaded, up to max, for
// the issuer. An event that fails authentication is not sent as it is:
// an alarm event under its sequence number takes its place (stamped
// now), saying that it was damaged on the gate, so the issuer holds a
// record of every number and nothing forged reaches it. damaged lists
// those sequence numbers.
func (j *Journal) UploadBatch(max int, now time.Time) (evs []event.Event, damaged []uint64, err error) {
	err = j.readEvents(0, max, func(e event.Event, ok bool) error {
		if !ok {
			damaged = append(damaged, e.Seq)
			e = damagedAlarm(e.Seq, now)
		}
		evs = append(evs, e)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("journal: read events for upload: %w", err)
	}
	return evs, damaged, nil
}

// damagedAlarm is what stands for event seq, which failed authentication,
// wherever it goes on: an alarm saying so, stamped now.
func damagedAlarm(seq uint64, now time.Time) event.Event {
	return event.Event{Seq: seq, Time: now, Kind: event.Alarm,
		Detail: fmt.Sprintf("event %d failed its integrity check on the gate (damaged on its disk): not uploaded", seq)}
}

// readEvents calls fn with each event after after, up to max, and whether
// it authenticated (a legacy journal's are taken as they are).
func (j *Journal) readEvents(after uint64, max int, fn func(e event.Event, ok bool) error) error {
	return j.view(func(tx *bolt.Tx) error { return j.eachEvent(tx, after, max, fn) })
}

// eachEvent is readEvents inside the transaction tx.
func (j *Journal) eachEvent(tx *bolt.Tx, after uint64, max int, fn func(e event.Event, ok bool) error) error {
	cur := tx.Bucket(bucketEvents).Cursor()
	n := 0
	for k, v := cur.Seek(u64(after + 1)); k != nil && n < max; k, v = cur.Next() {
		if len(k) != 8 {
			return damaged(j.path, 0, "event key of %d bytes", len(k))
		}
		seq := binary.BigEndian.Uint64(k)
		var e event.Event
		var ok bool
		var err error
		if j.legacy {
			e, err = decodeEvent(seq, v)
			ok = err == nil
		} else {
			e, ok, err = openEvent(j.key, seq, v)
		}
		if err != nil {
			return damaged(j.path, 0, "%v", err)
		}
		if err := fn(e, ok); err != nil {
			return err
		}
		n++
	}
	return nil
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

// Renumber gives the events not yet uploaded new sequence numbers, after
// after and in their order, and makes the next event follow them (or the
// highest number the journal ever gave, if that is higher): the
// issuer holds numbers up to after for other events of this gate (its
// journal started again: a new board, or the journal moved aside), and an
// event under a number it holds would be taken for a duplicate and lost.
// One transaction: a power cut leaves the old numbers or the new. An event
// that fails authentication cannot be sealed under a new number: an alarm
// saying so takes its place, as UploadBatch would send it. It returns the
// number of events renumbered.
func (j *Journal) Renumber(after uint64, now time.Time) (int, error) {
	n := 0
	err := j.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEvents)
		var evs []event.Event
		err := j.eachEvent(tx, 0, math.MaxInt, func(e event.Event, ok bool) error {
			if !ok {
				e = damagedAlarm(e.Seq, now)
			}
			evs = append(evs, e)
			return nil
		})
		if err != nil {
			return err
		}
		if after > ^uint64(0)-uint64(len(evs)) {
			return fmt.Errorf("no sequence numbers left after %d", after)
		}
		for _, e := range evs {
			if err := b.Delete(u64(e.Seq)); err != nil {
				return err
			}
		}
		b.FillPercent = 1.0
		for i := range evs {
			seq := after + 1 + uint64(i)
			evs[i].Seq = seq
			if err := b.Put(u64(seq), encodeEvent(j.key, seq, &evs[i])); err != nil {
				return err
			}
		}
		n = len(evs)
		if err := b.SetSequence(max(after+uint64(n), b.Sequence())); err != nil {
			return err
		}
		// Nothing up to after is this journal's to upload.
		return tx.Bucket(bucketMeta).Put(keyAcked, u64(after))
	})
	if err != nil {
		return 0, fmt.Errorf("journal: renumber events after %d: %w", after, err)
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

// mirrorOnCommit updates the in-memory passback mirror with the passage
// pk at ns once tx has committed (never for a rolled-back one), and
// forgets that its stored entry failed to authenticate.
func (j *Journal) mirrorOnCommit(tx *bolt.Tx, pk [passKeyLen]byte, ns int64) {
	tx.OnCommit(func() {
		j.passMu.Lock()
		j.passes[pk] = ns
		delete(j.bad, pk)
		j.passMu.Unlock()
	})
}
