package cache

import (
	"errors"
	"fmt"
	"time"

	"gateagent/verify"
)

// Store is the gate's two files as the verifier sees them, and as status
// pages count them: certificates from the cache, the last passages from
// the journal (read from memory: the scan path costs what it did when one
// file held both).
type Store struct {
	Cache *Cache
	// Journal may be nil (diag without one): no passage is then known.
	Journal *Journal
}

// Lookup implements verify.Store. Until the cache has completed a sync it
// refuses with ErrNotSynced: a gate whose keys are being rebuilt cannot
// tell an unknown certificate from one not yet loaded, so it decides
// nothing and stays shut.
func (s *Store) Lookup(id verify.CertID, dir verify.Direction) (verify.Record, bool, error) {
	if !s.Cache.Synced() {
		return verify.Record{}, false, fmt.Errorf("cache: lookup %s: %w", id, ErrNotSynced)
	}
	r, ok, err := s.Cache.Lookup(id, dir)
	if ok && s.Journal != nil {
		var perr error
		if r.LastPass, _, perr = s.Journal.LastPass(&id, dir); perr != nil {
			return verify.Record{}, false, fmt.Errorf("journal: lookup %s: %w", id, perr)
		}
	}
	return r, ok, err
}

// Stats counts what both files hold: the cache's certificates, size and
// feed state, the journal's passages and events.
func (s *Store) Stats() (Stats, error) {
	st, err := s.Cache.Stats()
	if err != nil || s.Journal == nil {
		return st, err
	}
	b, err := s.Journal.Backlog()
	if err != nil {
		return st, err
	}
	st.Events, st.LastSeq, st.OldestAt = b.Events, b.LastSeq, b.Oldest
	st.Passbacks = s.Journal.Passbacks()
	return st, nil
}

// Check checks both files whole; the errors of both, joined.
func (s *Store) Check() error {
	err := s.Cache.Check()
	if s.Journal != nil {
		err = errors.Join(err, s.Journal.Check())
	}
	return err
}

// Purge deletes the certificates expired more than retention before now,
// and the passages older than passbackWindow.
func (s *Store) Purge(now time.Time, retention, passbackWindow time.Duration) (PurgeResult, error) {
	var res PurgeResult
	var err error
	if res.Certs, err = s.Cache.Purge(now, retention); err != nil {
		return res, err
	}
	if s.Journal != nil {
		res.Passbacks, err = s.Journal.PurgePassages(now, passbackWindow)
	}
	return res, err
}
