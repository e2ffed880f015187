package cache

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"gateagent/event"
	"gateagent/internal/regfile"
	"gateagent/internal/seglog"
	"gateagent/verify"
)

// JournalSchema is the layout of the journal this build reads and writes:
// 3, a log of records in segment files (internal/seglog), every passage
// and event with a MAC under the cache key. Journals of schema 1 and 2
// were one bbolt file, journal.db: the first start of this build moves
// its events and passages into the log and renames it
// journal.db.migrated.
const JournalSchema = 3

// boltJournalSchema is the last schema of journal.db.
const boltJournalSchema = 2

// The journal is a directory (JournalPath) holding its log,
// journal.GEN.log (internal/seglog: every record synced, in 4 KB blocks
// of its own), and a LOCK file. Every record starts with a head,
//
//	key check value (16) ‖ acked (8) ‖ last sequence number given (8)
//
// so that the newest record alone says where the events stand, however
// many older segments have been given back. Then, by kind:
//
//	event       seq (8) ‖ the event sealed (encodeEvent)
//	passage     cert ID ‖ direction (17) ‖ time ‖ MAC (passValue) ‖ seq ‖ event
//	repair      cert ID ‖ direction ‖ time ‖ MAC
//	ack         nothing more
//	checkpoint  id (8) ‖ part (4) ‖ parts (4) ‖ entries: 'e' seq len event,
//	            'p' cert ID ‖ direction ‖ time ‖ MAC, 'b' cert ID ‖ direction
//	            (a passage that failed authentication: refused until repaired)
//
// The head is not authenticated, as journal.db's acked was not: bytes
// changed there can hide events from the upload or skip numbers, as
// deleting records can; every event and passage carries its MAC.
//
// A grant's event is one record and one fdatasync; a passage (its event
// and its anti-passback state) one more. An upload's acknowledgement
// writes nothing: it rides on the next record's head (an ack record is
// written only for an upload that carried a damaged event's alarm, which
// would differ if sent again). After a restart the events acknowledged
// since the last record are uploaded again, and the issuer counts them as
// duplicates. A checkpoint writes the whole state densely: it migrates a
// journal.db, takes in what a salvage or an old cache held, renumbers
// the events, and compacts the log when an issuer outage keeps segments
// from being given back. It counts once its last part is synced.
//
// The journal is apart from the certificate cache because it is what only
// the gate knows (the feed can rebuild the certificates, not this).
const (
	recEvent      byte = 1
	recPassage    byte = 2
	recRepair     byte = 3
	recAck        byte = 4
	recCheckpoint byte = 5

	jheadLen = tagLen + 8 + 8
	// journalSegment is the size of a journal segment: about a thousand
	// records.
	journalSegment = 4 << 20
	// compactSegments is how many live segments (64 MB of 4 MB ones)
	// make the journal write a checkpoint and give back the segments
	// before it: a day of issuer outage at 20,000 grants fills about
	// 160 MB of blocks, which a checkpoint holds in about 3 MB.
	compactSegments = 16
	// keepFreeSegments is how many segments given back are kept for reuse:
	// passages keep theirs until the hourly purge, which gives back about
	// two at once, so four spares keep the pool from running dry and every
	// segment is written with zeros once in its life.
	keepFreeSegments = 4
)

// Journal is the gate's event log and anti-passback state. Its methods
// are safe for concurrent use.
type Journal struct {
	dir      string
	readOnly bool
	key      *Key
	segment  int64 // new segments' size
	lockFile *os.File
	// legacy is the journal.db a read-only journal was read from, not yet
	// migrated (its schema in legacySchema).
	legacy       string
	legacySchema int

	mu  sync.Mutex // writes, and the state below but the passages
	log *seglog.Log
	st  jstate

	// The passages, read on every scan: their own lock, so a scan never
	// waits behind a write's fdatasync.
	passMu sync.RWMutex
	passes map[[passKeyLen]byte]jpass
}

// jpass is a passage held: its time, the record that holds it, and
// whether it failed authentication (its lookups are refused until
// RepairPassage replaces it).
type jpass struct {
	ns  int64
	lsn uint64
	bad bool
}

// jevent is an event not yet acknowledged: sealed as stored.
type jevent struct {
	seq, lsn uint64
	sealed   []byte
}

// jstate is what the records say, but the passages.
type jstate struct {
	acked, lastSeq uint64
	events         []jevent // by sequence number
}

// journalFS, when set, holds the journal's segments instead of the
// operating system's file system: a test's model of a power cut.
var journalFS seglog.FS

// JournalPath is where the journal lives beside the certificate cache at
// cachePath: the directory journal in the same directory.
func JournalPath(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), "journal")
}

// LegacyJournalPath is where builds before schema 3 kept the journal: the
// bbolt file journal.db beside the journal's directory.
func LegacyJournalPath(journalDir string) string {
	return filepath.Join(filepath.Dir(journalDir), "journal.db")
}

// OpenJournal opens the journal in the directory dir, creating it when
// absent (unless ReadOnly). A log that is not whole gives a *CorruptError
// (errors.Is ErrCorrupt) and is left as it is; one written under another
// cache key gives ErrWrongKey. A journal.db beside it (schema 1 or 2) is
// moved into the log at the first open for writing, or read as it is by
// a read-only open that finds no log.
func OpenJournal(dir string, opts *Options) (*Journal, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Key == nil {
		return nil, fmt.Errorf("journal: open %s: %w", dir, ErrNoKey)
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	j := &Journal{dir: dir, readOnly: o.ReadOnly, key: o.Key, segment: o.JournalSegment}
	if j.segment == 0 {
		j.segment = journalSegment
	}
	if err := j.open(o.LockTimeout); err != nil {
		j.Close()
		return nil, fmt.Errorf("journal: open %s: %w", dir, err)
	}
	return j, nil
}

func (j *Journal) open(timeout time.Duration) error {
	// Builds before schema 3 kept the journal in journal.db beside the
	// directory journal (a journal of another name has none).
	legacy := LegacyJournalPath(j.dir)
	fi, lerr := os.Lstat(legacy)
	hasLegacy := lerr == nil && fi.Mode().IsRegular() && filepath.Base(j.dir) == "journal"
	if fi, err := os.Lstat(j.dir); err == nil && !fi.IsDir() {
		if j.readOnly && fi.Mode().IsRegular() {
			return j.readLegacy(j.dir) // a journal.db of an older release, or a copy
		}
		return &CorruptError{Path: j.dir, Kind: Foreign, Detail: "not a directory: " + regfile.Kind(fi.Mode()), Problems: 1}
	} else if errors.Is(err, fs.ErrNotExist) {
		if j.readOnly {
			if hasLegacy {
				return j.readLegacy(legacy)
			}
			return &CorruptError{Path: j.dir, Kind: Empty, Detail: "no journal yet", Problems: 1}
		}
		if err := os.Mkdir(j.dir, 0o700); err != nil {
			return err
		}
		syncDir(filepath.Dir(j.dir))
	} else if err != nil {
		return err
	}
	flag := os.O_RDWR | os.O_CREATE
	if j.readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(filepath.Join(j.dir, "LOCK"), flag, 0o600)
	if errors.Is(err, fs.ErrNotExist) && j.readOnly {
		f, err = os.Open(j.dir) // a journal made by hand, or being made: lock the directory
	}
	if err != nil {
		return err
	}
	j.lockFile = f
	if err := lock(f, !j.readOnly, timeout); err != nil {
		return err
	}
	log, st, passes, err := j.replay(j.readOnly)
	if err != nil {
		return err
	}
	j.log, j.st, j.passes = log, st, passes
	if !j.readOnly && log.First() == log.Next() {
		// A new journal: its first record carries the key check value, by
		// which an open under another key is refused.
		j.mu.Lock()
		_, err := j.log.Append(recAck, j.head(0, 0))
		j.mu.Unlock()
		if err != nil {
			return err
		}
	}
	if !hasLegacy {
		return nil
	}
	if j.readOnly {
		if j.log.Next() <= 2 && len(j.st.events) == 0 { // nothing migrated yet: read the old file
			j.log.Close()
			j.log = nil
			return j.readLegacy(legacy)
		}
		return nil
	}
	return j.migrate(legacy)
}

// replay reads the log into a new state.
func (j *Journal) replay(readOnly bool) (*seglog.Log, jstate, map[[passKeyLen]byte]jpass, error) {
	r := replayer{j: j, passes: map[[passKeyLen]byte]jpass{}}
	log, err := seglog.Open(j.dir, "journal", &seglog.Options{SegmentSize: j.segment, KeepFree: keepFreeSegments, ReadOnly: readOnly, FS: journalFS}, r.record)
	if err != nil {
		var de *seglog.DamageError
		if errors.As(err, &de) {
			err = &CorruptError{Path: j.dir, Kind: Damaged, Detail: de.Error(), Problems: 1}
		}
		return nil, jstate{}, nil, err
	}
	return log, r.st, r.passes, nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// Close closes the journal. Every record written is already on disk.
func (j *Journal) Close() error {
	var errs []error
	if j.log != nil {
		errs = append(errs, j.log.Close())
	}
	if j.lockFile != nil {
		errs = append(errs, j.lockFile.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("journal: close %s: %w", j.dir, err)
	}
	return nil
}

// Path returns the journal's directory.
func (j *Journal) Path() string { return j.dir }

// Schema is the journal's layout: JournalSchema, or the schema of a
// journal.db that a read-only open read because it is not migrated yet.
func (j *Journal) Schema() int {
	if j.legacy != "" {
		return j.legacySchema
	}
	return JournalSchema
}

// Check reads the journal's log again from the disk and checks every
// record's structure (a read-only open's, beside this one).
func (j *Journal) Check() error {
	if j.legacy != "" {
		if _, err := CheckFile(j.legacy); err != nil {
			return fmt.Errorf("journal: check %s: %w", j.legacy, err)
		}
		return nil
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	log, _, _, err := j.replay(true)
	if err != nil {
		return fmt.Errorf("journal: check %s: %w", j.dir, err)
	}
	log.Close()
	return nil
}

// LastPass returns the time of id's last passage in direction dir, from
// memory. A passage that failed authentication is an *AuthError: it
// cannot say whether the certificate passed here within the window.
func (j *Journal) LastPass(id *verify.CertID, dir verify.Direction) (time.Time, bool, error) {
	pk := passKey(id, dir)
	j.passMu.RLock()
	p, ok := j.passes[pk]
	j.passMu.RUnlock()
	if p.bad {
		return time.Time{}, false, &AuthError{Path: j.dir, Bucket: "passback", Key: append([]byte(nil), pk[:]...)} // a copy: pk stays on the stack
	}
	if !ok {
		return time.Time{}, false, nil
	}
	return time.Unix(0, p.ns).UTC(), true, nil
}

// Passage is one passage the journal holds (its anti-passback state).
type Passage struct {
	Cert verify.CertID
	Dir  verify.Direction
	At   time.Time
}

// Passages returns the passages at or after since that authenticated, in
// no order.
func (j *Journal) Passages(since time.Time) []Passage {
	cut := since.UnixNano()
	j.passMu.RLock()
	defer j.passMu.RUnlock()
	var out []Passage
	for pk, p := range j.passes {
		if p.ns < cut || p.bad {
			continue
		}
		var o Passage
		copy(o.Cert[:], pk[:verify.CertIDLen])
		o.Dir, o.At = verify.Direction(pk[verify.CertIDLen]), time.Unix(0, p.ns)
		out = append(out, o)
	}
	return out
}

// Passbacks counts the passages held (within the window, once purged).
func (j *Journal) Passbacks() int {
	j.passMu.RLock()
	defer j.passMu.RUnlock()
	return len(j.passes)
}

// AppendEvent stores e durably and returns its sequence number.
func (j *Journal) AppendEvent(e event.Event) (uint64, error) {
	seq, err := j.appendEvent(&e, nil)
	if err != nil {
		return 0, fmt.Errorf("journal: append %s event: %w", e.Kind, err)
	}
	return seq, nil
}

// RecordPassage stores, in one record, that id passed in direction dir at
// e.Time (the anti-passback state) and the event e that reports it.
func (j *Journal) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	if dir != verify.Entry && dir != verify.Exit {
		return 0, fmt.Errorf("journal: record passage of %s: direction %v", id, dir)
	}
	pk := passKey(&id, dir)
	seq, err := j.appendEvent(&e, &pk)
	if err != nil {
		return 0, fmt.Errorf("journal: record passage of %s: %w", id, err)
	}
	return seq, nil
}

// appendEvent writes e, with the passage pk at e.Time when pk is set, as
// one record.
func (j *Journal) appendEvent(e *event.Event, pk *[passKeyLen]byte) (uint64, error) {
	if err := e.Validate(); err != nil {
		return 0, err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writable(); err != nil {
		return 0, err
	}
	if j.st.lastSeq == ^uint64(0) {
		return 0, errors.New("no sequence numbers left")
	}
	seq := j.st.lastSeq + 1
	e.Seq = seq
	sealed := encodeEvent(j.key, seq, e)
	kind := recEvent
	p := j.head(j.st.acked, seq)
	if pk != nil {
		kind = recPassage
		p = append(append(p, pk[:]...), passValue(j.key, pk[:], e.Time.UnixNano())...)
	}
	p = append(append(p, u64(seq)...), sealed...)
	lsn, err := j.log.Append(kind, p)
	if err != nil {
		return 0, err
	}
	j.st.lastSeq = seq
	j.st.events = append(j.st.events, jevent{seq: seq, lsn: lsn, sealed: sealed})
	if pk != nil {
		j.setPass(*pk, jpass{ns: e.Time.UnixNano(), lsn: lsn})
	}
	return seq, nil
}

// head is a record's head for the state acked and lastSeq.
func (j *Journal) head(acked, lastSeq uint64) []byte {
	p := make([]byte, 0, 256)
	p = append(p, j.key.check[:]...)
	p = append(p, u64(acked)...)
	return append(p, u64(lastSeq)...)
}

// writable is nil when the journal can take a record: opened for writing,
// and its log taking records. A log stopped by a failed write or sync
// (seglog's Err: what reached the disk is unknown) is opened again from
// the disk first, so a full disk that has been freed, or a transient
// error, costs the gate no restart.
func (j *Journal) writable() error {
	if j.readOnly {
		return ErrReadOnly
	}
	if j.log.Err() == nil {
		return nil
	}
	j.log.Close()
	log, st, passes, err := j.replay(false)
	if err != nil {
		return fmt.Errorf("open the log again after a failed write: %w", err)
	}
	j.log, j.st = log, st
	j.passMu.Lock()
	j.passes = passes
	j.passMu.Unlock()
	return nil
}

func (j *Journal) setPass(pk [passKeyLen]byte, p jpass) {
	j.passMu.Lock()
	j.passes[pk] = p
	j.passMu.Unlock()
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
	j.mu.Lock()
	defer j.mu.Unlock()
	j.passMu.RLock()
	p := j.passes[pk]
	j.passMu.RUnlock()
	if !p.bad {
		return false, nil
	}
	if err := j.writable(); err != nil {
		return false, fmt.Errorf("journal: repair passage of %s: %w", id, err)
	}
	ns := at.UnixNano()
	rec := append(append(j.head(j.st.acked, j.st.lastSeq), pk[:]...), passValue(j.key, pk[:], ns)...)
	lsn, err := j.log.Append(recRepair, rec)
	if err != nil {
		return false, fmt.Errorf("journal: repair passage of %s: %w", id, err)
	}
	j.setPass(pk, jpass{ns: ns, lsn: lsn})
	return true, nil
}

// Events returns up to max events with a sequence number above after, in
// order, each authenticated: one that fails is an *AuthError naming it.
func (j *Journal) Events(after uint64, max int) ([]event.Event, error) {
	var out []event.Event
	err := j.readEvents(after, max, func(e event.Event, ok bool) error {
		if !ok {
			return &AuthError{Path: j.dir, Bucket: "events", Key: u64(e.Seq)}
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
// it authenticated.
func (j *Journal) readEvents(after uint64, limit int, fn func(e event.Event, ok bool) error) error {
	j.mu.Lock()
	i, _ := slices.BinarySearchFunc(j.st.events, after+1, func(e jevent, seq uint64) int { return cmp.Compare(e.seq, seq) })
	evs := j.st.events[i:min(len(j.st.events), i+max(limit, 0))]
	evs = slices.Clone(evs)
	j.mu.Unlock()
	for _, ev := range evs {
		e, ok, err := openEvent(j.key, ev.seq, ev.sealed)
		if err != nil {
			return damaged(j.dir, 0, "event %d: %v", ev.seq, err)
		}
		if err := fn(e, ok); err != nil {
			return err
		}
	}
	return nil
}

// DeleteEventsThrough forgets the events up to and including seq, once the
// issuer has acknowledged them, and returns how many. The acknowledgement
// is written with the next record (one for an upload that carried a
// damaged event's alarm at once), and the segments holding only what is
// no longer needed are given back.
func (j *Journal) DeleteEventsThrough(seq uint64) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.readOnly {
		return 0, fmt.Errorf("journal: delete events through %d: %w", seq, ErrReadOnly)
	}
	i, _ := slices.BinarySearchFunc(j.st.events, seq+1, func(e jevent, s uint64) int { return cmp.Compare(e.seq, s) })
	gone := j.st.events[:i]
	anyDamaged := false
	for _, ev := range gone {
		if _, ok, _ := openEvent(j.key, ev.seq, ev.sealed); !ok {
			anyDamaged = true
		}
	}
	if seq > j.st.acked {
		j.st.acked = seq
	}
	j.st.events = slices.Clone(j.st.events[i:])
	if anyDamaged {
		if err := j.writable(); err != nil {
			return 0, fmt.Errorf("journal: delete events through %d: %w", seq, err)
		}
		if _, err := j.log.Append(recAck, j.head(j.st.acked, j.st.lastSeq)); err != nil {
			return 0, fmt.Errorf("journal: delete events through %d: %w", seq, err)
		}
	}
	if err := j.release(); err != nil {
		return len(gone), fmt.Errorf("journal: delete events through %d: %w", seq, err)
	}
	return len(gone), nil
}

// PurgePassages forgets the passages older than window (which must be at
// least the verifier's anti-passback window) and gives back the segments
// no longer needed. A passage that failed authentication stays, for its
// repair.
func (j *Journal) PurgePassages(now time.Time, window time.Duration) (int, error) {
	if window < 0 {
		return 0, fmt.Errorf("journal: purge: negative window %v", window)
	}
	cut := now.Add(-window).UnixNano()
	n := 0
	j.passMu.Lock()
	for k, p := range j.passes {
		if !p.bad && p.ns < cut {
			delete(j.passes, k)
			n++
		}
	}
	j.passMu.Unlock()
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.readOnly {
		return n, nil
	}
	if err := j.release(); err != nil {
		return n, fmt.Errorf("journal: purge passages: %w", err)
	}
	return n, nil
}

// release gives back the segments whose records are all no longer needed
// (events acknowledged, passages purged or written again since), and
// writes a checkpoint when what is needed still spans more than
// compactSegments. Called with j.mu held.
func (j *Journal) release() error {
	if j.log.Err() != nil {
		return nil // the next write opens the log again first
	}
	need := j.log.Next()
	for _, ev := range j.st.events {
		need = min(need, ev.lsn)
	}
	j.passMu.RLock()
	for _, p := range j.passes {
		need = min(need, p.lsn)
	}
	j.passMu.RUnlock()
	if err := j.log.Release(need - 1); err != nil {
		return err // the log is stopped: the next write opens it again
	}
	// An issuer outage keeps every segment since its start: once they
	// pass compactSegments and twice what a checkpoint of the state would
	// take, the state is written densely and the segments before it given
	// back.
	if segs := j.log.Stats().Segments; segs < compactSegments || int64(segs)*j.segment < 2*j.stateBytes() {
		return nil
	}
	return j.checkpoint(j.st, nil)
}

// Backlog counts the events not yet uploaded.
func (j *Journal) Backlog() (Backlog, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b := Backlog{Events: len(j.st.events), LastSeq: j.st.lastSeq}
	if len(j.st.events) > 0 {
		e, err := decodeEvent(0, j.st.events[0].sealed)
		if err != nil {
			return Backlog{}, fmt.Errorf("journal: backlog: %w", damaged(j.dir, 0, "%v", err))
		}
		b.Oldest = e.Time
	}
	return b, nil
}

// Backlog is the event log not yet uploaded.
type Backlog struct {
	Events  int       `json:"events"`
	Oldest  time.Time `json:"oldest,omitzero"`
	LastSeq uint64    `json:"last_seq"`
}

// Renumber gives the events not yet uploaded new sequence numbers, after
// after and in their order, and makes the next event follow them (or the
// highest number the journal ever gave, if that is higher): the issuer
// holds numbers up to after for other events of this gate (its journal
// started again: a new board, or the journal moved aside), and an event
// under a number it holds would be taken for a duplicate and lost. One
// checkpoint: a power cut leaves the old numbers or the new. An event
// that fails authentication cannot be sealed under a new number: an
// alarm saying so takes its place, as UploadBatch would send it. It
// returns the number of events renumbered.
func (j *Journal) Renumber(after uint64, now time.Time) (int, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.writable(); err != nil {
		return 0, fmt.Errorf("journal: renumber events after %d: %w", after, err)
	}
	n := uint64(len(j.st.events))
	if after > ^uint64(0)-n {
		return 0, fmt.Errorf("journal: renumber events after %d: no sequence numbers left", after)
	}
	st := jstate{acked: after, lastSeq: max(after+n, j.st.lastSeq)}
	for i, ev := range j.st.events {
		e, ok, err := openEvent(j.key, ev.seq, ev.sealed)
		if err != nil || !ok {
			e = damagedAlarm(ev.seq, now)
		}
		seq := after + 1 + uint64(i)
		e.Seq = seq
		st.events = append(st.events, jevent{seq: seq, sealed: encodeEvent(j.key, seq, &e)})
	}
	if err := j.checkpoint(st, nil); err != nil {
		return 0, fmt.Errorf("journal: renumber events after %d: %w", after, err)
	}
	return int(n), nil
}

// JournalUsage is what the journal's files hold, and what its log has
// written since the journal was opened.
type JournalUsage struct {
	Bytes    int64 // the segment files, live and kept for reuse
	Segments int   // live segments
	Written  int64 // bytes handed to the files
	Syncs    int64 // fdatasync and directory fsync calls
}

// Usage says what the journal's files hold and what it has written since
// it was opened.
func (j *Journal) Usage() JournalUsage {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.log == nil {
		return JournalUsage{}
	}
	return usageOf(j.log)
}

// usageOf is what a log's files hold and what it has written.
func usageOf(l *seglog.Log) JournalUsage {
	s := l.Stats()
	return JournalUsage{Bytes: s.Bytes, Segments: s.Segments, Written: s.Written, Syncs: s.Syncs}
}

// JournalSize is the bytes of the journal's files at dir (its segments,
// kept ones included), or of the journal.db beside it that is not
// migrated yet; an error wrapping fs.ErrNotExist when there is neither.
func JournalSize(dir string) (int64, error) {
	es, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		fi, lerr := os.Stat(LegacyJournalPath(dir))
		if lerr != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range es {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n, nil
}
