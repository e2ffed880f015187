package cache

import (
	"sync"

	bolt "go.etcd.io/bbolt"
)

// reader is a read transaction of the file kept open from one lookup to
// the next, with a cursor of its bucket of groups. Beginning one (bbolt's
// Begin, its meta page checked, then the bucket of groups opened) costs a
// lookup about a third of its time, and a cursor's first seek allocates
// its stack, which a kept one reuses. One
// lookup at a time uses it, as bbolt requires of a transaction; a lookup
// that finds it in use begins its own.
//
// Every commit ends it first, and none is begun again until the commit
// is done (hold): a lookup never reads a state older than the last
// commit, and a commit that grows the file's mapping never waits for it.
// A compaction ends it before the old file is closed, Close for good.
type reader struct {
	mu     sync.Mutex   // held by the lookup using tx, or by a commit
	tx     *bolt.Tx     // nil: none kept
	groups *bolt.Cursor // of bucket groups; nil when the file has none
	closed bool         // the file is closing: none kept again
	// unlock is mu.Unlock, made once: a method value made in take would
	// be an allocation a lookup.
	unlock func()
}

// take returns the cursor of bucket groups of the kept transaction, begun
// in db when none is kept, and done, which gives it back. When another
// lookup has it, take begins a transaction for this one alone, which done
// ends.
func (r *reader) take(db *bolt.DB) (groups *bolt.Cursor, done func(), err error) {
	if r.mu.TryLock() {
		if r.unlock == nil {
			r.unlock = r.mu.Unlock
		}
		if r.tx == nil && !r.closed {
			if r.tx, r.groups, err = beginGroups(db, r.unlock); err != nil {
				r.mu.Unlock()
				return nil, nil, err
			}
		}
		if r.tx != nil {
			return r.groups, r.unlock, nil
		}
		r.mu.Unlock()
	}
	tx, groups, err := beginGroups(db, nil)
	if err != nil {
		return nil, nil, err
	}
	return groups, func() { _ = tx.Rollback() }, nil
}

// beginGroups begins a read transaction of db and opens a cursor of its
// bucket of groups. Reading the file may fault (a truncated file's pages: see
// safely): a fault rolls the transaction back and calls onFault (which
// lets the kept transaction's lock go) as it passes.
func beginGroups(db *bolt.DB, onFault func()) (tx *bolt.Tx, groups *bolt.Cursor, err error) {
	opened := false
	defer func() {
		if !opened {
			if tx != nil {
				_ = tx.Rollback()
			}
			if onFault != nil {
				onFault()
			}
		}
	}()
	tx, err = db.Begin(false)
	if err == nil {
		groups = groupsCursor(tx)
	}
	opened = true
	return tx, groups, err
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
