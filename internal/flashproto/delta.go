package flashproto

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"

	"gateagent/cache"
	"gateagent/internal/seglog"
	"gateagent/verify"
)

// delta is the certificates' recent changes: every feed batch since the
// last file written (base or run) as one record of a Log (delta.*.log),
// written with one fdatasync, and indexed in memory.
type delta struct {
	log    *seglog.Log
	idx    *index
	cursor uint64
	fs     cache.FeedState
	buf    []byte
}

// openDelta reads the delta log in dir, indexing the records after covers
// (the last LSN the files hold); cursor and fs are the files' own.
func openDelta(dir string, segBytes int64, covers, cursor uint64, fs cache.FeedState) (*delta, error) {
	d := &delta{idx: newIndex(), cursor: cursor, fs: fs}
	// The slab takes at most the log's bytes: reserved once, not grown
	// by copies while the log is read.
	segs, _ := filepath.Glob(filepath.Join(dir, "delta.*.log"))
	d.idx.slab = make([]byte, 0, int64(len(segs))*segBytes)
	// The delta grows to the same size between two files written: every
	// segment released is needed again, and kept, so that a segment is
	// written with zeros once in its life.
	o := &seglog.Options{SegmentSize: segBytes, KeepFree: 1 << 10}
	log, err := seglog.Open(dir, "delta", o, func(r seglog.Record) error {
		if r.LSN <= covers {
			return nil // in the files already
		}
		return d.replay(r)
	})
	if err != nil {
		return nil, err
	}
	d.idx.build()
	d.log = log
	return d, nil
}

// A batch record: From 8, Next 8, feed state length 2 and JSON, count 4,
// then count entries (ID 16, record 49): the records as they stand after
// the batch, revocations included.
func (d *delta) replay(r seglog.Record) error {
	p := r.Payload
	if r.Kind != kindBatch || len(p) < 18 {
		return fmt.Errorf("delta record %d: kind %d, %d bytes", r.LSN, r.Kind, len(p))
	}
	next := binary.LittleEndian.Uint64(p[8:])
	fl := int(binary.LittleEndian.Uint16(p[16:]))
	if len(p) < 18+fl+4 {
		return fmt.Errorf("delta record %d: short", r.LSN)
	}
	var fs cache.FeedState
	if err := json.Unmarshal(p[18:18+fl], &fs); err != nil {
		return fmt.Errorf("delta record %d: %w", r.LSN, err)
	}
	p = p[18+fl:]
	n := int(binary.LittleEndian.Uint32(p))
	p = p[4:]
	if len(p) != n*entryLen {
		return fmt.Errorf("delta record %d: %d entries in %d bytes", r.LSN, n, len(p))
	}
	for i := range n {
		d.idx.add(p[i*entryLen:(i+1)*entryLen], r.LSN) // indexed once all are read
	}
	d.cursor, d.fs = next, fs
	d.fs.Cursor = next
	return nil
}

// apply writes a feed batch as one delta record, with the semantics of
// cache.Cache.Apply: a batch held already is skipped, a gap refused, a
// revocation final (also one that comes before its certificate). record
// says what the store holds for an ID.
func (d *delta) apply(b *cache.Batch, record func(verify.CertID) ([recordLen]byte, bool, error)) (skipped bool, err error) {
	switch {
	case b.Next <= d.cursor:
		return true, nil
	case b.From > d.cursor:
		return false, fmt.Errorf("%w: batch follows cursor %d, store is at %d", cache.ErrGap, b.From, d.cursor)
	case b.Feed.Epoch != d.fs.Epoch:
		return false, fmt.Errorf("%w: batch of epoch %x, store holds %x", cache.ErrGap, b.Feed.Epoch, d.fs.Epoch)
	}
	fs := b.Feed
	fs.Cursor = b.Next
	fj, err := json.Marshal(&fs)
	if err != nil {
		return false, err
	}
	local := map[verify.CertID][recordLen]byte{} // this batch's own, over the store
	get := func(id verify.CertID) ([recordLen]byte, bool, error) {
		if r, ok := local[id]; ok {
			return r, true, nil
		}
		return record(id)
	}
	var order []verify.CertID
	set := func(id verify.CertID, r [recordLen]byte) {
		if _, ok := local[id]; !ok {
			order = append(order, id)
		}
		local[id] = r
	}
	for i := range b.Upserts {
		u := &b.Upserts[i]
		old, ok, err := get(u.ID)
		if err != nil {
			return false, err
		}
		var flags byte
		if ok && old[0]&flagRevoke != 0 {
			flags = flagRevoke
		}
		var r [recordLen]byte
		putRecord(r[:], u, flags)
		set(u.ID, r)
	}
	for _, id := range b.Revokes {
		old, ok, err := get(id)
		if err != nil {
			return false, err
		}
		var r [recordLen]byte
		if ok {
			if old[0]&flagRevoke != 0 {
				continue
			}
			r = old
			r[0] |= flagRevoke
		} else {
			at := b.Feed.IssuerTime
			if at.IsZero() {
				at = b.Feed.SyncedAt
			}
			c := verify.Cert{NotBefore: at, NotAfter: at.Add(cache.MaxValidity)}
			putRecord(r[:], &c, flagRevoke|flagNoKey)
		}
		set(id, r)
	}
	p := binary.LittleEndian.AppendUint64(d.buf[:0], b.From)
	p = binary.LittleEndian.AppendUint64(p, b.Next)
	p = binary.LittleEndian.AppendUint16(p, uint16(len(fj)))
	p = append(p, fj...)
	p = binary.LittleEndian.AppendUint32(p, uint32(len(order)))
	for _, id := range order {
		r := local[id]
		p = append(p, id[:]...)
		p = append(p, r[:]...)
	}
	d.buf = p
	lsn, err := d.log.Append(kindBatch, p)
	if err != nil {
		return false, err
	}
	for _, id := range order {
		r := local[id]
		d.idx.put(id[:], r[:], lsn)
	}
	d.cursor, d.fs = b.Next, fs
	return false, nil
}
