package cache

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"gateagent/internal/seglog"
	"gateagent/verify"
)

// The delta (schema 4) is what the feed changed since the newest run was
// written: one record of a log (internal/seglog) per feed batch, written
// with one fdatasync, and indexed in memory (index.go) at open. Every
// window the maintenance writes the index as a run (runs.go) and gives
// the log's segments back, so the delta holds a few hours of batches.
//
// A record's payload is
//
//	store(16) | nonce(12) | sealed
//
// where sealed is AES-256-GCM under the cache file's sealing key, with
// the store's ID, the record's LSN and kind as associated data, of
//
//	from(8) | next(8) | feed state length(2) | feed state (JSON) | count(4) | count × entry(65)
//
// each entry a certificate as it stands after the batch (revocations
// final, key-less ones included), its key in it. store binds the log to
// one cache file (a new file has a new ID, and a log of another file is
// not read), the LSN to its place in the log. Every record carries the
// feed's cursor and state, so the delta needs no record of its own to say
// where it stands once its older segments are given back.

// DeltaPath is the directory of the delta of the cache file at path.
func DeltaPath(cachePath string) string { return cachePath + ".delta" }

const (
	deltaPrefix   = "delta"
	deltaBatch    = 'B' // a feed batch, or a settled record (no cursor move)
	deltaSync     = 'S' // a feed state alone
	deltaCarry    = 'R' // revocations a full sync carries over (no feed state)
	deltaAADLabel = "gateagent cache v4 delta\x00"
	storeIDLen    = 16
	// deltaSegment is the delta's segment size: a 3-hour window of
	// batches of 116 certificates is about 9 MB, in 1 MB segments that
	// are kept, once given back, for the next window (deltaKeepFree), so
	// a segment is written with zeros once in its life and the delta's
	// files stay near what a window holds. A batch too large for a
	// segment is written as a run (Apply).
	deltaSegment  = 1 << 20
	deltaKeepFree = 10
	// maxDeltaOverhead bounds what a record holds beside its entries:
	// its store ID, nonce, tag, cursors and feed state.
	maxDeltaOverhead = storeIDLen + nonceLen + tagLen + 22 + 4096
)

// deltaRecord is one record of the delta, read or to be written.
type deltaRecord struct {
	from, next uint64
	fs         FeedState // without Resync: that lives in the file (runs.go)
	entries    []byte
	plain      []byte // what a record read back was opened into
}

func (c *Cache) deltaAAD(lsn uint64, kind byte) []byte {
	aad := make([]byte, 0, len(deltaAADLabel)+storeIDLen+9)
	aad = append(aad, deltaAADLabel...)
	aad = append(aad, c.store[:]...)
	aad = binary.BigEndian.AppendUint64(aad, lsn)
	return append(aad, kind)
}

// appendDelta writes r as the delta's next record and returns its LSN,
// once it is on the disk.
func (c *Cache) appendDelta(kind byte, r *deltaRecord) (uint64, error) {
	if c.delta == nil {
		return 0, ErrReadOnly
	}
	fs := r.fs
	fs.Resync = nil
	fj, err := json.Marshal(&fs)
	if err != nil {
		return 0, err
	}
	plain := binary.BigEndian.AppendUint64(c.dbuf[:0], r.from)
	plain = binary.BigEndian.AppendUint64(plain, r.next)
	plain = binary.BigEndian.AppendUint16(plain, uint16(len(fj)))
	plain = append(plain, fj...)
	plain = binary.BigEndian.AppendUint32(plain, uint32(len(r.entries)/entryLen))
	plain = append(plain, r.entries...)
	p := make([]byte, 0, storeIDLen+nonceLen+len(plain)+tagLen)
	p = append(p, c.store[:]...)
	var nonce [nonceLen]byte
	rand.Read(nonce[:])
	p = append(p, nonce[:]...)
	lsn := c.delta.Next()
	p = c.aead.Seal(p, nonce[:], plain, c.deltaAAD(lsn, kind))
	clear(plain)
	c.dbuf = plain
	if len(p) > c.delta.MaxPayload() {
		return 0, fmt.Errorf("%w: %d certificates in one batch do not fit a delta segment", ErrBadBatch, len(r.entries)/entryLen)
	}
	c.yield()
	got, err := c.delta.Append(kind, p)
	if err != nil {
		return 0, fmt.Errorf("delta %s: %w", c.deltaDir, err)
	}
	if got != lsn {
		return 0, fmt.Errorf("delta %s: record written as %d, sealed as %d", c.deltaDir, got, lsn)
	}
	return got, nil
}

// errForeign ends the replay of a delta that belongs to another cache
// file.
var errForeign = errors.New("delta of another cache file")

// openDelta opens the delta beside the cache file and indexes its records
// after the runs' (c.covers), moving the cursor and feed state on with
// them. A delta of another file (left by a cache moved aside) is removed;
// a damaged one, or one that lacks records the runs do not cover, is a
// *CorruptError, for the agent to rebuild the cache.
func (c *Cache) openDelta() error {
	dir := c.deltaDir
	c.idx = newIndex()
	if !c.readOnly {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("delta %s: %w", dir, err)
		}
	} else if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	expect := c.covers + 1
	seen := false
	var plain []byte
	var lastFS []byte // the newest record's feed state, decoded once at the end
	replay := func(r seglog.Record) error {
		if r.LSN <= c.covers {
			return nil // in the runs already
		}
		if !seen && r.LSN != expect {
			return damaged(dir, 0, "the delta starts at record %d, the runs cover up to %d: records in between are missing", r.LSN, c.covers)
		}
		seen = true
		d, fj, err := c.openDeltaRecord(r, plain[:0])
		plain = d.plain
		if err != nil {
			return err
		}
		if r.Kind != deltaCarry { // a carry record moves no cursor
			if d.from > c.fs.Cursor || d.next < d.from {
				return damaged(dir, 0, "delta record %d moves the cursor from %d to %d, the cache is at %d", r.LSN, d.from, d.next, c.fs.Cursor)
			}
			c.fs.Cursor = d.next
			lastFS = append(lastFS[:0], fj...)
		}
		for i := 0; i < len(d.entries); i += entryLen {
			c.idx.add(d.entries[i : i+entryLen])
		}
		return nil
	}
	o := &seglog.Options{SegmentSize: c.deltaSegment, KeepFree: deltaKeepFree, ReadOnly: c.readOnly, FS: c.fsys}
	saved := c.fs
	log, err := seglog.Open(dir, deltaPrefix, o, replay)
	if errors.Is(err, errForeign) || err == nil && log.Next() <= c.covers {
		// Another file's delta, or one behind the runs (made anew): what
		// it holds is not this file's, or is in the runs already.
		if log != nil {
			log.Close()
		}
		c.idx.wipe()
		c.fs, lastFS = saved, nil
		if c.readOnly {
			return nil
		}
		if err := removeLog(c.fsys, dir, deltaPrefix); err != nil {
			return fmt.Errorf("delta %s: %w", dir, err)
		}
		o.FirstLSN = c.covers + 1
		log, err = seglog.Open(dir, deltaPrefix, o, func(seglog.Record) error { return nil })
	}
	if err != nil {
		var de *seglog.DamageError
		if errors.As(err, &de) {
			return &CorruptError{Path: dir, Kind: Damaged, Detail: de.Error(), Problems: 1}
		}
		return fmt.Errorf("delta %s: %w", dir, err)
	}
	clear(plain)
	if lastFS != nil {
		var fs FeedState
		if err := json.Unmarshal(lastFS, &fs); err != nil {
			log.Close()
			return damaged(dir, 0, "the delta's feed state: %v", err)
		}
		fs.Cursor, fs.Resync = c.fs.Cursor, nil
		c.fs = fs
	}
	c.idx.build()
	if c.readOnly {
		log.Close()
		return nil
	}
	c.delta = log
	return nil
}

// openDeltaRecord authenticates and parses a record of the delta into
// buf (returned in d.plain, which d.entries is part of); it returns the
// record's feed state undecoded (JSON), checked as JSON.
func (c *Cache) openDeltaRecord(r seglog.Record, buf []byte) (d deltaRecord, fj []byte, err error) {
	p := r.Payload
	d.plain = buf
	if len(p) < storeIDLen+nonceLen+tagLen {
		return d, nil, damaged(c.deltaDir, 0, "delta record %d: %d bytes", r.LSN, len(p))
	}
	if !bytes.Equal(p[:storeIDLen], c.store[:]) {
		return d, nil, errForeign
	}
	if r.Kind != deltaBatch && r.Kind != deltaSync && r.Kind != deltaCarry {
		return d, nil, damaged(c.deltaDir, 0, "delta record %d of kind %d", r.LSN, r.Kind)
	}
	plain, err := c.aead.Open(buf, p[storeIDLen:storeIDLen+nonceLen], p[storeIDLen+nonceLen:], c.deltaAAD(r.LSN, r.Kind))
	if err != nil {
		return d, nil, &CorruptError{Path: c.deltaDir, Kind: Unauthentic, Detail: fmt.Sprintf("delta record %d fails authentication under the cache key", r.LSN), Problems: 1}
	}
	d.plain = plain
	bad := func(what string) (deltaRecord, []byte, error) {
		return d, nil, damaged(c.deltaDir, 0, "delta record %d: %s", r.LSN, what)
	}
	if len(plain) < 18 {
		return bad("short")
	}
	d.from, d.next = binary.BigEndian.Uint64(plain), binary.BigEndian.Uint64(plain[8:])
	fl := int(binary.BigEndian.Uint16(plain[16:]))
	if len(plain) < 18+fl+4 {
		return bad("feed state cut short")
	}
	if fj = plain[18 : 18+fl]; !json.Valid(fj) {
		return bad("feed state is not JSON")
	}
	rest := plain[18+fl:]
	n := int(binary.BigEndian.Uint32(rest))
	if d.entries = rest[4:]; len(d.entries) != n*entryLen {
		return bad(fmt.Sprintf("%d entries in %d bytes", n, len(d.entries)))
	}
	for i := 0; i < len(d.entries); i += entryLen {
		if d.entries[i+verify.CertIDLen]&^knownFlags != 0 {
			return bad("unknown flags")
		}
	}
	return d, fj, nil
}

// removeLog removes the files of the log prefix in dir, on fsys (nil:
// the operating system's).
func removeLog(fsys seglog.FS, dir, prefix string) error {
	if fsys == nil {
		fsys = seglog.OS
	}
	names, err := fsys.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix+".") {
			if err := fsys.Remove(filepath.Join(dir, n)); err != nil {
				return err
			}
		}
	}
	return fsys.SyncDir(dir)
}

// deltaFS, when set, is where the delta's files are: a test's model of a
// power cut (seglogtest.CrashFS).
var deltaFS seglog.FS

// checkDeltaDir checks the delta's log at dir without writing to it:
// every record whole. (What it says is checked with the key by Open.)
func checkDeltaDir(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	l, err := seglog.Open(dir, deltaPrefix, &seglog.Options{ReadOnly: true, FS: deltaFS}, func(seglog.Record) error { return nil })
	if err != nil {
		var de *seglog.DamageError
		if errors.As(err, &de) {
			return &CorruptError{Path: dir, Kind: Damaged, Detail: de.Error(), Problems: 1}
		}
		return err
	}
	return l.Close()
}

// DeltaUsage says what the delta's files hold and what its log has
// written since the cache was opened (the journal's Usage, for the
// delta).
func (c *Cache) DeltaUsage() JournalUsage {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.delta == nil {
		return JournalUsage{}
	}
	return usageOf(c.delta)
}
