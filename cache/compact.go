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

// compact writes the file anew without its free pages (bbolt's Compact,
// pages full), checks the copy as Open checks a file, renames it over the
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
	dst, err := bolt.Open(tmp, 0o600, &bolt.Options{NoSync: true, Timeout: time.Second, NoStatistics: true})
	if err != nil {
		return fmt.Errorf("compact %s: %w", path, err)
	}
	dst.AllocSize = allocSize
	c.dbMu.RLock()
	err = safely(path, func() error { return bolt.Compact(dst, c.db, 4<<20) })
	c.dbMu.RUnlock()
	if err == nil {
		err = dst.Sync()
	}
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
	old := c.db
	c.db = db
	c.dbMu.Unlock()
	c.lastCompact = now
	return old.Close()
}
