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

// Store holds certificates and passages in memory. The zero Store is empty
// and ready to use; it is safe for concurrent use.
type Store struct {
	mu     sync.RWMutex
	certs  map[verify.CertID]verify.Cert
	passes map[passKey]time.Time
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

// Lookup implements verify.Store.
func (s *Store) Lookup(id verify.CertID, dir verify.Direction) (verify.Record, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.certs[id]
	if !ok {
		return verify.Record{}, false, nil
	}
	return verify.Record{Cert: c, LastPass: s.passes[passKey{id, dir}]}, true, nil
}
