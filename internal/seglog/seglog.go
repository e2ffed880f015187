// Package seglog is an append-only log of checksummed records in
// preallocated segment files, which a power cut at any instant leaves
// readable up to its last synced record. It is what phase 2 of issue 16
// (docs/flash.md §5) builds the gate's journal and its certificates'
// delta on: a record costs its own 4 KB blocks and one fdatasync, where a
// bbolt commit costs its pages, its free list and two.
//
// The files, in one directory, named by a prefix:
//
//	PREFIX.GEN.log   a segment of generation GEN (20 digits), records
//	                 from its start; the newest generation is written
//	PREFIX.GEN.free  a released segment kept for reuse
//	PREFIX.GEN.tmp   a segment being made (written with zeros, then
//	                 renamed .log); one left by a cut is removed at open
//
// A record is written into whole 4096-byte blocks of its own (header,
// payload, zeros to the block's end), so a write never touches a block
// that holds an earlier record: a torn write can damage only the record
// being written. Its header carries the segment's generation, the record's
// number (LSN, from 1, one more each record across segments) and a
// CRC-32C over header and payload. A recycled segment's old records (an
// older generation) and a torn record both read as the end of the log.
//
// Every Append is synced before it returns, so at most one record is in
// flight: a record that fails its check but is followed by a whole record
// of the same generation, or a segment whose first record does not follow
// the previous segment's last, cannot come from a cut and is damage
// (*DamageError), which Open reports rather than reading past.
//
// Segments are written with zeros once when made (their blocks then
// exist, so the fdatasync after a record has no file-system metadata to
// commit) and recycled when released: renamed to the next generation,
// the directory synced.
//
// A Log is not safe for concurrent use, and does not lock its directory:
// its owner serializes calls and keeps other processes out.
package seglog

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// BlockSize is the unit of a record's space and of a segment's size.
const BlockSize = 4096

// DefaultSegmentSize is the segment size when Options leaves it zero.
const DefaultSegmentSize = 4 << 20

// MaxSegmentSize bounds a segment: a segment is read whole at Open, and a
// larger file named as one is not this package's.
const MaxSegmentSize = 256 << 20

const (
	magic     = 0x474c4731 // "GLG1"
	headerLen = 32         // magic 4, crc 4, gen 8, lsn 8, len 4, kind 1, zero 3
	genDigits = 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	// ErrDamaged: a segment holds a record that is not whole where a cut
	// cannot explain it. The error is a *DamageError.
	ErrDamaged = errors.New("log damaged")
	// ErrPoisoned: a write or sync failed earlier; what reached the disk
	// is unknown until the log is opened again.
	ErrPoisoned = errors.New("log stopped after a failed write: open it again")
	// ErrReadOnly: a write was asked of a log opened read-only.
	ErrReadOnly = errors.New("log opened read-only")
	// ErrTooLarge: a record larger than a segment can hold.
	ErrTooLarge = errors.New("record larger than a segment")
)

// DamageError says where a log is damaged.
type DamageError struct {
	Path   string // the segment file
	Offset int64  // where in it, -1 for the whole file
	Detail string
}

func (e *DamageError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("%s: %s", e.Path, e.Detail)
	}
	return fmt.Sprintf("%s at byte %d: %s", e.Path, e.Offset, e.Detail)
}

// Is makes errors.Is(err, ErrDamaged) true.
func (e *DamageError) Is(target error) bool { return target == ErrDamaged }

// Options tunes Open. The zero value is usable.
type Options struct {
	// SegmentSize is the size of a new segment, a multiple of BlockSize
	// (default DefaultSegmentSize). Segments of another size already on
	// disk are read, and not reused once released.
	SegmentSize int64
	// KeepFree is how many released segments are kept for reuse; the
	// rest are removed. Default 2; negative keeps none.
	KeepFree int
	// ReadOnly reads the records and changes nothing on disk.
	ReadOnly bool
	// FirstLSN is the LSN of the first record of a log that holds none
	// (default 1): an owner that keeps its own count of what it has read
	// from the log starts a new log after it.
	FirstLSN uint64
	// FS is where the files are; the operating system's by default.
	// Tests put a model of a power cut here.
	FS FS
}

// Record is one record read back at Open. Payload is valid only during
// the replay call.
type Record struct {
	LSN     uint64
	Kind    byte
	Payload []byte
}

// Stats is what a log holds and has done since it was opened.
type Stats struct {
	Segments int   // live segments, the one written included
	Free     int   // released segments kept for reuse
	Bytes    int64 // bytes of the live and kept segment files
	Next     uint64
	// Written counts the bytes handed to the files (segments' zeros
	// included), Syncs the fdatasync and directory fsync calls.
	Written, Syncs int64
}

// Log is an open log.
type Log struct {
	fs       FS
	dir      string
	prefix   string
	segBytes int64
	keepFree int
	readOnly bool

	segs     []*segment // live, oldest first; the last is written
	free     []freeSeg  // released, for reuse
	off      int64      // next write offset in the last segment
	next     uint64     // next LSN
	gen      uint64     // highest generation used
	buf      []byte
	poisoned error
	stats    Stats
}

type segment struct {
	f           File
	path        string
	gen         uint64
	size        int64
	first, last uint64 // LSNs held; first == 0 while empty
}

type freeSeg struct {
	path string
	size int64
}

// Open opens the log PREFIX.*.log in dir (creating nothing until the
// first Append) and calls replay with every record, in order. An error
// from replay ends Open with it. A damaged log is a *DamageError and is
// left as it is.
func Open(dir, prefix string, opts *Options, replay func(Record) error) (*Log, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.SegmentSize == 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	if o.SegmentSize < BlockSize || o.SegmentSize%BlockSize != 0 || o.SegmentSize > MaxSegmentSize {
		return nil, fmt.Errorf("log %s: segment size %d is not a multiple of %d up to %d", prefix, o.SegmentSize, BlockSize, MaxSegmentSize)
	}
	switch {
	case o.KeepFree == 0:
		o.KeepFree = 2
	case o.KeepFree < 0:
		o.KeepFree = 0
	}
	if o.FS == nil {
		o.FS = OS
	}
	l := &Log{fs: o.FS, dir: dir, prefix: prefix, segBytes: o.SegmentSize, keepFree: o.KeepFree, readOnly: o.ReadOnly, next: 1}
	if err := l.open(replay); err != nil {
		l.Close()
		return nil, err
	}
	if l.next == 1 && o.FirstLSN > 1 {
		l.next = o.FirstLSN
	}
	return l, nil
}

type named struct {
	gen  uint64
	path string
}

func (l *Log) open(replay func(Record) error) error {
	files, err := l.list()
	if err != nil {
		return err
	}
	for _, t := range files["tmp"] {
		if !l.readOnly {
			if err := l.fs.Remove(t.path); err != nil {
				return fmt.Errorf("log %s: remove a segment left half made: %w", l.prefix, err)
			}
		}
	}
	logs, frees := files["log"], files["free"]
	for _, fr := range frees {
		size, err := l.size(fr.path)
		if err != nil {
			return err
		}
		l.free = append(l.free, freeSeg{fr.path, size})
	}
	for i, n := range logs {
		seg, err := l.openSegment(n)
		if err != nil {
			return err
		}
		if err := l.scan(seg, replay); err != nil {
			seg.f.Close()
			return err
		}
		if seg.first == 0 && i < len(logs)-1 {
			// Made or recycled, never written, and not the newest: back
			// to the pool.
			seg.f.Close()
			if l.readOnly {
				continue
			}
			if err := l.release(seg); err != nil {
				return err
			}
			continue
		}
		l.segs = append(l.segs, seg)
	}
	l.stats.Written, l.stats.Syncs = 0, 0 // opening's own housekeeping is not the log's work
	return nil
}

// list returns the log's files by extension ("log", "free", "tmp"),
// each list in the order of generations, and notes the highest
// generation.
func (l *Log) list() (map[string][]named, error) {
	names, err := l.fs.ReadDir(l.dir)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", l.prefix, err)
	}
	files := map[string][]named{}
	for _, n := range names {
		if gen, ext, ok := l.parse(n); ok {
			l.gen = max(l.gen, gen)
			files[ext] = append(files[ext], named{gen, filepath.Join(l.dir, n)})
		}
	}
	for _, f := range files {
		slices.SortFunc(f, func(a, b named) int { return cmp.Compare(a.gen, b.gen) })
	}
	return files, nil
}

// parse splits a file name PREFIX.GEN.EXT.
func (l *Log) parse(name string) (gen uint64, ext string, ok bool) {
	rest, ok := strings.CutPrefix(name, l.prefix+".")
	if !ok {
		return 0, "", false
	}
	num, ext, ok := strings.Cut(rest, ".")
	if !ok || len(num) != genDigits || (ext != "log" && ext != "free" && ext != "tmp") {
		return 0, "", false
	}
	for _, c := range num {
		if c < '0' || c > '9' {
			return 0, "", false
		}
	}
	gen, err := strconv.ParseUint(num, 10, 64)
	return gen, ext, err == nil
}

func (l *Log) path(gen uint64, ext string) string {
	return filepath.Join(l.dir, fmt.Sprintf("%s.%0*d.%s", l.prefix, genDigits, gen, ext))
}

func (l *Log) size(path string) (int64, error) {
	f, err := l.fs.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return 0, fmt.Errorf("log %s: %w", l.prefix, err)
	}
	defer f.Close()
	return f.Size()
}

func (l *Log) openSegment(n named) (*segment, error) {
	flag := os.O_RDWR
	if l.readOnly {
		flag = os.O_RDONLY
	}
	f, err := l.fs.OpenFile(n.path, flag, 0)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", l.prefix, err)
	}
	size, err := f.Size()
	if err == nil && (size < BlockSize || size%BlockSize != 0 || size > MaxSegmentSize) {
		err = &DamageError{Path: n.path, Offset: -1, Detail: fmt.Sprintf("segment of %d bytes, not a multiple of %d up to %d: cut short, or not a segment", size, BlockSize, MaxSegmentSize)}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return &segment{f: f, path: n.path, gen: n.gen, size: size}, nil
}

// scan reads seg's records from its start until one that is not whole,
// and sets where the next would go. It then reads the rest of the segment
// for a whole record of the same generation after that one, which only
// damage can explain.
func (l *Log) scan(seg *segment, replay func(Record) error) error {
	w := &window{f: seg.f, size: seg.size}
	var off int64
	for off < seg.size {
		lsn, kind, payload, ok, err := l.record(seg, w, off)
		if err != nil {
			return fmt.Errorf("log %s: read: %w", seg.path, err)
		}
		if !ok {
			break
		}
		if seg.first == 0 && l.next > 1 && lsn != l.next {
			return &DamageError{Path: seg.path, Offset: off, Detail: fmt.Sprintf("first record is %d, the previous segment ended at %d: records missing between them", lsn, l.next-1)}
		}
		if seg.first != 0 && lsn != l.next {
			return &DamageError{Path: seg.path, Offset: off, Detail: fmt.Sprintf("record %d where %d should follow", lsn, l.next)}
		}
		if err := replay(Record{LSN: lsn, Kind: kind, Payload: payload}); err != nil {
			return err
		}
		if seg.first == 0 {
			seg.first = lsn
		}
		seg.last, l.next = lsn, lsn+1
		off += padded(headerLen + int64(len(payload)))
	}
	l.off = off
	for at := off + BlockSize; at < seg.size; at += BlockSize {
		lsn, _, _, ok, err := l.record(seg, w, at)
		if err != nil {
			return fmt.Errorf("log %s: read: %w", seg.path, err)
		}
		if ok && lsn >= l.next {
			return &DamageError{Path: seg.path, Offset: off, Detail: fmt.Sprintf("record %d fails its check, and record %d at byte %d after it is whole", l.next, lsn, at)}
		}
	}
	return nil
}

// windowSize is how much of a segment is read at a time.
const windowSize = 1 << 20

// window reads a segment a megabyte at a time, into one buffer, so that
// opening a log costs a copy of its segments, not an allocation of each.
type window struct {
	f    File
	size int64
	buf  []byte // the segment's bytes from at
	at   int64
}

// bytes returns the n bytes at off, which the caller keeps within the
// segment; they are valid until the next call.
func (w *window) bytes(off, n int64) ([]byte, error) {
	if off >= w.at && off+n <= w.at+int64(len(w.buf)) {
		return w.buf[off-w.at : off-w.at+n], nil
	}
	size := min(max(n, windowSize), w.size-off)
	if int64(cap(w.buf)) < size {
		w.buf = make([]byte, size) // a record larger than the window
	}
	w.buf = w.buf[:size]
	if _, err := w.f.ReadAt(w.buf, off); err != nil {
		w.buf = w.buf[:0]
		return nil, err
	}
	w.at = off
	return w.buf[:n], nil
}

// record checks the record at off in a segment. Its payload is valid
// until the window's next read.
func (l *Log) record(seg *segment, w *window, off int64) (lsn uint64, kind byte, payload []byte, ok bool, err error) {
	if seg.size-off < headerLen {
		return 0, 0, nil, false, nil
	}
	h, err := w.bytes(off, headerLen)
	if err != nil || binary.LittleEndian.Uint32(h) != magic || binary.LittleEndian.Uint64(h[8:]) != seg.gen {
		return 0, 0, nil, false, err
	}
	lsn = binary.LittleEndian.Uint64(h[16:])
	n := int64(binary.LittleEndian.Uint32(h[24:]))
	kind = h[28]
	if lsn == 0 || h[29]|h[30]|h[31] != 0 || n > seg.size-off-headerLen {
		return 0, 0, nil, false, nil
	}
	if h, err = w.bytes(off, headerLen+n); err != nil {
		return 0, 0, nil, false, err
	}
	if crc32.Checksum(h[8:headerLen+n], castagnoli) != binary.LittleEndian.Uint32(h[4:]) {
		return 0, 0, nil, false, nil
	}
	return lsn, kind, h[headerLen : headerLen+n], true, nil
}

func padded(n int64) int64 { return (n + BlockSize - 1) / BlockSize * BlockSize }

// MaxPayload is the largest payload a record can hold.
func (l *Log) MaxPayload() int { return int(l.segBytes - headerLen) }

// Append writes a record of kind with payload, waits until it is on the
// disk, and returns its LSN. After a failed write or sync every Append
// returns ErrPoisoned: the record's fate is unknown, and its LSN is
// never given to another record before the log is opened again.
func (l *Log) Append(kind byte, payload []byte) (uint64, error) {
	switch {
	case l.readOnly:
		return 0, ErrReadOnly
	case l.poisoned != nil:
		return 0, fmt.Errorf("%w (%v)", ErrPoisoned, l.poisoned)
	case int64(len(payload)) > l.segBytes-headerLen:
		return 0, fmt.Errorf("%w: %d bytes, segments of %d", ErrTooLarge, len(payload), l.segBytes)
	}
	size := padded(headerLen + int64(len(payload)))
	rotating := len(l.segs) == 0 || l.off+size > l.segs[len(l.segs)-1].size
	gen := l.gen + 1 // a rotation's segment's
	if !rotating {
		gen = l.segs[len(l.segs)-1].gen
	}
	if int64(cap(l.buf)) < size {
		l.buf = make([]byte, size)
	}
	b := l.buf[:size]
	clear(b[headerLen+len(payload):])
	binary.LittleEndian.PutUint32(b, magic)
	binary.LittleEndian.PutUint64(b[8:], gen)
	binary.LittleEndian.PutUint64(b[16:], l.next)
	binary.LittleEndian.PutUint32(b[24:], uint32(len(payload)))
	b[28], b[29], b[30], b[31] = kind, 0, 0, 0
	copy(b[headerLen:], payload)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:headerLen+len(payload)], castagnoli))
	written := false
	if rotating {
		var err error
		if written, err = l.rotate(b); err != nil {
			return 0, l.poison(err)
		}
	}
	seg := l.segs[len(l.segs)-1]
	if !written {
		if _, err := seg.f.WriteAt(b, l.off); err != nil {
			return 0, l.poison(fmt.Errorf("log %s: write: %w", seg.path, err))
		}
		l.stats.Written += size
		l.stats.Syncs++
		if err := seg.f.Sync(); err != nil {
			return 0, l.poison(fmt.Errorf("log %s: sync: %w", seg.path, err))
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

func (l *Log) poison(err error) error {
	l.poisoned = err
	return err
}

// rotate starts the next segment: a released one renamed, or a new one
// made with first, the first record's blocks, at its start and zeros
// after (written says which: a reused segment's record is the caller's
// to write); the directory synced so that the name holds before a
// record in it is synced.
func (l *Log) rotate(first []byte) (written bool, err error) {
	gen := l.gen + 1
	path := l.path(gen, "log")
	var f File
	if i := slices.IndexFunc(l.free, func(s freeSeg) bool { return s.size == l.segBytes }); i >= 0 {
		old := l.free[i].path
		l.free = slices.Delete(l.free, i, i+1)
		if err = l.fs.Rename(old, path); err != nil {
			return false, fmt.Errorf("log %s: reuse %s: %w", l.prefix, old, err)
		}
		if f, err = l.fs.OpenFile(path, os.O_RDWR, 0); err != nil {
			return false, fmt.Errorf("log %s: %w", l.prefix, err)
		}
	} else if f, err = l.make(gen, path, first); err != nil {
		return false, err
	} else {
		written = true
	}
	l.gen = gen
	if err := l.syncDir(); err != nil {
		f.Close()
		return false, err
	}
	l.segs = append(l.segs, &segment{f: f, path: path, gen: gen, size: l.segBytes})
	l.off = 0
	return written, nil
}

// make writes a new segment as .tmp, first at its start and zeros after
// (each block written once: the record is not written over the zeros),
// syncs it and renames it .log (the caller syncs the directory). The
// record is durable once the directory is: until then the segment, and
// the record, may be lost, as a record whose sync has not returned may.
func (l *Log) make(gen uint64, path string, first []byte) (File, error) {
	tmp := l.path(gen, "tmp")
	f, err := l.fs.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log %s: make a segment: %w", l.prefix, err)
	}
	if _, err = f.WriteAt(first, 0); err == nil {
		l.stats.Written += int64(len(first))
	}
	zero := make([]byte, min(l.segBytes-int64(len(first)), 1<<20))
	for off := int64(len(first)); off < l.segBytes && err == nil; off += int64(len(zero)) {
		n := min(int64(len(zero)), l.segBytes-off)
		_, err = f.WriteAt(zero[:n], off)
		l.stats.Written += n
	}
	if err == nil {
		l.stats.Syncs++
		err = f.Sync()
	}
	if err == nil {
		err = l.fs.Rename(tmp, path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log %s: make a segment: %w", l.prefix, err)
	}
	return f, nil
}

func (l *Log) syncDir() error {
	l.stats.Syncs++
	if err := l.fs.SyncDir(l.dir); err != nil {
		return fmt.Errorf("log %s: sync directory %s: %w", l.prefix, l.dir, err)
	}
	return nil
}

// Release gives back the segments, oldest first and never the one being
// written, whose records all have an LSN at or below upto: their owner
// no longer needs them. Each is renamed .free (or removed, past
// KeepFree) and the directory synced before the next, so a cut leaves
// at most the oldest released segment in the log, next to the one after
// it, whose records its owner skips as already released.
func (l *Log) Release(upto uint64) error {
	if l.readOnly {
		return ErrReadOnly
	}
	if l.poisoned != nil {
		return fmt.Errorf("%w (%v)", ErrPoisoned, l.poisoned)
	}
	for len(l.segs) > 1 && l.segs[0].last <= upto {
		s := l.segs[0]
		l.segs = l.segs[1:]
		s.f.Close()
		if err := l.release(s); err != nil {
			return l.poison(err)
		}
	}
	return nil
}

// release renames s .free, or removes it, and syncs the directory.
func (l *Log) release(s *segment) error {
	var err error
	if s.size == l.segBytes && len(l.free) < l.keepFree {
		free := l.path(s.gen, "free")
		if err = l.fs.Rename(s.path, free); err == nil {
			l.free = append(l.free, freeSeg{free, s.size})
		}
	} else {
		err = l.fs.Remove(s.path)
	}
	if err != nil {
		return fmt.Errorf("log %s: release %s: %w", l.prefix, s.path, err)
	}
	return l.syncDir()
}

// Err is why the log takes no record until it is opened again: the
// failed write or sync that poisoned it, or its Close; nil while it
// takes records.
func (l *Log) Err() error { return l.poisoned }

// First is the LSN of the oldest record held, or Next when none is.
func (l *Log) First() uint64 {
	for _, s := range l.segs {
		if s.first != 0 {
			return s.first
		}
	}
	return l.next
}

// Next is the LSN the next record will get.
func (l *Log) Next() uint64 { return l.next }

// Stats says what the log holds and has written since it was opened.
func (l *Log) Stats() Stats {
	s := l.stats
	s.Segments, s.Free, s.Next = len(l.segs), len(l.free), l.next
	for _, g := range l.segs {
		s.Bytes += g.size
	}
	for _, g := range l.free {
		s.Bytes += g.size
	}
	return s
}

// Close closes the segment files. Every record appended is on the disk
// already.
func (l *Log) Close() error {
	var errs []error
	for _, s := range l.segs {
		errs = append(errs, s.f.Close())
	}
	l.segs = nil
	l.poisoned = errors.New("log closed")
	return errors.Join(errs...)
}

// ReadAll reads every record that passes its check in every segment of
// the log PREFIX in dir (live or released), whatever else is damaged, and
// calls fn with each, segment by segment in the order of their
// generations and within one in the order written. It is for salvaging a
// damaged log: records may repeat or be missing, and nothing it reads can
// make it fail but the directory itself.
func ReadAll(dir, prefix string, fsys FS, fn func(Record)) error {
	if fsys == nil {
		fsys = OS
	}
	l := &Log{fs: fsys, dir: dir, prefix: prefix}
	files, err := l.list()
	if err != nil {
		return err
	}
	segs := append(files["log"], files["free"]...)
	slices.SortFunc(segs, func(a, b named) int { return cmp.Compare(a.gen, b.gen) })
	for _, n := range segs {
		f, err := fsys.OpenFile(n.path, os.O_RDONLY, 0)
		if err != nil {
			continue
		}
		size, err := f.Size()
		if err != nil || size <= 0 || size > MaxSegmentSize {
			f.Close()
			continue
		}
		seg := &segment{gen: n.gen, size: size}
		w := &window{f: f, size: size}
		for off := int64(0); off+headerLen <= size; off += BlockSize {
			lsn, kind, payload, ok, err := l.record(seg, w, off)
			if err != nil {
				break // a segment that cannot be read further: what it gave is kept
			}
			if ok {
				fn(Record{LSN: lsn, Kind: kind, Payload: payload})
			}
		}
		f.Close()
	}
	return nil
}
