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
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/internal/seglog"
	"gateagent/verify"
)

// SchemaVersion is the layout of the certificate cache this build reads
// and writes: 4, the certificates in immutable runs of sealed groups and
// a delta log (runs.go, delta.go). Schema 3 kept a record per certificate
// in one tree, updated in place: Open moves its certificates into a run
// (migrate.go). Schema 1 (which also held the journal's buckets) and 2
// kept keys in plaintext: Open refuses them with ErrPlaintext, and the
// agent rebuilds the cache from the feed (see Options.Replaces and
// MoveLegacyJournal).
const SchemaVersion = 4

// DefaultRunWindow is how long the delta grows before Purge writes it
// as a run: it bounds the delta indexed at open (a cold start's cost).
const DefaultRunWindow = 3 * time.Hour

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
	// DeltaSegment is the size of the delta's new log segments, a
	// multiple of 4096; 0 means 1 MB. Tests make it small.
	DeltaSegment int64
	// RunWindow is how long the delta grows before Purge writes it as a
	// run; 0 means DefaultRunWindow.
	RunWindow time.Duration
}

// Cache is an open certificate cache. Its methods are safe for concurrent
// use.
type Cache struct {
	// db is the file; dbMu is held for reading while a transaction of it
	// runs, and for writing while a compaction puts a new file in its
	// place (runs.go).
	db       *bolt.DB
	dbMu     sync.RWMutex
	rd       reader // the lookups' read transaction of db, kept
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
	later     *deferredCheck
	laterOnce sync.Once

	// The certificates (runs.go, delta.go). mu guards what a lookup
	// reads: the runs (a slice replaced, never changed in place), the
	// delta's index, the feed state.
	mu     sync.RWMutex
	st     runsState
	runs   []*run
	idx    *index
	covers uint64
	fs     FeedState // Resync left out: resync holds it
	resync *Resync

	// fg holds the cache's own writes back while the gate decides
	// (foreground.go).
	fg foreground

	// wmu serializes the writers: Apply, ApplySnapshot, RecordSync,
	// Settle and Purge. A lookup never takes it.
	wmu          sync.Mutex
	store        [storeIDLen]byte
	delta        *seglog.Log // nil when read-only
	deltaDir     string
	deltaSegment int64
	fsys         seglog.FS
	dbuf         []byte
	window       time.Duration
	lastCut      time.Time
	maxSize      int
	lastCompact  time.Time

	// failAfter, when positive, makes Apply fail, writing nothing, on a
	// batch of more entries: a test's stand-in for a fault part-way.
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
	// The open allocates the delta's index and the runs' filters at once
	// (about 30 MB at 5M certificates, none of it holding pointers): at
	// the default GOGC the collector would run four times meanwhile, and
	// its assists double the open's CPU (BenchmarkColdStart5M: 71 ms to
	// ready, 34 ms so). The collector paces itself anew once it is done.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("cache: open %s: %w", path, &CorruptError{Path: path, Kind: Foreign, Detail: "a directory, not a cache file (the journal is one)", Problems: 1})
	}
	// A read-only open is a tool's (diag, `gateagent cache`), which reads
	// every certificate anyway: the whole file is checked first. The
	// agent's open for writing leaves the certificates to a check beside
	// the gate (deferred.go).
	shallow := string(bucketGroups)
	if o.ReadOnly {
		shallow = ""
	}
	db, later, err := openDB(path, o, shallow)
	if err != nil {
		return nil, fmt.Errorf("cache: open %s: %w", path, err)
	}
	db.AllocSize = allocSize
	if !o.ReadOnly {
		os.Remove(path + CompactSuffix) // a compaction's copy that a cut left
	}
	c := &Cache{db: db, readOnly: o.ReadOnly, key: o.Key, replaces: o.Replaces, later: later,
		deltaDir: DeltaPath(path), deltaSegment: o.DeltaSegment, window: o.RunWindow, fsys: deltaFS, maxSize: o.MaxSize}
	if c.deltaSegment == 0 {
		c.deltaSegment = deltaSegment
	}
	if c.window <= 0 {
		c.window = DefaultRunWindow
	}
	c.path.Store(&path)
	err = c.init()
	if err == nil {
		err = c.load()
	}
	// The walk of the runs' groups starts once the open has read what it
	// needs and the first lookup is answered, or after checkDelay: on a
	// board's boot its reads of the whole file would queue before theirs.
	if err == nil && c.later != nil {
		time.AfterFunc(checkDelay, c.startCheck)
	}
	if err == nil {
		c.synced.Store(c.fs.Cursor > 0 || c.fs.Epoch != 0)
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
		if found < 3 {
			return fmt.Errorf("%w (schema %d)", ErrPlaintext, found)
		}
		for _, b := range dataBuckets(found) {
			if tx.Bucket(b) == nil {
				return damaged(c.Path(), 0, "bucket %q missing", b)
			}
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
			if found == 3 {
				k, v := tx.Bucket(bucketCerts).Cursor().First()
				var cert verify.Cert
				_, outcome := openRecord(aead, k, v, &cert)
				return k != nil && outcome == recordOK
			}
			k, v := tx.Bucket(bucketGroups).Cursor().First()
			g, outcome := openGroup(aead, k, v)
			g.release()
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
		// A delta left beside a file made anew is another file's.
		if err := os.RemoveAll(c.deltaDir); err != nil {
			return fmt.Errorf("remove the delta of an older file: %w", err)
		}
		salt = make([]byte, saltLen)
		rand.Read(salt)
		if c.aead, err = c.key.sealer(salt); err != nil {
			return err
		}
		err = c.update(func(tx *bolt.Tx) error {
			if err := createFile(tx, kindCache, SchemaVersion, c.key, dataBuckets(SchemaVersion)...); err != nil {
				return err
			}
			st := newStore()
			if err := c.writeRuns(tx, &st); err != nil {
				return err
			}
			if err := c.writeFeed(tx, &FeedState{}); err != nil {
				return err
			}
			return tx.Bucket(bucketMeta).Put(keySalt, salt)
		})
		if err != nil {
			return err
		}
	}
	c.schema = SchemaVersion
	if c.aead, err = c.key.sealer(salt); err != nil {
		return err
	}
	if found == 3 {
		if c.readOnly {
			return fmt.Errorf("%w: a cache of schema 3, whose certificates the agent moves into runs when it next starts", ErrSchema)
		}
		return c.migrate3()
	}
	return nil
}

// dataBuckets are the buckets of a cache of schema 3 or 4 beside meta.
func dataBuckets(schema int) [][]byte {
	if schema == 3 {
		return [][]byte{bucketCerts}
	}
	return [][]byte{bucketGroups, bucketBlooms}
}

// load reads what the file says of its runs, feed and resync, then the
// delta after the runs.
func (c *Cache) load() error {
	var runs []*run
	err := c.viewMeta(func(tx *bolt.Tx) error {
		var err error
		if c.st, runs, err = c.readRuns(tx); err != nil {
			return err
		}
		if c.fs, err = c.readFeed(tx); err != nil {
			return err
		}
		c.resync, err = c.readResync(tx)
		return err
	})
	var ae *AuthError
	if errors.As(err, &ae) {
		// What the file holds cannot be trusted: it is rebuilt whole
		// from the feed.
		what := map[string]string{"feed": "the feed state", "runs": "the runs' record", "resync": "the resync state"}[string(ae.Key)]
		if ae.Bucket == "blooms" {
			what = "a run's filter"
		}
		return &CorruptError{Path: c.Path(), Kind: Unauthentic, Detail: what + " fails authentication under the cache key", Problems: 1}
	}
	if err != nil {
		return err
	}
	c.fs.Resync = nil
	c.runs, c.covers = runs, c.st.Covers
	copy(c.store[:], c.st.Store)
	if n := len(runs); n > 0 {
		c.lastCut = runs[n-1].Written
	}
	return c.openDelta()
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
	c.dbMu.RLock()
	defer c.dbMu.RUnlock()
	return safely(c.Path(), func() error { return c.db.View(fn) })
}

// checkDelay is how long after the open the walk of the runs' groups
// starts at the latest.
const checkDelay = 250 * time.Millisecond

// startCheck starts the check of the runs' groups, once.
func (c *Cache) startCheck() {
	if c.later != nil {
		c.laterOnce.Do(func() { go c.later.run() })
	}
}

// Checked waits for the check of the certificates that Open started
// (deferred.go) and returns its outcome: nil, or the *CorruptError it
// found, which every lookup and write returns from then on. It returns at
// once when that check is over, or when there was none to run.
func (c *Cache) Checked() error {
	if c.later == nil {
		return nil
	}
	c.startCheck() // whoever waits for it needs it now
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
	if h := commitHook; h != nil {
		if err := h(); err != nil {
			return err
		}
	}
	c.yield()
	c.dbMu.RLock()
	defer c.dbMu.RUnlock()
	// The lookups' kept transaction ends before the commit, and none is
	// kept until it is done (see reader).
	defer c.rd.hold()()
	return safely(c.Path(), func() error { return c.db.Update(fn) })
}

// commitHook, when set, is called before each write transaction, and an
// error from it stops the transaction: a test's power cut, which stops
// the file's commits at the same instant as the delta's writes.
var commitHook func() error

// Close closes the file. Every committed change is already on disk.
func (c *Cache) Close() error {
	if c.later != nil {
		c.startCheck() // a walk never started ends at once
		c.later.halt()
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var derr error
	if c.delta != nil {
		derr = c.delta.Close()
	}
	c.rd.shut()
	if err := errors.Join(c.db.Close(), derr); err != nil {
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
	// The delta follows the file: closed, renamed, opened again (a full
	// sync has just given all of it back to the runs).
	if c.delta != nil {
		c.delta.Close()
		c.delta = nil
	}
	to := DeltaPath(c.replaces)
	if err := os.RemoveAll(to); err != nil {
		return fmt.Errorf("cache: replace %s with the rebuilt cache: %w", c.replaces, err)
	}
	if err := os.Rename(c.deltaDir, to); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cache: replace %s with the rebuilt cache: %w", c.replaces, err)
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
	c.deltaDir = to
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.openDelta()
}

// Synced reports whether the cache holds a completed sync from the key
// feed; a new or rebuilt cache does not until its first full sync ends.
func (c *Cache) Synced() bool { return c.synced.Load() }

// Lookup implements verify.Store for the certificates alone (no
// anti-passback state: Store adds the journal's): the delta's index in
// memory, then the runs from the newest whose filter may hold id, each one
// read transaction's point read and one AES-GCM open of a group. A damaged
// page is ErrCorrupt and a group that fails authentication an
// *AuthError, so that either shuts the gate with a message.
func (c *Cache) Lookup(id verify.CertID, _ verify.Direction) (r verify.Record, found bool, err error) {
	c.dbMu.RLock()
	defer c.dbMu.RUnlock()
	defer c.startCheck() // after the first lookup: see Open
	err = safely(c.Path(), func() error {
		if c.later != nil {
			// Damage found anywhere in the file refuses every lookup,
			// even one the delta or a run untouched by it would answer.
			if err := c.later.found(); err != nil {
				return err
			}
		}
		var e [entryLen]byte
		defer clear(e[:])
		c.mu.RLock()
		if v, ok := c.idx.get(id[:]); ok {
			copy(e[:], v)
			c.mu.RUnlock()
			found = true
		} else {
			runs := c.runs
			h := scanHit(runs, id[:])
			if h < 0 {
				c.mu.RUnlock()
				return nil
			}
			// Taken or begun under mu: the runs it reads are the
			// list's (a dropped run's groups are deleted after it
			// leaves the list).
			groups, done, err := c.rd.take(c.db)
			c.mu.RUnlock()
			if err != nil {
				return err
			}
			defer done()
			if found, err = c.lookupRuns(groups, runs[:h+1], id[:], e[:]); err != nil || !found {
				return err
			}
		}
		found = decodeEntry(e[:], &r.Cert)&flagNoKey == 0 // else a revocation for a certificate this gate never had
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

// record finds id's newest entry into e for a writer (c.wmu held): the
// index, then the runs.
func (c *Cache) record(id []byte, e []byte) (bool, error) {
	c.mu.RLock()
	if v, ok := c.idx.get(id); ok {
		copy(e, v)
		c.mu.RUnlock()
		return true, nil
	}
	runs := c.runs
	c.mu.RUnlock()
	h := newestHit(runs, id)
	if h < 0 {
		return false, nil // in no run: no transaction to begin
	}
	found := false
	err := c.viewMeta(func(tx *bolt.Tx) error {
		var err error
		found, err = c.lookupRuns(groupsCursor(tx), runs[:h+1], id, e)
		return err
	})
	return found, err
}

// warm reads, ahead of a batch's certificates, the line of the delta's
// index and of each run's filter where each one's search begins. Reads
// that do not depend on one another go to memory side by side, where the
// searches one by one would wait for each (two random reads of tables of
// tens of megabytes a certificate); the searches then find their lines in
// the processor's cache. A feed batch is written by one writer; lookups
// meanwhile are unaffected.
func (c *Cache) warm(certs []verify.Cert) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	var sum uint64
	for i := range certs {
		id := certs[i].ID[:]
		sum += c.idx.touch(id)
		for _, r := range c.runs {
			sum += uint64(r.bloom.touch(id))
		}
	}
	readSink.Add(sum)
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
	// Runs are the runs the snapshot is written into, one for each
	// window of expiry its certificates fall in.
	Runs []ResyncRun `json:"runs,omitempty"`
}

// ResyncRun is a run a full sync is writing: the certificates of the
// snapshot that expire in one window.
type ResyncRun struct {
	Seq    uint64        `json:"seq"`
	Window int64         `json:"window"` // not_after in Unix seconds ÷ the window's
	Last   verify.CertID `json:"last"`   // the last ID written
	Certs  int           `json:"certs"`
}

// Feed returns the feed state: the cursor and state of the last batch
// applied, and the full sync under way; the zero FeedState before any
// sync.
func (c *Cache) Feed() (FeedState, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	fs := c.fs
	if c.resync != nil {
		r := *c.resync
		r.Runs = slices.Clone(r.Runs)
		fs.Resync = &r
	}
	return fs, nil
}

// The feed state is stored as JSON ‖ MAC(16) (readMeta).
func (c *Cache) readFeed(tx *bolt.Tx) (FeedState, error) {
	var fs FeedState
	_, err := c.readMeta(tx, keyFeed, domainFeed, "feed state", &fs)
	return fs, err
}

func (c *Cache) writeFeed(tx *bolt.Tx, fs *FeedState) error {
	return c.writeMeta(tx, keyFeed, domainFeed, fs)
}

// readMeta reads the meta record key, JSON ‖ MAC(16) under the file's key
// in domain, into v; found is false (v untouched) when there is none. A
// record that fails its MAC is an *AuthError, one that is not JSON
// damage (what names it).
func (c *Cache) readMeta(tx *bolt.Tx, key, domain []byte, what string, v any) (found bool, err error) {
	b := tx.Bucket(bucketMeta).Get(key)
	if b == nil {
		return false, nil
	}
	if len(b) < tagLen || !macOK(&c.key.mac, b[len(b)-tagLen:], domain, b[:len(b)-tagLen]) {
		return true, &AuthError{Path: c.Path(), Bucket: "meta", Key: key}
	}
	if err := json.Unmarshal(b[:len(b)-tagLen], v); err != nil {
		return true, damaged(c.Path(), 0, "%s: %v", what, err)
	}
	return true, nil
}

// writeMeta stores v as the meta record key: JSON ‖ MAC(16) in domain.
func (c *Cache) writeMeta(tx *bolt.Tx, key, domain []byte, v any) error {
	j, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tag := macOf(&c.key.mac, domain, j)
	return tx.Bucket(bucketMeta).Put(key, append(j, tag[:]...))
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
	// Runs counts the runs, DeltaCerts the certificates in the delta
	// (not yet in a run), DeltaSize the bytes of the delta's segments.
	Runs       int   `json:"runs"`
	DeltaCerts int   `json:"delta_certs"`
	DeltaSize  int64 `json:"delta_size"`
	// LastRun is when the newest run was written, LastCompact when the
	// file was last compacted (since it was opened).
	LastRun     time.Time `json:"last_run,omitzero"`
	LastCompact time.Time `json:"last_compact,omitzero"`
}

// Stats counts the certificates, each once: a status call, which reads
// every run's groups (Live).
func (c *Cache) Stats() (Stats, error) {
	s := Stats{Schema: c.schema}
	err := c.view(func(tx *bolt.Tx) error {
		s.FileSize = tx.Size()
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("cache: stats: %w", err)
	}
	s.Feed, _ = c.Feed()
	if s.Certs, err = c.count(math.MinInt64); err != nil {
		return s, fmt.Errorf("cache: stats: %w", err)
	}
	c.mu.RLock()
	s.Runs, s.DeltaCerts = len(c.runs), c.idx.len()
	s.LastCompact = c.lastCompact
	if n := len(c.runs); n > 0 {
		s.LastRun = c.runs[n-1].Written
	}
	c.mu.RUnlock()
	s.DeltaSize = DeltaSize(c.deltaDir)
	return s, nil
}

// DeltaSize is the bytes of the delta's segments at dir.
func DeltaSize(dir string) int64 {
	var n int64
	names, _ := os.ReadDir(dir)
	for _, e := range names {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
	}
	return n
}

// Check checks the whole file (pages.go) and the delta's log: nil when
// both are whole, else a *CorruptError. It holds the file's write lock
// while it runs, so writers wait (BenchmarkCheck1M: what a grant may
// wait).
func (c *Cache) Check() error {
	c.dbMu.RLock()
	defer c.dbMu.RUnlock()
	defer c.rd.hold()() // it holds the write lock: as a commit (reader)
	if err := checkDB(c.db, c.Path(), c.readOnly); err != nil {
		return fmt.Errorf("cache: check %s: %w", c.Path(), err)
	}
	if err := checkDeltaDir(c.deltaDir); err != nil {
		return fmt.Errorf("cache: check %s: %w", c.deltaDir, err)
	}
	return nil
}
