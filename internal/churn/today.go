package churn

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/verify"
)

// Today is the storage of this release: the certificate cache (cache.db,
// its runs, and its delta, the log in cache.db.delta/) and the journal
// (the log in journal/) beside it, driven through package cache's
// API exactly as keysync, the controller and the agent's purge loop call
// it.
type Today struct {
	store *cache.Store
	files []*boltFile
}

// OpenToday opens (creating) cache.db and the journal in dir.
func OpenToday(dir string) (*Today, error) {
	c, err := cache.Open(filepath.Join(dir, "cache.db"), &cache.Options{Key: cacheKey})
	if err != nil {
		return nil, err
	}
	j, err := cache.OpenJournal(cache.JournalPath(c.Path()), &cache.Options{Key: cacheKey})
	if err != nil {
		c.Close()
		return nil, err
	}
	t := &Today{store: &cache.Store{Cache: c, Journal: j}}
	f, err := newBoltFile(c.Path())
	if err != nil {
		t.Close()
		return nil, err
	}
	t.files = append(t.files, f)
	return t, nil
}

// Store is the cache and the journal, for tests that look inside.
func (t *Today) Store() *cache.Store { return t.store }

// observe counts the syncs of the operation that just ended.
func (t *Today) observe() error {
	for _, f := range t.files {
		if err := f.observe(); err != nil {
			return err
		}
	}
	return nil
}

func (t *Today) Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState) error {
	var after verify.CertID
	var err error
	for certs := range pages {
		p := &cache.SnapshotPage{Epoch: fs.Epoch, Snapshot: cursor, After: after, Upserts: certs, Feed: fs}
		if _, err = t.store.Cache.ApplySnapshot(p); err != nil {
			return err
		}
		if err = t.observe(); err != nil {
			return err
		}
		after = certs[len(certs)-1].ID
	}
	_, err = t.store.Cache.ApplySnapshot(&cache.SnapshotPage{Epoch: fs.Epoch, Snapshot: cursor, After: after, Final: true, Feed: fs})
	if err != nil {
		return err
	}
	return t.observe()
}

func (t *Today) Apply(b *cache.Batch) error {
	res, err := t.store.Cache.Apply(b)
	if err == nil && res.Skipped {
		err = fmt.Errorf("batch (%d, %d] skipped", b.From, b.Next)
	}
	return join(err, t.observe())
}

func (t *Today) Lookup(id verify.CertID) (verify.Record, bool, error) {
	return t.store.Lookup(id, verify.Entry)
}

func (t *Today) AppendEvent(e event.Event) (uint64, error) {
	seq, err := t.store.Journal.AppendEvent(e)
	return seq, join(err, t.observe())
}

func (t *Today) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	seq, err := t.store.Journal.RecordPassage(id, dir, e)
	return seq, join(err, t.observe())
}

func (t *Today) Events(after uint64, max int) ([]event.Event, error) {
	return t.store.Journal.Events(after, max)
}

func (t *Today) DeleteEventsThrough(seq uint64) (int, error) {
	n, err := t.store.Journal.DeleteEventsThrough(seq)
	return n, join(err, t.observe())
}

func (t *Today) Maintain(now time.Time, retention, window time.Duration) error {
	_, err := t.store.Purge(now, retention, window)
	return join(err, t.observe())
}

func (t *Today) Usage() (Usage, error) {
	u := Usage{FileBytes: map[string]int64{}}
	for _, f := range t.files {
		fi, err := os.Stat(f.path)
		if err != nil {
			return u, err
		}
		u.FileBytes[filepath.Base(f.path)] = fi.Size()
		u.Syncs += f.syncs
	}
	ju := t.store.Journal.Usage() // the logs count their own syncs
	u.FileBytes["journal"] = ju.Bytes
	u.Syncs += ju.Syncs
	du := t.store.Cache.DeltaUsage()
	u.FileBytes["cache.db.delta"] = du.Bytes
	u.Syncs += du.Syncs
	return u, nil
}

func (t *Today) Close() error {
	err := t.store.Cache.Close()
	if t.store.Journal != nil {
		err = join(err, t.store.Journal.Close())
	}
	return err
}

func join(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// boltFile counts the syncs bbolt issues on one file, from the file
// itself: every commit moves the meta page's transaction ID by one and
// issues two fdatasyncs (one after the dirty pages, one after the meta
// page), and a commit that grows the file truncates it larger and fsyncs
// once more. So after each operation, syncs += 2·Δtxid + (1 if the file
// grew). A commit's pages are read back with pread, which writes nothing.
type boltFile struct {
	path  string
	txid  uint64
	size  int64
	syncs int64
}

func newBoltFile(path string) (*boltFile, error) {
	f := &boltFile{path: path}
	var err error
	if f.txid, f.size, err = boltTxid(path); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *boltFile) observe() error {
	txid, size, err := boltTxid(f.path)
	if err != nil {
		return err
	}
	if txid < f.txid {
		// A new file renamed over the old one: its writer counts its
		// syncs.
		f.txid, f.size = txid, size
		return nil
	}
	f.syncs += 2 * int64(txid-f.txid)
	if size > f.size {
		f.syncs++
	}
	f.txid, f.size = txid, size
	return nil
}

// boltTxid reads the newest transaction ID of the bbolt file at path (the
// higher of its two meta pages') and its size.
func boltTxid(path string) (uint64, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	// Page header 16 bytes, then the meta: magic 4, version 4, page size
	// 4, flags 4, root bucket 16, free list 8, high water mark 8, txid 8.
	var hdr [72]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil {
		return 0, 0, fmt.Errorf("%s: meta page: %w", path, err)
	}
	ps := int64(binary.NativeEndian.Uint32(hdr[24:]))
	t0 := binary.NativeEndian.Uint64(hdr[64:])
	if _, err := f.ReadAt(hdr[:], ps); err != nil {
		return 0, 0, fmt.Errorf("%s: meta page: %w", path, err)
	}
	return max(t0, binary.NativeEndian.Uint64(hdr[64:])), fi.Size(), nil
}

// cacheKey seals the harness's files as a gate's cache key does: the
// bytes written are the sealed records' (any key costs the same).
var cacheKey = func() *cache.Key {
	k, err := cache.NewKey(bytes.Repeat([]byte{0x5a}, cache.KeyLen))
	if err != nil {
		panic(err)
	}
	return k
}()
