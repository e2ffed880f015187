// Package memstore is an in-memory verify.Store, for tests and tools that
// check tokens without a cache file.
package memstore

import (
	"sync"
	"time"

	"gateagent/verify"
)

type passKey struct {
	id  verify.CertID
	dir verify.Direction
}

// sighting is what another gate of the station knows of a certificate.
type sighting struct {
	gate string
	at   time.Time
	held bool
}

// Store holds certificates and passages in memory. The zero Store is empty
// and ready to use; it is safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	certs  map[verify.CertID]verify.Cert
	passes map[passKey]time.Time
	seen   map[passKey]sighting
}

// New returns a store holding certs.
func New(certs ...verify.Cert) *Store {
	s := &Store{}
	for _, c := range certs {
		s.Put(c)
	}
	return s
}

// Put adds or replaces a certificate.
func (s *Store) Put(c verify.Cert) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.certs == nil {
		s.certs = make(map[verify.CertID]verify.Cert)
	}
	s.certs[c.ID] = c
}

// Revoke marks a known certificate revoked and reports whether it was known.
func (s *Store) Revoke(id verify.CertID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.certs[id]
	if ok {
		c.Revoked = true
		s.certs[id] = c
	}
	return ok
}

// RecordPass notes that id passed in direction dir at t.
func (s *Store) RecordPass(id verify.CertID, dir verify.Direction, t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.passes == nil {
		s.passes = make(map[passKey]time.Time)
	}
	s.passes[passKey{id, dir}] = t
}

// Sight notes what another gate of the station knows of id in direction
// dir: held there since at (held), or passed there at at.
func (s *Store) Sight(id verify.CertID, dir verify.Direction, gate string, at time.Time, held bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = make(map[passKey]sighting)
	}
	s.seen[passKey{id, dir}] = sighting{gate, at, held}
}

// Lookup implements verify.Store.
func (s *Store) Lookup(id verify.CertID, dir verify.Direction) (verify.Record, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.certs[id]
	if !ok {
		return verify.Record{}, false, nil
	}
	r := verify.Record{Cert: c, LastPass: s.passes[passKey{id, dir}]}
	if sg, ok := s.seen[passKey{id, dir}]; ok {
		r = r.Sighted(sg.gate, sg.at, sg.held)
	}
	return r, true, nil
}
