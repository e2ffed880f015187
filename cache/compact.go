package cache

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// allocSize is how much a cache file grows at a time (bbolt's default is
// 16 MB): the file stays within a megabyte of the pages it uses.
const allocSize = 1 << 20

// The file is compacted when it is larger than its runs need by a quarter
// and compactSlack: bbolt never gives a file's free pages back, and lists
// them all in the free list it writes with every commit, so a file that
// held twice the certificates for a while (a full sync's run beside the
// runs it replaces, until they expire) would stay twice the size and
// write a larger free list with every commit for ever. In the steady
// state the free pages are about one run's (the one deleted before the
// next is cut), which the threshold leaves alone.
const compactSlack = 8 << 20

// CompactSuffix names the copy a compaction writes beside the file
// before it renames it over it; Open removes one a cut left.
const CompactSuffix = ".compact"

// needsCompaction says whether the file is large enough against what its
// runs need to be compacted, and both sizes.
func (c *Cache) needsCompaction() (bool, int64, int64) {
	fi, err := os.Stat(c.Path())
	if err != nil {
		return false, 0, 0
	}
	c.mu.RLock()
	var need int64 = 1 << 20 // meta, branches, the free list
	for _, r := range c.runs {
		need += int64((r.Certs+groupSize-1)/groupSize+1)*4096*51/50 + int64(len(r.bloom)) + 4096
	}
	c.mu.RUnlock()
	return fi.Size() > need*5/4+compactSlack, fi.Size(), need
}

// compact writes the file anew without its free pages (copyFile: bbolt's
// Compact, paced), checks the copy as Open checks a file, renames it over the
// file and puts it in the old one's place: lookups go on from the old file
// until the swap, and from the new one after. Writers wait (c.wmu is
// held). A power cut before the rename leaves the old file and a copy
// that the next Open removes; after it, the new file, whole.
func (c *Cache) compact(now time.Time) error {
	if err := c.Checked(); err != nil {
		return err
	}
	path := c.Path()
	tmp := path + CompactSuffix
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return err
	}
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: time.Second, NoStatistics: true})
	if err != nil {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	dst.AllocSize = allocSize
	c.dbMu.RLock()
	err = safely(path, func() error { return copyFile(dst, c.db, compactTx, c.yield) })
	c.dbMu.RUnlock()
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", path, err)
	}
	db, _, err := openDB(tmp, Options{MaxSize: c.maxSize}, "")
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("compact %s: the copy: %w", path, err)
	}
	db.AllocSize = allocSize
	if err := os.Rename(tmp, path); err != nil {
		db.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // the rename survives a power cut
		d.Close()
	}
	c.dbMu.Lock()
	c.rd.end() // of the old file, which Close below would wait for
	old := c.db
	c.db = db
	c.dbMu.Unlock()
	c.lastCompact = now
	return old.Close()
}

// compactTx is the most a compaction writes in one transaction, each
// synced: what a grant's fsync can find queued on the device before it,
// as a run's writing (commitGroups).
const compactTx = commitGroups * 4096

// copyFile writes every bucket of src into dst as bbolt's Compact does
// (every page full, sequences kept), paced for a gate at work: in
// transactions of at most txMax bytes, each committed with its fsync
// (dst syncs), and before each yield, so that a transaction does not
// begin while the gate decides and the device never holds more than one
// transaction of the copy's writes. bbolt's own Compact writes the whole
// copy without a sync, which leaves it all to be written at once and a
// grant's fsync waiting behind it. A cache file's buckets hold no
// buckets (cache.go, migrate.go): one that does is refused, the file
// left as it is.
func copyFile(dst, src *bolt.DB, txMax int64, yield func()) error {
	yield()
	tx, err := dst.Begin(true)
	if err != nil {
		return err
	}
	defer func() { tx.Rollback() }()
	var size int64
	err = src.View(func(stx *bolt.Tx) error {
		return stx.ForEach(func(name []byte, from *bolt.Bucket) error {
			to, err := tx.CreateBucket(name)
			if err != nil {
				return err
			}
			if err := to.SetSequence(from.Sequence()); err != nil {
				return err
			}
			to.FillPercent = 1.0
			return from.ForEach(func(k, v []byte) error {
				if v == nil {
					return fmt.Errorf("bucket %q holds bucket %q: not a cache file's shape", name, k)
				}
				if size += int64(len(k) + len(v)); size > txMax {
					if err := tx.Commit(); err != nil {
						return err
					}
					yield()
					if tx, err = dst.Begin(true); err != nil {
						return err
					}
					size = int64(len(k) + len(v))
					to = tx.Bucket(name)
					to.FillPercent = 1.0
				}
				return to.Put(k, v)
			})
		})
	})
	if err != nil {
		return err
	}
	yield()
	return tx.Commit()
}
