package cache

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/internal/regfile"
	"gateagent/internal/seglog"
	"gateagent/verify"
)

// The buckets of the two kinds of file, and what their records must be.
var (
	bucketMeta     = []byte("meta")
	bucketCerts    = []byte("certs")
	bucketPassback = []byte("passback")
	bucketEvents   = []byte("events")

	keySchema = []byte("schema")
	keyKind   = []byte("kind")
	keyFeed   = []byte("feed")
	keyAcked  = []byte("acked")
	keyCheck  = []byte("keycheck")
	keySalt   = []byte("salt")

	// recordChecks knows every bucket either file may hold (a cache of
	// schema 1 held the journal's two as well).
	recordChecks = map[string]recordCheck{
		"meta":     checkMetaRecord,
		"certs":    checkCertRecord,
		"passback": checkPassRecord,
		"events":   checkEventRecord,
		"groups":   checkGroupRecord,
		"blooms":   checkBloomRecord,
	}
)

// checkGroupRecord checks a run's group's shape (group.go): its
// authenticity needs the key, which every lookup and Authenticate use.
func checkGroupRecord(k, v []byte) error {
	if !groupShape(k, v) {
		return fmt.Errorf("group of %d+%d bytes, or its count, flags or last ID wrong", len(k), len(v))
	}
	return nil
}

// checkBloomRecord checks a run's filter's shape: whole 64-byte blocks.
func checkBloomRecord(k, v []byte) error {
	if len(k) != 8 || len(v) == 0 || len(v)%64 != 0 {
		return fmt.Errorf("filter of %d+%d bytes", len(k), len(v))
	}
	return nil
}

func checkMetaRecord(k, v []byte) error {
	switch string(k) {
	case "schema":
		if len(v) != 4 {
			return fmt.Errorf("schema of %d bytes", len(v))
		}
	case "kind":
		if string(v) != kindCache && string(v) != kindJournal {
			return fmt.Errorf("kind %q", v)
		}
	case "acked":
		if len(v) != 8 {
			return fmt.Errorf("acknowledged sequence of %d bytes", len(v))
		}
	case "feed":
		// JSON, then its MAC (schema 3); JSON alone before.
		var fs FeedState
		if err := json.Unmarshal(v, &fs); err != nil && (len(v) < tagLen || json.Unmarshal(v[:len(v)-tagLen], &fs) != nil) {
			return fmt.Errorf("feed state: %v", err)
		}
	case "runs", "resync":
		if len(v) < tagLen || !json.Valid(v[:len(v)-tagLen]) {
			return fmt.Errorf("%s record of %d bytes", k, len(v))
		}
	case "keycheck":
		if len(v) != tagLen {
			return fmt.Errorf("key check value of %d bytes", len(v))
		}
	case "salt":
		if len(v) != saltLen {
			return fmt.Errorf("sealing salt of %d bytes", len(v))
		}
	default:
		return fmt.Errorf("unknown key %q", k)
	}
	return nil
}

// checkCertRecord checks a certificate record's shape: a sealed record
// (schema 3) of the length its flags give, or a plaintext one of schema
// 1 or 2, which Open then refuses as such. Its authenticity needs the
// key: Authenticate, and every lookup, check it.
func checkCertRecord(k, v []byte) error {
	if len(k) != verify.CertIDLen || len(v) == 0 || v[0]&^knownFlags != 0 ||
		len(v) != recordLenOf(v[0]) && len(v) != recordLenV2 {
		return fmt.Errorf("certificate record of %d+%d bytes or unknown flags", len(k), len(v))
	}
	return nil
}

// checkPassRecord checks a passage's shape: with its MAC (schema 2), or
// without (schema 1, before the journal's migration).
func checkPassRecord(k, v []byte) error {
	if len(k) != passKeyLen || len(v) != passLen && len(v) != passLenV1 {
		return fmt.Errorf("passage of %d+%d bytes", len(k), len(v))
	}
	if d := verify.Direction(k[verify.CertIDLen]); d != verify.Entry && d != verify.Exit {
		return fmt.Errorf("passage in direction %d", d)
	}
	return nil
}

func checkEventRecord(k, v []byte) error {
	if len(k) != 8 || binary.BigEndian.Uint64(k) == 0 {
		return fmt.Errorf("event key %x", k)
	}
	e, err := decodeEvent(0, v)
	if err != nil {
		return err
	}
	return e.Validate()
}

// The kinds of file, as stored under meta/kind.
const (
	kindCache   = "cache"
	kindJournal = "journal"
)

// openDB opens the bbolt file at path for a Cache or a Journal: it locks
// the file, checks it whole (walk), and only then gives it to bbolt. A
// file of zero bytes opened for writing is left to bbolt to set up.
//
// With shallow naming a bucket, the check leaves that bucket's tree out
// and returns a *deferredCheck holding the file's map, to check it after
// (see deferred.go); nil when the bucket has no tree of its own.
func openDB(path string, o Options, shallow string) (*bolt.DB, *deferredCheck, error) {
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	flag := os.O_RDWR | os.O_CREATE
	if o.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, nil, err // the OS said no (permission, no such directory, …): say so as it is
	}
	if err := lock(f, !o.ReadOnly, o.LockTimeout); err != nil {
		f.Close()
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if fi.Size() == 0 && o.ReadOnly {
		f.Close()
		return nil, nil, &CorruptError{Path: path, Kind: Empty, Detail: "0 bytes", Problems: 1}
	}
	var later *deferredCheck
	if fi.Size() > 0 {
		if later, err = checkAtOpen(path, f, fi.Size(), shallow); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	var db *bolt.DB
	err = safely(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			// bbolt takes the file this package opened, locked and
			// checked; its own lock on it then succeeds at once.
			OpenFile:     func(string, int, os.FileMode) (*os.File, error) { return f, nil },
			Timeout:      o.LockTimeout,
			ReadOnly:     o.ReadOnly,
			MaxSize:      o.MaxSize,
			NoStatistics: true, // keeps a lock off the lookup path
		})
		return err
	})
	if err != nil {
		f.Close() // bbolt closed it already, unless it panicked
		if later != nil {
			later.unmap()
		}
		var ce *CorruptError
		if errors.As(err, &ce) {
			return nil, nil, err
		}
		// The walk passed, so bbolt should not refuse the file; say so
		// as damage rather than as an OS error.
		return nil, nil, damaged(path, 0, "bbolt: %v", err)
	}
	return db, later, nil
}

// lock takes the file's lock, shared or exclusive, waiting up to timeout.
// bbolt's own lock on the same open file then succeeds at once.
func lock(f *os.File, exclusive bool, timeout time.Duration) error {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		if time.Now().After(deadline) {
			return ErrLocked
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOpenFile maps the locked file f read-only and walks it. It returns
// the top-level buckets found, name → sequence.
func checkOpenFile(path string, f *os.File, size int64) (map[string]uint64, error) {
	data, err := mapFile(path, f, size, syscall.MAP_POPULATE) // every page is read: map them at once
	if err != nil {
		return nil, err
	}
	defer syscall.Munmap(data)
	w, err := walkMapped(path, data, "")
	if err != nil {
		return nil, err
	}
	return w.buckets, nil
}

// walkMapped walks the file mapped at data: all of it, or all but the
// tree of the bucket shallow names.
func walkMapped(path string, data []byte, shallow string) (w *walk, err error) {
	err = safely(path, func() error {
		m, ps, err := metaOf(path, data)
		if err != nil {
			return err
		}
		w = newWalk(path, data, ps, m, recordChecks)
		w.shallow = shallow
		w.all()
		return w.err()
	})
	return w, err
}

// checkAtOpen is openDB's check: the whole file (checkOpenFile), or all
// but the tree of the bucket shallow names, which it returns to check
// later with the file's map.
func checkAtOpen(path string, f *os.File, size int64, shallow string) (*deferredCheck, error) {
	if shallow == "" {
		_, err := checkOpenFile(path, f, size)
		return nil, err
	}
	data, err := mapFile(path, f, size, 0) // only a few pages are read now
	if err != nil {
		return nil, err
	}
	// Random access, as bbolt maps it: a lookup's descent reads a page
	// at a time, and a fault must not read megabytes around it (a
	// device's read-ahead can be 8 MB: 20 ms a lookup on a cold start).
	syscall.Madvise(data, syscall.MADV_RANDOM)
	w, err := walkMapped(path, data, shallow)
	if err != nil || w.shallowRoot == 0 { // damaged, or no tree left to check
		syscall.Munmap(data)
		return nil, err
	}
	// The walk beside the gate reads the whole file: a map of its own,
	// read ahead.
	seq, err := mapFile(path, f, size, 0)
	if err != nil {
		syscall.Munmap(data)
		return nil, err
	}
	syscall.Madvise(seq, syscall.MADV_SEQUENTIAL)
	d := newDeferredCheck(path, data, w)
	d.seq = seq
	return d, nil
}

// mapFile maps size bytes of f read-only.
func mapFile(path string, f *os.File, size int64, flags int) ([]byte, error) {
	if size > int64(^uint(0)>>1) {
		return nil, damaged(path, 0, "%d bytes: larger than this machine can map", size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED|flags)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", path, err)
	}
	return data, nil
}

// CheckFile checks the closed cache file or journal (a directory) at path without
// writing to it (sharing its lock with other readers, so it waits for an
// agent that holds it, up to a second, then returns ErrLocked). It
// returns the kind of file found, "cache" or "journal", and nil when the
// file is whole; the error is a *CorruptError when it is not.
func CheckFile(path string) (string, error) {
	if fi, err := os.Lstat(path); err == nil && fi.IsDir() {
		if err := checkJournalDir(path); err != nil {
			return "", fmt.Errorf("cache: check %s: %w", path, err)
		}
		return kindJournal, nil
	}
	f, _, err := regfile.Open(path) // a FIFO in its place must not block
	if err != nil {
		return "", fmt.Errorf("cache: check %s: %w", path, err)
	}
	defer f.Close()
	if err := lock(f, false, time.Second); err != nil {
		return "", fmt.Errorf("cache: check %s: %w", path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("cache: check %s: %w", path, err)
	}
	if fi.Size() == 0 {
		return "", fmt.Errorf("cache: check %s: %w", path, &CorruptError{Path: path, Kind: Empty, Detail: "0 bytes", Problems: 1})
	}
	buckets, err := checkOpenFile(path, f, fi.Size())
	if err != nil {
		return "", fmt.Errorf("cache: check %s: %w", path, err)
	}
	_, meta := buckets["meta"]
	_, certs := buckets["certs"]
	_, groups := buckets["groups"]
	_, events := buckets["events"]
	switch {
	case !meta && len(buckets) == 0:
		return "", fmt.Errorf("cache: check %s: %w", path, &CorruptError{Path: path, Kind: Empty, Detail: "no buckets yet", Problems: 1})
	case meta && groups:
		if err := checkDeltaDir(DeltaPath(path)); err != nil {
			return "", fmt.Errorf("cache: check %s: %w", DeltaPath(path), err)
		}
		return kindCache, nil
	case meta && certs:
		return kindCache, nil
	case meta && events:
		return kindJournal, nil
	}
	return "", fmt.Errorf("cache: check %s: %w", path, &CorruptError{Path: path, Kind: Foreign, Detail: "buckets " + strings.Join(sortedKeys(buckets), ", "), Problems: 1})
}

func sortedKeys(m map[string]uint64) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkDB walks the file of an open bbolt handle from inside a
// transaction, so that no writer changes it meanwhile: a write
// transaction (the writers wait) unless the handle is read-only.
func checkDB(db *bolt.DB, path string, readOnly bool) error {
	run := func(*bolt.Tx) error {
		// A descriptor of its own for the map: closing it leaves bbolt's
		// lock (flock, held by its own descriptor) in place.
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		_, err = checkOpenFile(path, f, fi.Size())
		return err
	}
	var err error
	if readOnly {
		err = db.View(run)
	} else {
		err = db.Update(func(tx *bolt.Tx) error {
			if err := run(tx); err != nil {
				return err
			}
			return errRollback
		})
	}
	if errors.Is(err, errRollback) {
		return nil
	}
	return err
}

var errRollback = errors.New("rollback")

// errClosed is what a lookup meets on a cache closed before its check
// ended.
var errClosed = errors.New("closed")

// Quarantine moves the damaged file at path aside, to
// PATH.damaged-YYYYMMDDTHHMMSSZ (UTC), for a technician to take away, and
// returns the new name. It keeps the newest keepDamaged such files of
// path and deletes older ones, so that a disk that damages every file
// cannot fill up with copies.
func Quarantine(path string, now time.Time) (string, error) {
	base := path + ".damaged-" + now.UTC().Format("20060102T150405Z")
	to := base
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, to); err != nil {
		return "", fmt.Errorf("cache: move %s aside: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // the rename survives a power cut
		d.Close()
	}
	old, _ := filepath.Glob(path + ".damaged-*")
	sort.Strings(old) // the names sort by time
	for len(old) > keepDamaged {
		if old[0] != to {
			os.Remove(old[0])
		}
		old = old[1:]
	}
	return to, nil
}

// keepDamaged is how many damaged copies of one file are kept.
const keepDamaged = 3

// RebuildPath is where a cache of an older schema is rebuilt (see
// Options.Replaces): beside it, until it replaces it.
func RebuildPath(cachePath string) string { return cachePath + ".rebuild" }

// checkJournalDir checks the journal's log in dir without writing to it,
// sharing its lock with other readers: every record whole, with a head
// and a known kind. (What it says is checked with the key by
// OpenJournal.)
func checkJournalDir(dir string) error {
	if f, err := os.Open(filepath.Join(dir, "LOCK")); err == nil {
		defer f.Close()
		if err := lock(f, false, time.Second); err != nil {
			return err
		}
	}
	l, err := seglog.Open(dir, "journal", &seglog.Options{SegmentSize: journalSegment, ReadOnly: true}, func(r seglog.Record) error {
		if len(r.Payload) < jheadLen || r.Kind < recEvent || r.Kind > recCheckpoint {
			return damaged(dir, 0, "record %d: kind %d, %d bytes", r.LSN, r.Kind, len(r.Payload))
		}
		return nil
	})
	var de *seglog.DamageError
	if errors.As(err, &de) {
		return &CorruptError{Path: dir, Kind: Damaged, Detail: de.Error(), Problems: 1}
	}
	if err != nil {
		return err
	}
	return l.Close()
}
