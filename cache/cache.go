// Package cache is the gate's local storage: two stores.
//
//   - The certificate cache (Cache, cache.db, a bbolt file): the
//     certificate keys synced from the issuer and the feed's cursor and
//     state. The key feed can rebuild all of it.
//   - The journal (Journal, the directory journal beside it, a log of
//     records: internal/seglog): what only the gate knows, its event log
//     not yet uploaded and the anti-passback state. It is written on every
//     grant and passage, a record and one fdatasync each (journal.go).
//
// Store puts the two together as the verifier's verify.Store.
//
// Every change to the cache is one bbolt transaction, and every record of
// the journal is synced before the call returns, so a power cut at any
// instant leaves each store as it was before or after the change, never
// between. Every page is checked before bbolt reads it (see pages.go; the
// certificates of a cache opened for writing after the open,
// deferred.go), every record of the journal as it is read, and every read
// and write runs where damage is an error (*CorruptError), never a crash.
//
// Both stores are sealed under the gate's cache key (Key): every
// certificate key is encrypted, and every record a decision depends on
// (a certificate with its flags and validity, a revocation, a passage,
// the feed's cursor) is authenticated; events carry a MAC checked before
// upload. A record that fails is never used: its read is an *AuthError.
package cache

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// SchemaVersion is the layout of the certificate cache this build reads
// and writes: 3, keys sealed and records authenticated. Schema 1 (which
// also held the journal's buckets) and 2 kept keys in plaintext: Open
// refuses them with ErrPlaintext, and the agent rebuilds the cache from
// the feed (see Options.Replaces and MoveLegacyJournal).
const SchemaVersion = 3

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
	// Key is the gate's cache key. Required.
	Key *Key
	// Replaces names the older cache (schema 1 or 2, keys in plaintext)
	// this new file is being rebuilt for: once the file holds a completed
	// full sync it is renamed over Replaces, which removes the old file.
	Replaces string
	// JournalSegment is the size of the journal's new log segments, a
	// multiple of 4096; 0 means 4 MB. Tests make it small.
	JournalSegment int64
}

// Cache is an open certificate cache. Its methods are safe for concurrent
// use.
type Cache struct {
	db       *bolt.DB
	path     atomic.Pointer[string]
	readOnly bool
	key      *Key
	aead     cipher.AEAD // the file's sealing of certificate keys
	schema   int
	// synced is set once the cache holds a completed sync (a cursor or
	// the epoch of a full sync).
	synced atomic.Bool
	// replaces is the older cache this file is rebuilt for; cleared
	// once renamed over it.
	replaceMu sync.Mutex
	replaces  string

	// later is the check of the certificates' tree that Open leaves
	// running (deferred.go); nil when there is none.
	later *deferredCheck

	// failAfter, when positive, makes Apply fail after that many writes
	// inside its transaction: a test's stand-in for a fault part-way.
	failAfter int
}

// Open opens the certificate cache at path, creating it when absent
// (unless ReadOnly). The file is checked first: a file that is not whole
// gives a *CorruptError (errors.Is ErrCorrupt) and is left as it is. Open
// for writing checks all but the certificates, which a check started in
// the background then reads (deferred.go): damage found there is what
// Checked, every lookup and every write return from then on. A file made
// under another cache key gives ErrWrongKey; a cache of schema 1 or 2
// gives ErrPlaintext; both are left as they are.
func Open(path string, opts *Options) (*Cache, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Key == nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, ErrNoKey)
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("cache: open %s: %w", path, &CorruptError{Path: path, Kind: Foreign, Detail: "a directory, not a cache file (the journal is one)", Problems: 1})
	}
	// A read-only open is a tool's (diag, `gateagent cache`), which reads
	// every certificate anyway: the whole file is checked first. The
	// agent's open for writing leaves the certificates to a check beside
	// the gate (deferred.go).
	shallow := string(bucketCerts)
	if o.ReadOnly {
		shallow = ""
	}
	db, later, err := openDB(path, o, shallow)
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	c := &Cache{db: db, readOnly: o.ReadOnly, key: o.Key, replaces: o.Replaces, later: later}
	c.path.Store(&path)
	if later != nil {
		go later.run()
	}
	err = c.init()
	if err == nil {
		var fs FeedState
		if fs, err = c.Feed(); errors.Is(err, ErrAuth) {
			// The cursor says what the file holds: a cache whose cursor
			// cannot be trusted is rebuilt whole from the feed.
			err = &CorruptError{Path: path, Kind: Unauthentic, Detail: "the feed state fails authentication under the cache key", Problems: 1}
		} else if err == nil {
			c.synced.Store(fs.Cursor > 0 || fs.Epoch != 0)
		}
	}
	if err == nil && c.synced.Load() && c.replaces != "" {
		err = c.finishRebuild() // synced, but stopped before the rename
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	return c, nil
}

// init creates the buckets of a new file and checks the schema and key of
// an old one.
func (c *Cache) init() error {
	var found int
	var salt []byte
	err := c.viewMeta(func(tx *bolt.Tx) error {
		var err error
		found, err = fileSchema(tx, c.Path(), kindCache)
		if err != nil || found == 0 {
			return err
		}
		if found < SchemaVersion {
			return fmt.Errorf("%w (schema %d)", ErrPlaintext, found)
		}
		if tx.Bucket(bucketCerts) == nil {
			return damaged(c.Path(), 0, "bucket %q missing", bucketCerts)
		}
		meta := tx.Bucket(bucketMeta)
		if salt = meta.Get(keySalt); len(salt) != saltLen {
			return damaged(c.Path(), 0, "sealing salt missing")
		}
		salt = append([]byte(nil), salt...)
		return fileKey(c.key, meta, c.Path(), func() bool {
			// Evidence that the key is right after all: the feed state
			// authenticates, or the first certificate does.
			if v := meta.Get(keyFeed); len(v) > tagLen {
				return macOK(&c.key.mac, v[len(v)-tagLen:], domainFeed, v[:len(v)-tagLen])
			}
			aead, err := c.key.sealer(salt)
			if err != nil || c.Checked() != nil {
				return false // the certificates are read only once checked
			}
			k, v := tx.Bucket(bucketCerts).Cursor().First()
			var cert verify.Cert
			_, outcome := openRecord(aead, k, v, &cert)
			return k != nil && outcome == recordOK
		})
	})
	if err != nil {
		c.schema = found
		return err
	}
	if found == 0 {
		if c.readOnly {
			return &CorruptError{Path: c.Path(), Kind: Empty, Detail: "no buckets yet", Problems: 1}
		}
		salt = make([]byte, saltLen)
		rand.Read(salt)
		err = c.update(func(tx *bolt.Tx) error {
			if err := createFile(tx, kindCache, SchemaVersion, c.key, bucketCerts); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keySalt, salt)
		})
		if err != nil {
			return err
		}
	}
	c.schema = SchemaVersion
	c.aead, err = c.key.sealer(salt)
	return err
}

// fileKey checks the file's key check value against k. When it differs,
// evidence says whether the key is wrong (nothing authenticates under it:
// ErrWrongKey) or the check value itself was damaged (a record does
// authenticate: an Unauthentic CorruptError).
func fileKey(k *Key, meta *bolt.Bucket, path string, evidence func() bool) error {
	err := checkKey(k, meta.Get(keyCheck))
	if err != nil && evidence() {
		return &CorruptError{Path: path, Kind: Unauthentic, Detail: "the key check value is damaged (the file's records authenticate under the key)", Problems: 1}
	}
	return err
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
		want = boltJournalSchema
	}
	if found < 1 || found > want {
		return 0, fmt.Errorf("%w: file has version %d, this build knows %d", ErrSchema, found, want)
	}
	return found, nil
}

// createFile sets up a new file: its meta bucket with the key check value
// of k, and its data buckets.
func createFile(tx *bolt.Tx, kind string, schema int, k *Key, buckets ...[]byte) error {
	meta, err := tx.CreateBucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := meta.Put(keyCheck, k.check[:]); err != nil {
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

// view runs fn in a read transaction, a damaged page being an error, once
// the certificates are checked (Checked), or returns the damage found in
// them.
func (c *Cache) view(fn func(*bolt.Tx) error) error {
	if err := c.Checked(); err != nil {
		return err
	}
	return c.viewMeta(fn)
}

// viewMeta runs fn in a read transaction at once: for fn that reads no
// certificate, only what Open checked (the meta bucket).
func (c *Cache) viewMeta(fn func(*bolt.Tx) error) error {
	return safely(c.Path(), func() error { return c.db.View(fn) })
}

// Checked waits for the check of the certificates that Open started
// (deferred.go) and returns its outcome: nil, or the *CorruptError it
// found, which every lookup and write returns from then on. It returns at
// once when that check is over, or when there was none to run.
func (c *Cache) Checked() error {
	if c.later == nil {
		return nil
	}
	return c.later.wait()
}

// update runs fn in a write transaction, or refuses with ErrReadOnly: the
// one place every write goes through.
func (c *Cache) update(fn func(*bolt.Tx) error) error {
	if c.readOnly {
		return ErrReadOnly
	}
	if err := c.Checked(); err != nil {
		return err
	}
	return safely(c.Path(), func() error { return c.db.Update(fn) })
}

// Close closes the file. Every committed change is already on disk.
func (c *Cache) Close() error {
	if c.later != nil {
		c.later.halt()
	}
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("cache: close %s: %w", c.Path(), err)
	}
	return nil
}

// Path returns the file's path (the older cache's, once a rebuild has
// replaced it).
func (c *Cache) Path() string { return *c.path.Load() }

// Schema returns the file's layout version: SchemaVersion.
func (c *Cache) Schema() int { return c.schema }

// Rebuilding returns the older cache this file is being rebuilt for, ""
// when it is not (or no longer).
func (c *Cache) Rebuilding() string {
	c.replaceMu.Lock()
	defer c.replaceMu.Unlock()
	return c.replaces
}

// finishRebuild renames the rebuilt file, now holding a full sync, over
// the older cache it replaces: the old file, keys in plaintext, is gone
// from the directory in the same step. The open handle follows the file.
func (c *Cache) finishRebuild() error {
	c.replaceMu.Lock()
	defer c.replaceMu.Unlock()
	if c.replaces == "" {
		return nil
	}
	if err := os.Rename(c.Path(), c.replaces); err != nil {
		return fmt.Errorf("cache: replace %s with the rebuilt cache: %w", c.replaces, err)
	}
	if d, err := os.Open(filepath.Dir(c.replaces)); err == nil {
		d.Sync() // the rename survives a power cut
		d.Close()
	}
	p := c.replaces
	c.path.Store(&p)
	c.replaces = ""
	return nil
}

// Synced reports whether the cache holds a completed sync from the key
// feed; a new or rebuilt cache does not until its first full sync ends.
func (c *Cache) Synced() bool { return c.synced.Load() }

// Lookup implements verify.Store for the certificates alone (no
// anti-passback state: Store adds the journal's): one read transaction,
// one point read, one AES-GCM open of the key with the record's flags and
// validity as associated data, no allocation beyond bbolt's own. A damaged
// page is ErrCorrupt and a record that fails authentication an *AuthError,
// so that either shuts the gate with a message.
func (c *Cache) Lookup(id verify.CertID, _ verify.Direction) (r verify.Record, found bool, err error) {
	err = safely(c.Path(), func() error {
		if c.later != nil {
			if err := c.later.descend(id[:]); err != nil {
				return err
			}
		}
		tx, err := c.db.Begin(false)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		v := tx.Bucket(bucketCerts).Get(id[:])
		if v == nil {
			return nil
		}
		flags, outcome := openRecord(c.aead, id[:], v, &r.Cert)
		switch outcome {
		case recordShape:
			return damaged(c.Path(), 0, "record of cert %s: %d bytes", id, len(v))
		case recordForged:
			return &AuthError{Path: c.Path(), Bucket: "certs", Key: append([]byte(nil), id[:]...)} // a copy: id stays on the stack
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
// A state that fails authentication is an *AuthError.
func (c *Cache) Feed() (FeedState, error) {
	var fs FeedState
	err := c.viewMeta(func(tx *bolt.Tx) error {
		var err error
		fs, err = c.readFeed(tx)
		return err
	})
	if err != nil {
		return fs, fmt.Errorf("cache: feed state: %w", err)
	}
	return fs, nil
}

// The feed state is stored as JSON ‖ MAC(16).
func (c *Cache) readFeed(tx *bolt.Tx) (FeedState, error) {
	var fs FeedState
	v := tx.Bucket(bucketMeta).Get(keyFeed)
	if v == nil {
		return fs, nil
	}
	if len(v) < tagLen || !macOK(&c.key.mac, v[len(v)-tagLen:], domainFeed, v[:len(v)-tagLen]) {
		return fs, &AuthError{Path: c.Path(), Bucket: "meta", Key: keyFeed}
	}
	if err := json.Unmarshal(v[:len(v)-tagLen], &fs); err != nil {
		return fs, damaged(c.Path(), 0, "feed state: %v", err)
	}
	return fs, nil
}

func (c *Cache) writeFeed(tx *bolt.Tx, fs *FeedState) error {
	v, err := json.Marshal(fs)
	if err != nil {
		return err
	}
	tag := macOf(&c.key.mac, domainFeed, v)
	return tx.Bucket(bucketMeta).Put(keyFeed, append(v, tag[:]...))
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
		s.Feed, err = c.readFeed(tx)
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
	if err := checkDB(c.db, c.Path(), c.readOnly); err != nil {
		return fmt.Errorf("cache: check %s: %w", c.Path(), err)
	}
	return nil
}
