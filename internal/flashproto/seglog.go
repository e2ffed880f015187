// Package flashproto holds the prototypes of issue 16's candidate designs
// for the gate's storage, measured by internal/churn before one is chosen
// (docs/flash.md). Nothing in production uses them.
package flashproto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Log is an append-only log of records in preallocated segment files,
// PREFIX.GEN.log, each of a fixed size. A record is written into whole
// 4096-byte blocks of its own (header, payload, zeros to the block's end),
// so that a write never touches a block holding an earlier record: a
// torn write can damage only the record being written. Each record's
// header carries the segment's generation and a CRC-32C over header and
// payload, so a recycled segment's old records and a torn record both
// read as the end of the log.
//
// Segments are written with zeros once when made (their blocks then exist
// on disk, and an fdatasync after an overwrite has no file-system
// metadata to commit), and recycled when released: renamed to the next
// generation, never deleted while the pool is short.
type Log struct {
	dir, prefix string
	segBytes    int64
	segs        []*segment // oldest first; the last is the one written
	free        []string   // released segment files, for reuse
	off         int64      // next write offset in the last segment
	next        uint64     // next record number (LSN), from 1
	gen         uint64     // the last generation used
	buf         []byte
	// Syncs counts fsync and fdatasync calls, BytesWritten the bytes
	// handed to pwrite (preallocation included).
	Syncs, BytesWritten int64
	// KeepFree is how many released segments are kept for reuse (the
	// rest are deleted); 2 unless set.
	KeepFree int
}

type segment struct {
	f           *os.File
	path        string
	gen         uint64
	first, last uint64 // LSNs held; first == 0 while empty
}

// BlockSize is the unit of a record's space.
const BlockSize = 4096

const (
	logMagic  = 0x474c4731 // "GLG1"
	headerLen = 32         // magic 4, crc 4, gen 8, lsn 8, len 4, kind 1, pad 3
	maxRecord = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Record is one record read back at open.
type Record struct {
	LSN     uint64
	Kind    byte
	Payload []byte
}

// OpenLog opens (creating) the log PREFIX.*.log in dir with segments of
// segBytes (a multiple of BlockSize), and calls replay for every record
// found, in order. The payload is valid only during the call.
func OpenLog(dir, prefix string, segBytes int64, replay func(Record) error) (*Log, error) {
	if segBytes <= 0 || segBytes%BlockSize != 0 {
		return nil, fmt.Errorf("log: segment size %d", segBytes)
	}
	l := &Log{dir: dir, prefix: prefix, segBytes: segBytes, next: 1, KeepFree: 2}
	names, err := filepath.Glob(filepath.Join(dir, prefix+".*.log"))
	if err != nil {
		return nil, err
	}
	type gp struct {
		gen  uint64
		path string
	}
	var found []gp
	for _, p := range names {
		g, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), prefix+"."), ".log"), 10, 64)
		if err != nil {
			continue
		}
		found = append(found, gp{g, p})
	}
	slices.SortFunc(found, func(a, b gp) int { return compareU64(a.gen, b.gen) })
	if l.free, err = filepath.Glob(filepath.Join(dir, prefix+".*.free")); err != nil {
		return nil, err
	}
	for i, s := range found {
		l.gen = max(l.gen, s.gen)
		f, err := os.OpenFile(s.path, os.O_RDWR, 0)
		if err != nil {
			l.Close()
			return nil, err
		}
		seg := &segment{f: f, path: s.path, gen: s.gen}
		off, err := l.scan(seg, replay)
		if err != nil {
			f.Close()
			l.Close()
			return nil, err
		}
		if seg.first == 0 && i < len(found)-1 {
			// An empty segment before the last: made or recycled, never
			// written. Back to the pool.
			l.free = append(l.free, s.path)
			f.Close()
			continue
		}
		l.segs = append(l.segs, seg)
		l.off = off
	}
	return l, nil
}

func compareU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scan reads seg's records from its start until one that is not whole,
// and returns where the next would go. It reads a megabyte at a time,
// so a segment's unused tail costs nothing.
func (l *Log) scan(seg *segment, replay func(Record) error) (int64, error) {
	const chunk = 1 << 20
	buf := make([]byte, chunk)
	bufOff, bufLen := int64(0), int64(0)
	get := func(off, n int64) ([]byte, error) {
		if off >= bufOff && off+n <= bufOff+bufLen {
			return buf[off-bufOff : off-bufOff+n], nil
		}
		if n > chunk {
			b := make([]byte, n)
			_, err := seg.f.ReadAt(b, off)
			return b, err
		}
		bufOff, bufLen = off, min(chunk, l.segBytes-off)
		_, err := seg.f.ReadAt(buf[:bufLen], off)
		return buf[:n], err
	}
	var off int64
	for off+headerLen <= l.segBytes {
		rec, err := get(off, headerLen)
		if err != nil {
			return off, fmt.Errorf("log %s: %w", seg.path, err)
		}
		if binary.LittleEndian.Uint32(rec) != logMagic || binary.LittleEndian.Uint64(rec[8:]) != seg.gen {
			break
		}
		lsn := binary.LittleEndian.Uint64(rec[16:])
		n := int64(binary.LittleEndian.Uint32(rec[24:]))
		size := padded(headerLen + n)
		if n > maxRecord || off+size > l.segBytes || lsn < l.next || seg.first != 0 && lsn != l.next {
			break // LSNs grow; within a segment they follow one another
		}
		if rec, err = get(off, headerLen+n); err != nil {
			return off, fmt.Errorf("log %s: %w", seg.path, err)
		}
		if crc32.Checksum(rec[8:headerLen+n], castagnoli) != binary.LittleEndian.Uint32(rec[4:]) {
			break
		}
		if err := replay(Record{LSN: lsn, Kind: rec[28], Payload: rec[headerLen : headerLen+n]}); err != nil {
			return off, err
		}
		if seg.first == 0 {
			seg.first = lsn
		}
		seg.last = lsn
		l.next = lsn + 1
		off += size
	}
	return off, nil
}

func padded(n int64) int64 { return (n + BlockSize - 1) / BlockSize * BlockSize }

// Append writes a record and, with sync, waits until it is on disk. It
// returns the record's LSN.
func (l *Log) Append(kind byte, payload []byte, sync bool) (uint64, error) {
	size := padded(headerLen + int64(len(payload)))
	if size > l.segBytes {
		return 0, fmt.Errorf("log: record of %d bytes, segments of %d", len(payload), l.segBytes)
	}
	if len(l.segs) == 0 || l.off+size > l.segBytes {
		if err := l.rotate(); err != nil {
			return 0, err
		}
	}
	seg := l.segs[len(l.segs)-1]
	if int64(cap(l.buf)) < size {
		l.buf = make([]byte, size)
	}
	b := l.buf[:size]
	clear(b[headerLen+len(payload):])
	binary.LittleEndian.PutUint32(b, logMagic)
	binary.LittleEndian.PutUint64(b[8:], seg.gen)
	binary.LittleEndian.PutUint64(b[16:], l.next)
	binary.LittleEndian.PutUint32(b[24:], uint32(len(payload)))
	b[28], b[29], b[30], b[31] = kind, 0, 0, 0
	copy(b[headerLen:], payload)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:headerLen+len(payload)], castagnoli))
	if _, err := seg.f.WriteAt(b, l.off); err != nil {
		return 0, fmt.Errorf("log %s: %w", seg.path, err)
	}
	l.BytesWritten += size
	if sync {
		if err := l.sync(seg.f); err != nil {
			return 0, fmt.Errorf("log %s: %w", seg.path, err)
		}
	}
	lsn := l.next
	l.next++
	l.off += size
	if seg.first == 0 {
		seg.first = lsn
	}
	seg.last = lsn
	return lsn, nil
}

// Sync waits until every record appended is on disk.
func (l *Log) Sync() error {
	if len(l.segs) == 0 {
		return nil
	}
	return l.sync(l.segs[len(l.segs)-1].f)
}

func (l *Log) sync(f *os.File) error {
	l.Syncs++
	return syscall.Fdatasync(int(f.Fd()))
}

// rotate starts the next segment: a released one renamed, or a new one
// written with zeros; the directory is synced so that the name holds.
func (l *Log) rotate() error {
	l.gen++
	path := filepath.Join(l.dir, fmt.Sprintf("%s.%020d.log", l.prefix, l.gen))
	var f *os.File
	if n := len(l.free); n > 0 {
		old := l.free[n-1]
		l.free = l.free[:n-1]
		if err := os.Rename(old, path); err != nil {
			return err
		}
		var err error
		if f, err = os.OpenFile(path, os.O_RDWR, 0); err != nil {
			return err
		}
	} else {
		var err error
		if f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600); err != nil {
			return err
		}
		zero := make([]byte, 1<<20)
		for off := int64(0); off < l.segBytes; off += int64(len(zero)) {
			n := min(int64(len(zero)), l.segBytes-off)
			if _, err := f.WriteAt(zero[:n], off); err != nil {
				f.Close()
				return err
			}
			l.BytesWritten += n
		}
		l.Syncs++
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := l.syncDir(); err != nil {
		f.Close()
		return err
	}
	l.segs = append(l.segs, &segment{f: f, path: path, gen: l.gen})
	l.off = 0
	return nil
}

func (l *Log) syncDir() error {
	d, err := os.Open(l.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	l.Syncs++
	return d.Sync()
}

// Release gives back every segment but the one written whose records all
// have an LSN at or below upto: they are no longer needed.
func (l *Log) Release(upto uint64) error {
	var errs []error
	for len(l.segs) > 1 && l.segs[0].last <= upto {
		s := l.segs[0]
		l.segs = l.segs[1:]
		errs = append(errs, s.f.Close())
		if len(l.free) < l.KeepFree {
			// Renamed out of the log: if a crash undoes the rename, the
			// segment's records are read again, and their readers skip
			// what they have released (events acknowledged, batches in
			// the base).
			free := strings.TrimSuffix(s.path, ".log") + ".free"
			errs = append(errs, os.Rename(s.path, free))
			l.free = append(l.free, free)
		} else {
			errs = append(errs, os.Remove(s.path))
		}
	}
	return errors.Join(errs...)
}

// Next is the LSN the next record will get.
func (l *Log) Next() uint64 { return l.next }

// Size is the bytes of the log's files, live and pooled.
func (l *Log) Size() int64 { return int64(len(l.segs)+len(l.free)) * l.segBytes }

// Segments is the number of live segments.
func (l *Log) Segments() int { return len(l.segs) }

// Close closes the segment files.
func (l *Log) Close() error {
	var errs []error
	for _, s := range l.segs {
		errs = append(errs, s.f.Close())
	}
	l.segs = nil
	return errors.Join(errs...)
}
