// Package cache is the gate's local storage: two bbolt files.
//
//   - The certificate cache (Cache, cache.db): the certificate keys synced
//     from the issuer and the feed's cursor and state. The key feed can
//     rebuild all of it.
//   - The journal (Journal, journal.db beside it): what only the gate
//     knows, its event log not yet uploaded and the anti-passback state.
//     It is small, written on every grant and passage.
//
// Store puts the two together as the verifier's verify.Store.
//
// Every change is one bbolt transaction, so a power cut at any instant
// leaves a file as it was before or after the change, never between.
// Every file is checked whole before bbolt reads it (see pages.go), and
// every read and write runs where a damaged page is an error
// (*CorruptError), never a crash.
package cache

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// SchemaVersion is the layout of the certificate cache this build reads
// and writes. Schema 1 also held the passback and events buckets, which
// MoveToJournal moves into the journal.
const SchemaVersion = 2

// Options tunes Open and OpenJournal. The zero value is the production
// setting.
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

// Cache is an open certificate cache. Its methods are safe for concurrent
// use.
type Cache struct {
	db       *bolt.DB
	path     string
	readOnly bool
	// schema is the file's layout: SchemaVersion, or 1 before its events
	// have moved to the journal.
	schema int
	// synced is set once the cache holds a completed sync (a cursor or
	// the epoch of a full sync).
	synced atomic.Bool

	// failAfter, when positive, makes Apply fail after that many writes
	// inside its transaction: a test's stand-in for a fault part-way.
	failAfter int
}

// Open opens the certificate cache at path, creating it when absent
// (unless ReadOnly). The file is checked whole first: a file that is not
// gives a *CorruptError (errors.Is ErrCorrupt) and is left as it is.
func Open(path string, opts *Options) (*Cache, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	db, err := openDB(path, o)
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	c := &Cache{db: db, path: path, readOnly: o.ReadOnly}
	err = c.init()
	if err == nil {
		var fs FeedState
		if fs, err = c.Feed(); err == nil {
			c.synced.Store(fs.Cursor > 0 || fs.Epoch != 0)
		}
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
	err := c.view(func(tx *bolt.Tx) error {
		var err error
		found, err = fileSchema(tx, c.path, kindCache)
		if err != nil || found == 0 {
			return err
		}
		need := [][]byte{bucketCerts}
		if found == 1 {
			need = append(need, bucketPassback, bucketEvents)
		}
		for _, b := range need {
			if tx.Bucket(b) == nil {
				return damaged(c.path, 0, "bucket %q missing", b)
			}
		}
		return nil
	})
	if err != nil || found != 0 {
		c.schema = found
		return err
	}
	if c.readOnly {
		return &CorruptError{Path: c.path, Kind: Empty, Detail: "no buckets yet", Problems: 1}
	}
	c.schema = SchemaVersion
	return c.update(func(tx *bolt.Tx) error {
		return createFile(tx, kindCache, SchemaVersion, bucketCerts)
	})
}

// fileSchema reads the schema of a file of the given kind (cache or
// journal); 0 for a file with no buckets yet.
func fileSchema(tx *bolt.Tx, path, kind string) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		if k, _ := tx.Cursor().First(); k != nil {
			return 0, &CorruptError{Path: path, Kind: Foreign, Detail: fmt.Sprintf("it holds bucket %q but no gateagent metadata", k), Problems: 1}
		}
		return 0, nil
	}
	got := string(meta.Get(keyKind))
	if got == "" {
		got = kindCache // schema 1 caches carry no kind
	}
	if got != kind {
		return 0, &CorruptError{Path: path, Kind: Foreign, Detail: fmt.Sprintf("a gateagent %s, not a %s", got, kind), Problems: 1}
	}
	v := meta.Get(keySchema)
	if len(v) != 4 {
		return 0, damaged(path, 0, "schema version missing")
	}
	found := int(binary.BigEndian.Uint32(v))
	want := SchemaVersion
	if kind == kindJournal {
		want = JournalSchema
	}
	if found < 1 || found > want || kind == kindJournal && found != want {
		return 0, fmt.Errorf("%w: file has version %d, this build knows %d", ErrSchema, found, want)
	}
	return found, nil
}

// createFile sets up a new file: its meta bucket and its data buckets.
func createFile(tx *bolt.Tx, kind string, schema int, buckets ...[]byte) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	var v [4]byte
	binary.BigEndian.PutUint32(v[:], uint32(schema))
	if err := meta.Put(keySchema, v[:]); err != nil {
		return err
	}
	if err := meta.Put(keyKind, []byte(kind)); err != nil {
		return err
	}
	for _, b := range buckets {
		if _, err := tx.CreateBucket(b); err != nil {
			return err
		}
	}
	return nil
}

// view runs fn in a read transaction, a damaged page being an error.
func (c *Cache) view(fn func(*bolt.Tx) error) error {
	return safely(c.path, func() error { return c.db.View(fn) })
}

// update runs fn in a write transaction, or refuses with ErrReadOnly: the
// one place every write goes through.
func (c *Cache) update(fn func(*bolt.Tx) error) error {
	if c.readOnly {
		return ErrReadOnly
	}
	return safely(c.path, func() error { return c.db.Update(fn) })
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

// Schema returns the file's layout version: SchemaVersion, or 1 for a
// cache whose events have not yet moved to the journal.
func (c *Cache) Schema() int { return c.schema }

// Synced reports whether the cache holds a completed sync from the key
// feed; a new or rebuilt cache does not until its first full sync ends.
func (c *Cache) Synced() bool { return c.synced.Load() }

// Lookup implements verify.Store for the certificates alone (no
// anti-passback state: Store adds the journal's): one read transaction,
// one point read, no allocation beyond bbolt's own. A damaged page is
// ErrCorrupt, so that it shuts the gate with a message.
func (c *Cache) Lookup(id verify.CertID, _ verify.Direction) (r verify.Record, found bool, err error) {
	err = safely(c.path, func() error {
		tx, err := c.db.Begin(false)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		v := tx.Bucket(bucketCerts).Get(id[:])
		if v == nil {
			return nil
		}
		flags, ok := getRecord(v, &r.Cert)
		if !ok {
			return damaged(c.path, 0, "record of cert %s: %d bytes", id, len(v))
		}
		found = flags&flagNoKey == 0 // else a revocation for a certificate this gate never had
		return nil
	})
	if err != nil {
		return verify.Record{}, false, fmt.Errorf("cache: lookup %s: %w", id, err)
	}
	if !found {
		return verify.Record{}, false, nil
	}
	r.ID = id
	return r, true, nil
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
	err := c.view(func(tx *bolt.Tx) error {
		var err error
		fs, err = readFeed(tx, c.path)
		return err
	})
	if err != nil {
		return fs, fmt.Errorf("cache: feed state: %w", err)
	}
	return fs, nil
}

func readFeed(tx *bolt.Tx, path string) (FeedState, error) {
	var fs FeedState
	v := tx.Bucket(bucketMeta).Get(keyFeed)
	if v == nil {
		return fs, nil
	}
	if err := json.Unmarshal(v, &fs); err != nil {
		return fs, damaged(path, 0, "feed state: %v", err)
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

// Stats describes the gate's storage for status pages and diag: the
// certificate cache's own figures, and the journal's when Store gives them.
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

// Stats counts the certificates. It walks every page of the certificate
// bucket: a status call, not one for the scan path.
func (c *Cache) Stats() (Stats, error) {
	s := Stats{Schema: c.schema}
	err := c.view(func(tx *bolt.Tx) error {
		s.FileSize = tx.Size()
		s.Certs = tx.Bucket(bucketCerts).Stats().KeyN
		var err error
		s.Feed, err = readFeed(tx, c.path)
		return err
	})
	if err != nil {
		return s, fmt.Errorf("cache: stats: %w", err)
	}
	return s, nil
}

// Check checks the whole file (pages.go): nil when it is whole, else a
// *CorruptError. It holds the write lock while it runs, so writers wait
// (BenchmarkCheck1M: what a grant may wait).
func (c *Cache) Check() error {
	if err := checkDB(c.db, c.path, c.readOnly); err != nil {
		return fmt.Errorf("cache: check %s: %w", c.path, err)
	}
	return nil
}
