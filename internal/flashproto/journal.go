package flashproto

import (
	"encoding/binary"
	"fmt"
	"time"

	"gateagent/event"
	"gateagent/internal/seglog"
	"gateagent/verify"
)

// LogJournal is the journal as a Log: one record per event, each in
// blocks of its own, written with one fdatasync; the passage and its
// anti-passback state in one record. Acknowledgements are not written on
// their own: every record carries the last sequence number acknowledged
// when it was written, so an upload costs no write, and after a restart
// the events acknowledged since the last record are uploaded again (the
// issuer stores each (gate, sequence) once). Released segments are those
// whose events are all acknowledged and whose passages are older than the
// anti-passback window.
type LogJournal struct {
	log     *seglog.Log
	seq     uint64 // the last sequence number assigned
	acked   uint64 // the last acknowledged, in memory
	pending []pending
	passes  map[[passKeyLen]byte]int64
	// passLog holds the passages in the order written, for Release.
	passLog []passRec
	buf     []byte
}

type pending struct {
	lsn uint64
	ev  event.Event
}

type passRec struct {
	lsn uint64
	ns  int64
}

const passKeyLen = verify.CertIDLen + 1

const (
	kindEvent   = 1
	kindPassage = 2
)

// OpenLogJournal opens (creating) the journal log journal.*.log in dir
// with segments of segBytes, reading every record back.
func OpenLogJournal(dir string, segBytes int64) (*LogJournal, error) {
	j := &LogJournal{passes: map[[passKeyLen]byte]int64{}}
	var events []pending
	log, err := seglog.Open(dir, "journal", &seglog.Options{SegmentSize: segBytes, KeepFree: 4}, func(r seglog.Record) error {
		p := r.Payload
		if len(p) < 16 {
			return fmt.Errorf("journal record %d: %d bytes", r.LSN, len(p))
		}
		j.acked = max(j.acked, binary.LittleEndian.Uint64(p))
		seq := binary.LittleEndian.Uint64(p[8:])
		j.seq = max(j.seq, seq)
		p = p[16:]
		if r.Kind == kindPassage {
			if len(p) < passKeyLen+8 {
				return fmt.Errorf("journal record %d: passage of %d bytes", r.LSN, len(p))
			}
			k := [passKeyLen]byte(p)
			ns := int64(binary.LittleEndian.Uint64(p[passKeyLen:]))
			j.passes[k] = max(j.passes[k], ns)
			j.passLog = append(j.passLog, passRec{r.LSN, ns})
			p = p[passKeyLen+8:]
		}
		e, err := decodeEvent(seq, p)
		if err != nil {
			return fmt.Errorf("journal record %d: %w", r.LSN, err)
		}
		events = append(events, pending{r.LSN, e})
		return nil
	})
	if err != nil {
		return nil, err
	}
	j.log = log
	for _, e := range events {
		if e.ev.Seq > j.acked {
			j.pending = append(j.pending, e)
		}
	}
	return j, nil
}

func (j *LogJournal) append(kind byte, e *event.Event, pass []byte) error {
	if err := e.Validate(); err != nil {
		return err
	}
	e.Seq = j.seq + 1
	b := binary.LittleEndian.AppendUint64(j.buf[:0], j.acked)
	b = binary.LittleEndian.AppendUint64(b, e.Seq)
	b = append(b, pass...)
	b = encodeEvent(b, e)
	j.buf = b
	lsn, err := j.log.Append(kind, b)
	if err != nil {
		return err
	}
	j.seq = e.Seq
	j.pending = append(j.pending, pending{lsn, *e})
	return nil
}

// AppendEvent stores e durably and returns its sequence number.
func (j *LogJournal) AppendEvent(e event.Event) (uint64, error) {
	if err := j.append(kindEvent, &e, nil); err != nil {
		return 0, fmt.Errorf("journal: append %s event: %w", e.Kind, err)
	}
	return e.Seq, nil
}

// RecordPassage stores the passage event and the anti-passback state in
// one record.
func (j *LogJournal) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	var pass [passKeyLen + 8]byte
	copy(pass[:], id[:])
	pass[verify.CertIDLen] = byte(dir)
	ns := e.Time.UnixNano()
	binary.LittleEndian.PutUint64(pass[passKeyLen:], uint64(ns))
	if err := j.append(kindPassage, &e, pass[:]); err != nil {
		return 0, fmt.Errorf("journal: record passage of %s: %w", id, err)
	}
	k := [passKeyLen]byte(pass[:])
	j.passes[k] = ns
	j.passLog = append(j.passLog, passRec{j.log.Next() - 1, ns})
	return e.Seq, nil
}

// LastPass returns id's last passage in direction dir.
func (j *LogJournal) LastPass(id *verify.CertID, dir verify.Direction) (time.Time, bool) {
	var k [passKeyLen]byte
	copy(k[:], id[:])
	k[verify.CertIDLen] = byte(dir)
	ns, ok := j.passes[k]
	if !ok {
		return time.Time{}, false
	}
	return time.Unix(0, ns).UTC(), true
}

// Events returns up to max events after the sequence number after, not
// yet acknowledged.
func (j *LogJournal) Events(after uint64, max int) ([]event.Event, error) {
	var out []event.Event
	for _, p := range j.pending {
		if len(out) == max {
			break
		}
		if p.ev.Seq > after {
			out = append(out, p.ev)
		}
	}
	return out, nil
}

// DeleteEventsThrough forgets the events up to seq, acknowledged by the
// issuer: in memory only, written with the next record.
func (j *LogJournal) DeleteEventsThrough(seq uint64) (int, error) {
	n := 0
	for n < len(j.pending) && j.pending[n].ev.Seq <= seq {
		n++
	}
	j.pending = j.pending[n:]
	j.acked = max(j.acked, seq)
	return n, j.release()
}

// PurgePassages forgets the passages older than window and releases the
// segments nothing needs any more.
func (j *LogJournal) PurgePassages(now time.Time, window time.Duration) (int, error) {
	cut := now.Add(-window).UnixNano()
	n := 0
	for k, ns := range j.passes {
		if ns < cut {
			delete(j.passes, k)
			n++
		}
	}
	i := 0
	for i < len(j.passLog) && j.passLog[i].ns < cut {
		i++
	}
	j.passLog = j.passLog[i:]
	return n, j.release()
}

// release gives back the segments before the first record still needed:
// the oldest event not acknowledged, the oldest passage in the window.
func (j *LogJournal) release() error {
	keep := j.log.Next()
	if len(j.pending) > 0 {
		keep = min(keep, j.pending[0].lsn)
	}
	if len(j.passLog) > 0 {
		keep = min(keep, j.passLog[0].lsn)
	}
	return j.log.Release(keep - 1)
}

// Syncs counts the fsyncs issued.
func (j *LogJournal) Syncs() int64 { return j.log.Stats().Syncs }

// Size is the bytes of the journal's files.
func (j *LogJournal) Size() int64 { return j.log.Stats().Bytes }

// Close closes the files.
func (j *LogJournal) Close() error { return j.log.Close() }

// An event is encoded as package cache's journal encodes it:
//
//	version(1)=1 | kind(1) | reason(1) | direction(1) | time(8, Unix ns) |
//	cert ID(16) | step offset(varint) | detail length(uvarint) | detail
func encodeEvent(b []byte, e *event.Event) []byte {
	b = append(b, 1, byte(e.Kind), byte(e.Reason), byte(e.Direction))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = append(b, e.CertID[:]...)
	b = binary.AppendVarint(b, e.StepOffset)
	b = binary.AppendUvarint(b, uint64(len(e.Detail)))
	return append(b, e.Detail...)
}

func decodeEvent(seq uint64, b []byte) (event.Event, error) {
	e := event.Event{Seq: seq}
	const fixed = 4 + 8 + verify.CertIDLen
	if len(b) < fixed || b[0] != 1 {
		return e, fmt.Errorf("event %d: bad header", seq)
	}
	e.Kind, e.Reason, e.Direction = event.Kind(b[1]), verify.Reason(b[2]), verify.Direction(b[3])
	e.Time = time.Unix(0, int64(binary.BigEndian.Uint64(b[4:]))).UTC()
	copy(e.CertID[:], b[12:])
	rest := b[fixed:]
	off, n := binary.Varint(rest)
	if n <= 0 {
		return e, fmt.Errorf("event %d: bad step offset", seq)
	}
	e.StepOffset, rest = off, rest[n:]
	dl, n := binary.Uvarint(rest)
	if n <= 0 || dl != uint64(len(rest)-n) {
		return e, fmt.Errorf("event %d: bad detail length", seq)
	}
	e.Detail = string(rest[n:])
	return e, nil
}
