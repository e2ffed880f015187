package cache

import (
	"bytes"
	"cmp"
	"crypto/hmac"
	"encoding/binary"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/internal/seglog"
)

// replayer builds the journal's state from its records, in order.
type replayer struct {
	j      *Journal
	st     jstate
	passes map[[passKeyLen]byte]jpass
	seen   bool
	cp     *pendingCheckpoint
}

// pendingCheckpoint is a checkpoint whose parts are being read: it counts
// only once the last is.
type pendingCheckpoint struct {
	id             uint64
	parts, next    uint32
	first          uint64 // the first part's LSN
	acked, lastSeq uint64
	events         []jevent
	passes         map[[passKeyLen]byte]jpass
}

// cut reads n bytes off the front of p.
func cut(p *[]byte, n int) ([]byte, bool) {
	if n < 0 || len(*p) < n {
		return nil, false
	}
	b := (*p)[:n]
	*p = (*p)[n:]
	return b, true
}

func (r *replayer) damaged(lsn uint64, format string, args ...any) error {
	return damaged(r.j.dir, 0, "record %d: %s", lsn, fmt.Sprintf(format, args...))
}

func (r *replayer) record(rec seglog.Record) error {
	p := rec.Payload
	if len(p) < jheadLen {
		return r.damaged(rec.LSN, "%d bytes, shorter than a head", len(p))
	}
	if !hmac.Equal(p[:tagLen], r.j.key.check[:]) {
		if !r.seen {
			return ErrWrongKey
		}
		return &CorruptError{Path: r.j.dir, Kind: Unauthentic, Detail: fmt.Sprintf("record %d: its key check value is not the one of the records before it", rec.LSN), Problems: 1}
	}
	r.seen = true
	acked := binary.BigEndian.Uint64(p[tagLen:])
	lastSeq := binary.BigEndian.Uint64(p[tagLen+8:])
	body := p[jheadLen:]
	if rec.Kind == recCheckpoint {
		return r.checkpoint(rec.LSN, acked, lastSeq, body)
	}
	r.cp = nil // a checkpoint cut short: never counted
	r.st.acked, r.st.lastSeq = acked, lastSeq
	i, _ := slices.BinarySearchFunc(r.st.events, acked+1, func(e jevent, s uint64) int { return cmp.Compare(e.seq, s) })
	r.st.events = r.st.events[i:]
	switch rec.Kind {
	case recEvent:
		return r.event(rec.LSN, body)
	case recPassage:
		pk, pv, ok := r.pass(&body)
		if !ok {
			return r.damaged(rec.LSN, "passage of %d bytes", len(rec.Payload))
		}
		r.passes[pk] = passOf(r.j.key, pk, pv, rec.LSN)
		return r.event(rec.LSN, body)
	case recRepair:
		pk, pv, ok := r.pass(&body)
		if !ok || len(body) != 0 {
			return r.damaged(rec.LSN, "repair of %d bytes", len(rec.Payload))
		}
		r.passes[pk] = passOf(r.j.key, pk, pv, rec.LSN)
		return nil
	case recAck:
		return nil
	}
	return r.damaged(rec.LSN, "kind %d", rec.Kind)
}

func (r *replayer) pass(body *[]byte) ([passKeyLen]byte, []byte, bool) {
	k, ok1 := cut(body, passKeyLen)
	v, ok2 := cut(body, passLen)
	if !ok1 || !ok2 {
		return [passKeyLen]byte{}, nil, false
	}
	return [passKeyLen]byte(k), v, true
}

// passOf is a stored passage as held: bad when it fails authentication.
func passOf(k *Key, pk [passKeyLen]byte, v []byte, lsn uint64) jpass {
	ns, ok := openPass(k, pk[:], v)
	return jpass{ns: ns, lsn: lsn, bad: !ok}
}

func (r *replayer) event(lsn uint64, body []byte) error {
	sq, ok := cut(&body, 8)
	if !ok || len(body) == 0 {
		return r.damaged(lsn, "event of %d bytes", len(body))
	}
	seq := binary.BigEndian.Uint64(sq)
	if _, err := decodeEvent(seq, body); err != nil {
		return r.damaged(lsn, "event %d: %v", seq, err)
	}
	if n := len(r.st.events); seq > r.st.lastSeq || n > 0 && r.st.events[n-1].seq >= seq {
		return r.damaged(lsn, "event %d out of order", seq)
	}
	if seq > r.st.acked {
		r.st.events = append(r.st.events, jevent{seq: seq, lsn: lsn, sealed: bytes.Clone(body)})
	}
	return nil
}

// A checkpoint part: id (8) ‖ part (4) ‖ parts (4) ‖ entries.
const (
	entryEvent   = 'e' // seq (8) ‖ length (4) ‖ the event sealed
	entryPassage = 'p' // cert ID ‖ direction ‖ time ‖ MAC
	entryBad     = 'b' // cert ID ‖ direction: a passage that failed authentication
)

func (r *replayer) checkpoint(lsn, acked, lastSeq uint64, body []byte) error {
	h, ok := cut(&body, 16)
	if !ok {
		return r.damaged(lsn, "checkpoint of %d bytes", len(body))
	}
	id := binary.BigEndian.Uint64(h)
	part, parts := binary.BigEndian.Uint32(h[8:]), binary.BigEndian.Uint32(h[12:])
	if parts == 0 || part >= parts {
		return r.damaged(lsn, "checkpoint part %d of %d", part, parts)
	}
	if part == 0 {
		r.cp = &pendingCheckpoint{id: id, parts: parts, first: lsn, acked: acked, lastSeq: lastSeq, passes: map[[passKeyLen]byte]jpass{}}
	} else if r.cp == nil || r.cp.id != id || r.cp.next != part || r.cp.parts != parts {
		return r.damaged(lsn, "checkpoint %d part %d out of its order", id, part)
	}
	cp := r.cp
	for len(body) > 0 {
		switch body[0] {
		case entryEvent:
			body = body[1:]
			h, ok := cut(&body, 12)
			if !ok {
				return r.damaged(lsn, "checkpoint event cut short")
			}
			seq := binary.BigEndian.Uint64(h)
			ev, ok := cut(&body, int(binary.BigEndian.Uint32(h[8:])))
			if !ok || len(ev) == 0 {
				return r.damaged(lsn, "checkpoint event %d cut short", seq)
			}
			if _, err := decodeEvent(seq, ev); err != nil {
				return r.damaged(lsn, "checkpoint event %d: %v", seq, err)
			}
			if n := len(cp.events); seq > lastSeq || seq <= acked || n > 0 && cp.events[n-1].seq >= seq {
				return r.damaged(lsn, "checkpoint event %d out of order", seq)
			}
			cp.events = append(cp.events, jevent{seq: seq, lsn: cp.first, sealed: bytes.Clone(ev)})
		case entryPassage:
			body = body[1:]
			pk, pv, ok := r.pass(&body)
			if !ok {
				return r.damaged(lsn, "checkpoint passage cut short")
			}
			cp.passes[pk] = passOf(r.j.key, pk, pv, cp.first)
		case entryBad:
			body = body[1:]
			k, ok := cut(&body, passKeyLen)
			if !ok {
				return r.damaged(lsn, "checkpoint passage cut short")
			}
			cp.passes[[passKeyLen]byte(k)] = jpass{lsn: cp.first, bad: true}
		default:
			return r.damaged(lsn, "checkpoint entry of kind %d", body[0])
		}
	}
	cp.next++
	if cp.next == cp.parts {
		r.st = jstate{acked: cp.acked, lastSeq: cp.lastSeq, events: cp.events}
		r.passes = cp.passes
		r.cp = nil
	}
	return nil
}

// stateBytes is about what a checkpoint of the state takes.
func (j *Journal) stateBytes() int64 {
	n := int64(jheadLen + 16)
	for _, ev := range j.st.events {
		n += int64(13 + len(ev.sealed))
	}
	j.passMu.RLock()
	n += int64(len(j.passes)) * (1 + passKeyLen + passLen)
	j.passMu.RUnlock()
	return n
}

// checkpoint writes st and passes as the journal's whole state, in parts
// of up to a record each, makes them the journal's, and gives back the
// segments before it. Called with j.mu held.
func (j *Journal) checkpoint(st jstate, passes map[[passKeyLen]byte]jpass) error {
	if passes == nil {
		j.passMu.RLock()
		passes = maps.Clone(j.passes)
		j.passMu.RUnlock()
	}
	room := j.log.MaxPayload() - jheadLen - 16
	var parts [][]byte
	var cur []byte
	add := func(e []byte) {
		if len(cur)+len(e) > room {
			parts = append(parts, cur)
			cur = nil
		}
		cur = append(cur, e...)
	}
	for _, ev := range st.events {
		e := append([]byte{entryEvent}, u64(ev.seq)...)
		e = binary.BigEndian.AppendUint32(e, uint32(len(ev.sealed)))
		add(append(e, ev.sealed...))
	}
	for _, pk := range slices.SortedFunc(maps.Keys(passes), func(a, b [passKeyLen]byte) int { return bytes.Compare(a[:], b[:]) }) {
		p := passes[pk]
		if p.bad {
			add(append([]byte{entryBad}, pk[:]...))
			continue
		}
		add(append(append([]byte{entryPassage}, pk[:]...), passValue(j.key, pk[:], p.ns)...))
	}
	parts = append(parts, cur)
	id := j.log.Next()
	var first uint64
	for i, body := range parts {
		p := j.head(st.acked, st.lastSeq)
		p = append(p, u64(id)...)
		p = binary.BigEndian.AppendUint32(p, uint32(i))
		p = binary.BigEndian.AppendUint32(p, uint32(len(parts)))
		lsn, err := j.log.Append(recCheckpoint, append(p, body...))
		if err != nil {
			return err
		}
		if i == 0 {
			first = lsn
		}
	}
	st.events = slices.Clone(st.events)
	for i := range st.events {
		st.events[i].lsn = first
	}
	j.st = st
	j.passMu.Lock()
	j.passes = passes
	for pk, p := range j.passes {
		p.lsn = first
		j.passes[pk] = p
	}
	j.passMu.Unlock()
	return j.log.Release(first - 1) // on failure the log is stopped: the next write opens it again
}

// mergeIn is what a migration, a salvage or an old cache brings into the
// journal.
type mergeIn struct {
	events map[uint64][]byte // sealed, with MACs
	passes map[[passKeyLen]byte]int64
	bad    map[[passKeyLen]byte]bool
	// The journal's sequence goes on past seqFloor, and nothing up to
	// ackFloor is uploaded.
	seqFloor, ackFloor uint64
}

func newMergeIn() mergeIn {
	return mergeIn{events: map[uint64][]byte{}, passes: map[[passKeyLen]byte]int64{}, bad: map[[passKeyLen]byte]bool{}}
}

// merge takes in's events and passages into the journal: each event under
// its own sequence number unless the journal has it or it was
// acknowledged, each passage unless the journal knows a later one. With
// write, the result is written as a checkpoint (nothing when nothing
// changes); without, it is only held (a read-only open of a journal.db).
func (j *Journal) merge(in mergeIn, write bool) (events, passes int, err error) {
	st := jstate{acked: max(j.st.acked, in.ackFloor), lastSeq: max(j.st.lastSeq, in.seqFloor)}
	have := map[uint64]bool{}
	for _, ev := range j.st.events {
		if ev.seq > st.acked {
			st.events = append(st.events, ev)
			have[ev.seq] = true
		}
	}
	for seq, v := range in.events {
		if seq <= st.acked || have[seq] {
			continue
		}
		st.events = append(st.events, jevent{seq: seq, sealed: v})
		st.lastSeq = max(st.lastSeq, seq)
		events++
	}
	slices.SortFunc(st.events, func(a, b jevent) int { return cmp.Compare(a.seq, b.seq) })
	j.passMu.RLock()
	ps := maps.Clone(j.passes)
	j.passMu.RUnlock()
	for pk, ns := range in.passes {
		if old, ok := ps[pk]; ok && !old.bad && old.ns >= ns {
			continue
		}
		ps[pk] = jpass{ns: ns}
		passes++
	}
	for pk := range in.bad {
		if _, ok := ps[pk]; !ok {
			ps[pk] = jpass{bad: true}
			passes++
		}
	}
	if !write {
		j.st = st
		j.passMu.Lock()
		j.passes = ps
		j.passMu.Unlock()
		return events, passes, nil
	}
	if events == 0 && passes == 0 && st.acked == j.st.acked && st.lastSeq == j.st.lastSeq {
		return 0, 0, nil
	}
	if err := j.writable(); err != nil {
		return 0, 0, err
	}
	if err := j.checkpoint(st, ps); err != nil {
		return 0, 0, err
	}
	return events, passes, nil
}

// migrate moves the journal.db at path (schema 1 or 2) into the log, then
// renames it journal.db.migrated. A cut before the rename repeats the
// move at the next start, which finds everything there and writes
// nothing.
func (j *Journal) migrate(path string) error {
	in, _, err := readBoltJournal(path, j.key)
	if err != nil {
		return err
	}
	j.mu.Lock()
	_, _, err = j.merge(in, true)
	j.mu.Unlock()
	if err != nil {
		return fmt.Errorf("move %s into the log: %w", path, err)
	}
	if err := os.Rename(path, path+".migrated"); err != nil {
		return fmt.Errorf("moved %s into the log, but cannot rename it: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

// readLegacy reads the journal.db at path into memory, for a read-only
// open of a journal not migrated yet.
func (j *Journal) readLegacy(path string) error {
	in, schema, err := readBoltJournal(path, j.key)
	if err != nil {
		return err
	}
	j.legacy, j.legacySchema = path, schema
	j.passes = map[[passKeyLen]byte]jpass{}
	_, _, err = j.merge(in, false)
	return err
}

// readBoltJournal reads a journal.db (checked whole first, read without
// writing): its events given their MACs when it is of schema 1 (trusted
// once, as they were written), its passages, where its events stand. A
// journal.db of schema 2 made under another key is ErrWrongKey.
func readBoltJournal(path string, k *Key) (mergeIn, int, error) {
	in := newMergeIn()
	db, _, err := openDB(path, Options{ReadOnly: true, LockTimeout: time.Second}, "")
	if err != nil {
		return in, 0, err
	}
	defer db.Close()
	var schema int
	err = safely(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			var err error
			if schema, err = fileSchema(tx, path, kindJournal); err != nil || schema == 0 {
				return err
			}
			meta := tx.Bucket(bucketMeta)
			if schema == boltJournalSchema {
				if err := checkKey(k, meta.Get(keyCheck)); err != nil {
					return err
				}
			}
			if v := meta.Get(keyAcked); len(v) == 8 {
				in.ackFloor = binary.BigEndian.Uint64(v)
			}
			return readEventBuckets(tx, path, k, &in)
		})
	})
	return in, schema, err
}

// readEventBuckets reads the events and passback buckets of a bbolt file
// of an older release (a journal.db, or a cache of schema 1, which held
// them) into in: each event given its MAC when it has none (trusted once,
// as it was written), each passage authenticated when it has one.
func readEventBuckets(tx *bolt.Tx, path string, k *Key, in *mergeIn) error {
	ev, pb := tx.Bucket(bucketEvents), tx.Bucket(bucketPassback)
	if ev == nil || pb == nil {
		return damaged(path, 0, "the events or passback bucket is missing")
	}
	in.seqFloor = max(in.seqFloor, ev.Sequence())
	if err := ev.ForEach(func(key, v []byte) error {
		if err := checkEventRecord(key, v); err != nil {
			return damaged(path, 0, "%v", err)
		}
		seq := binary.BigEndian.Uint64(key)
		sealed, err := upgradeEvent(k, seq, v)
		if err != nil {
			return damaged(path, 0, "event %d: %v", seq, err)
		}
		in.events[seq] = sealed
		return nil
	}); err != nil {
		return err
	}
	return pb.ForEach(func(key, v []byte) error {
		if checkPassRecord(key, v) != nil {
			return damaged(path, 0, "passback entry of %d+%d bytes", len(key), len(v))
		}
		pk := [passKeyLen]byte(key)
		if len(v) == passLenV1 {
			in.passes[pk] = int64(binary.BigEndian.Uint64(v))
		} else if ns, ok := openPass(k, key, v); ok {
			in.passes[pk] = ns
		} else {
			in.bad[pk] = true
		}
		return nil
	})
}
