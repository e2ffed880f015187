// Package cache is the gate's local store: one bbolt file that holds the
// certificate keys synced from the issuer, the feed cursor and metadata, the
// anti-passback state and the gate's event log.
//
// Every change is one bbolt transaction, so a power cut at any instant
// leaves the file as it was before or after the change, never between. The
// cache implements verify.Store.
package cache

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"gateagent/verify"
)

// SchemaVersion is the layout of the file this build reads and writes.
const SchemaVersion = 1

var (
	bucketMeta     = []byte("meta")
	bucketCerts    = []byte("certs")
	bucketPassback = []byte("passback")
	bucketEvents   = []byte("events")

	// dataBuckets are created with the file and must all be there.
	dataBuckets = [][]byte{bucketCerts, bucketPassback, bucketEvents}

	keySchema = []byte("schema")
	keyFeed   = []byte("feed")
)

// Options tunes Open. The zero value is the production setting.
type Options struct {
	// LockTimeout bounds the wait for the file lock that another process
	// holds; 0 means one second.
	LockTimeout time.Duration
	// ReadOnly opens an existing file for reading only, sharing the lock
	// with other readers.
	ReadOnly bool
	// MaxSize caps the file in bytes; a change that would grow it further
	// fails whole. 0 means no cap.
	MaxSize int
}

// Cache is an open cache file. Its methods are safe for concurrent use.
type Cache struct {
	db       *bolt.DB
	path     string
	readOnly bool

	// passes mirrors the passback bucket in memory: the state is small
	// (passages within the window) and read on every scan, so the lookup
	// reads it here instead of descending a second B+tree. It is written
	// only after the bucket's transaction commits.
	passMu sync.RWMutex
	passes map[[passKeyLen]byte]int64

	// failAfter, when positive, makes Apply fail after that many writes
	// inside its transaction: a test's stand-in for a fault part-way.
	failAfter int
}

// Open opens the cache file at path, creating it when absent (unless
// ReadOnly), and checks its schema.
func Open(path string, opts *Options) (*Cache, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.LockTimeout == 0 {
		o.LockTimeout = time.Second
	}
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("cache: open %s read-only: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      o.LockTimeout,
		ReadOnly:     o.ReadOnly,
		MaxSize:      o.MaxSize,
		NoStatistics: true, // keeps a lock off the lookup path
	})
	var osErr *fs.PathError
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("cache: open %s: %w", path, ErrLocked)
	case errors.As(err, &osErr):
		// The OS said no (permission, no such directory, …): say so as it is.
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	case err != nil:
		// bbolt read the file and did not like it: bad magic, checksum,
		// version, or too short to hold its meta pages.
		return nil, fmt.Errorf("cache: open %s: %w (%w)", path, ErrCorrupt, err)
	}
	c := &Cache{db: db, path: path, readOnly: o.ReadOnly}
	err = c.init()
	if err == nil {
		err = c.loadPasses()
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	return c, nil
}

// init creates the buckets of a new file and checks the schema of an old one.
func (c *Cache) init() error {
	var found int
	err := c.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			if k, _ := tx.Cursor().First(); k != nil {
				return fmt.Errorf("%w: it holds bucket %q but no gateagent metadata", ErrCorrupt, k)
			}
			return nil
		}
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return fmt.Errorf("%w: schema version missing", ErrCorrupt)
		}
		found = int(binary.BigEndian.Uint32(v))
		if found != SchemaVersion {
			return fmt.Errorf("%w: file has version %d, this build knows %d", ErrSchema, found, SchemaVersion)
		}
		for _, b := range dataBuckets {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("%w: bucket %q missing", ErrCorrupt, b)
			}
		}
		return nil
	})
	if err != nil || found == SchemaVersion {
		return err
	}
	if c.readOnly {
		return fmt.Errorf("%w: the file is empty, not a gateagent cache yet", ErrCorrupt)
	}
	return c.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return err
		}
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], SchemaVersion)
		if err := meta.Put(keySchema, v[:]); err != nil {
			return err
		}
		for _, b := range dataBuckets {
			if _, err := tx.CreateBucket(b); err != nil {
				return err
			}
		}
		return nil
	})
}

// update runs fn in a write transaction, or refuses with ErrReadOnly: the
// one place every write goes through.
func (c *Cache) update(fn func(*bolt.Tx) error) error {
	if c.readOnly {
		return ErrReadOnly
	}
	return c.db.Update(fn)
}

// Close closes the file. Every committed change is already on disk.
func (c *Cache) Close() error {
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("cache: close %s: %w", c.path, err)
	}
	return nil
}

// Path returns the file's path.
func (c *Cache) Path() string { return c.path }

// Lookup implements verify.Store: one read transaction, two point reads,
// no allocation beyond bbolt's own.
//
// bbolt panics when it meets a damaged page; Lookup turns that into
// ErrCorrupt, so that a damaged file shuts the gate with a message instead
// of crashing the daemon.
func (c *Cache) Lookup(id verify.CertID, dir verify.Direction) (r verify.Record, found bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, found, err = verify.Record{}, false, fmt.Errorf("cache: lookup %s: %w: %v", id, ErrCorrupt, p)
		}
	}()
	tx, err := c.db.Begin(false)
	if err != nil {
		return r, false, fmt.Errorf("cache: lookup: %w", err)
	}
	defer tx.Rollback()
	v := tx.Bucket(bucketCerts).Get(id[:])
	if v == nil {
		return r, false, nil
	}
	flags, ok := getRecord(v, &r.Cert)
	if !ok {
		return verify.Record{}, false, fmt.Errorf("cache: lookup %s: %w: record of %d bytes", id, ErrCorrupt, len(v))
	}
	if flags&flagNoKey != 0 {
		return verify.Record{}, false, nil // a revocation for a certificate this gate never had
	}
	r.ID = id
	c.passMu.RLock()
	ns, ok := c.passes[passKey(&id, dir)]
	c.passMu.RUnlock()
	if ok {
		r.LastPass = time.Unix(0, ns).UTC()
	}
	return r, true, nil
}

// loadPasses fills the in-memory copy of the passback bucket.
func (c *Cache) loadPasses() error {
	c.passes = make(map[[passKeyLen]byte]int64)
	return c.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPassback).ForEach(func(k, v []byte) error {
			if len(k) != passKeyLen || len(v) != 8 {
				return fmt.Errorf("%w: passback entry of %d+%d bytes", ErrCorrupt, len(k), len(v))
			}
			c.passes[[passKeyLen]byte(k)] = int64(binary.BigEndian.Uint64(v))
			return nil
		})
	})
}

// FeedState is what the cache knows of the key feed.
type FeedState struct {
	// Cursor is the feed position the certificates reflect.
	Cursor uint64 `json:"cursor"`
	// KeyID names the issuer key that signed the last batch applied.
	KeyID string `json:"key_id,omitempty"`
	// IssuerTime is the issuer's clock when it served the last batch.
	IssuerTime time.Time `json:"issuer_time"`
	// MaxAge is how old the cache may grow, per the feed, before it is stale.
	MaxAge time.Duration `json:"max_age"`
	// SyncedAt is the gate's time of the last successful exchange.
	SyncedAt time.Time `json:"synced_at"`
	// Epoch identifies the issuer's feed the cursor counts in; zero
	// before the first full sync.
	Epoch uint64 `json:"epoch,omitempty"`
	// Resync is the progress of a full sync under way, nil when none is.
	Resync *Resync `json:"resync,omitempty"`
}

// Resync is how far a full sync (a snapshot read page by page in ID order)
// has come, so that a restarted agent resumes it.
type Resync struct {
	Epoch    uint64        `json:"epoch"`
	Snapshot uint64        `json:"snapshot"`
	After    verify.CertID `json:"after"`
	Certs    int           `json:"certs"`
}

// Feed returns the stored feed state; the zero FeedState before any sync.
func (c *Cache) Feed() (FeedState, error) {
	var fs FeedState
	err := c.db.View(func(tx *bolt.Tx) error {
		var err error
		fs, err = readFeed(tx)
		return err
	})
	if err != nil {
		return fs, fmt.Errorf("cache: feed state: %w", err)
	}
	return fs, nil
}

func readFeed(tx *bolt.Tx) (FeedState, error) {
	var fs FeedState
	v := tx.Bucket(bucketMeta).Get(keyFeed)
	if v == nil {
		return fs, nil
	}
	if err := json.Unmarshal(v, &fs); err != nil {
		return fs, fmt.Errorf("%w: feed state: %w", ErrCorrupt, err)
	}
	return fs, nil
}

func writeFeed(tx *bolt.Tx, fs *FeedState) error {
	v, err := json.Marshal(fs)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyFeed, v)
}

// Stats describes the cache for status pages and diag.
type Stats struct {
	Schema    int       `json:"schema"`
	Certs     int       `json:"certs"`
	Passbacks int       `json:"passbacks"`
	Events    int       `json:"events"`
	LastSeq   uint64    `json:"last_event_seq"`
	OldestAt  time.Time `json:"oldest_event_at,omitzero"`
	FileSize  int64     `json:"file_size"`
	Feed      FeedState `json:"feed"`
}

// Stats counts what the cache holds. It walks every page of the file: a
// status call, not one for the scan path.
func (c *Cache) Stats() (s Stats, err error) {
	// A damaged page can make bbolt panic while it walks the file: report
	// it as corruption (diag shows it) instead of crashing the caller.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cache: stats: %w: %v", ErrCorrupt, p)
		}
	}()
	s = Stats{Schema: SchemaVersion}
	err = c.db.View(func(tx *bolt.Tx) error {
		s.FileSize = tx.Size()
		s.Certs = tx.Bucket(bucketCerts).Stats().KeyN
		s.Passbacks = tx.Bucket(bucketPassback).Stats().KeyN
		ev := tx.Bucket(bucketEvents)
		s.Events = ev.Stats().KeyN
		s.LastSeq = ev.Sequence()
		if _, v := ev.Cursor().First(); v != nil {
			if e, err := decodeEvent(0, v); err == nil {
				s.OldestAt = e.Time
			}
		}
		var err error
		s.Feed, err = readFeed(tx)
		return err
	})
	if err != nil {
		return s, fmt.Errorf("cache: stats: %w", err)
	}
	return s, nil
}

// Check runs bbolt's consistency check over the whole file and returns
// every problem it finds, joined; nil means the file is whole. It holds the
// write lock while it runs, so writers wait.
func (c *Cache) Check() (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cache: check %s: %w: %v", c.path, ErrCorrupt, p)
		}
	}()
	var errs []error
	check := func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			errs = append(errs, err)
		}
		return nil
	}
	if c.readOnly {
		err = c.db.View(check)
	} else {
		err = c.db.Update(func(tx *bolt.Tx) error {
			check(tx)
			return errRollback
		})
	}
	if err != nil && !errors.Is(err, errRollback) {
		return fmt.Errorf("cache: check %s: %w", c.path, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("cache: check %s: %w: %w", c.path, ErrCorrupt, errors.Join(errs...))
	}
	return nil
}

var errRollback = errors.New("rollback")
