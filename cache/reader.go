package cache

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// reader is a read transaction of the file kept open from one lookup to
// the next. Beginning one (bbolt's Begin, its meta page checked, then the
// bucket of groups opened) costs a lookup about a third of its time. One
// lookup at a time uses it, as bbolt requires of a transaction; a lookup
// that finds it in use begins its own.
//
// Every commit ends it first, and none is begun again until the commit
// is done (hold): a lookup never reads a state older than the last
// commit, and a commit that grows the file's mapping never waits for it.
// A compaction ends it before the old file is closed, Close for good.
type reader struct {
	mu     sync.Mutex // held by the lookup using tx, or by a commit
	tx     *bolt.Tx   // nil: none kept
	groups *bolt.Bucket
	closed bool // the file is closing: none kept again
}

// take returns bucket groups of the kept transaction, begun in db when
// none is kept, and done, which gives it back. When another lookup has
// it, take begins a transaction for this one alone, which done ends.
//
// Reading the file may fault (a truncated file's pages: see safely): a
// fault lets the kept transaction go, or ends the lookup's own.
func (r *reader) take(db *bolt.DB) (groups *bolt.Bucket, done func(), err error) {
	if r.mu.TryLock() {
		kept := false
		defer func() {
			if !kept {
				r.mu.Unlock()
			}
		}()
		if r.tx == nil && !r.closed {
			tx, err := db.Begin(false)
			if err != nil {
				return nil, nil, err
			}
			r.tx = tx // kept at once: a fault below leaves it to close
			r.groups = tx.Bucket(bucketGroups)
		}
		if r.tx != nil {
			kept = true
			return r.groups, r.mu.Unlock, nil
		}
	}
	tx, err := db.Begin(false)
	if err != nil {
		return nil, nil, err
	}
	begun := false
	defer func() {
		if !begun {
			_ = tx.Rollback()
		}
	}()
	groups = tx.Bucket(bucketGroups)
	begun = true
	return groups, func() { _ = tx.Rollback() }, nil
}

// hold ends the kept transaction and keeps none until release is called:
// around a commit.
func (r *reader) hold() (release func()) {
	r.mu.Lock()
	r.close()
	return r.mu.Unlock
}

// end ends the kept transaction: the next lookup begins one afresh.
func (r *reader) end() {
	r.mu.Lock()
	r.close()
	r.mu.Unlock()
}

// shut ends the kept transaction for good: the file is closing.
func (r *reader) shut() {
	r.mu.Lock()
	r.close()
	r.closed = true
	r.mu.Unlock()
}

func (r *reader) close() {
	if r.tx != nil {
		_ = r.tx.Rollback()
		r.tx, r.groups = nil, nil
	}
}
