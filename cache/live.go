package cache

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// Live counts the certificates not yet expired at now (revocations
// included: the gate must keep them): what the certificate files are
// judged against, as live raw records (package wear). A status call, not
// one for the scan path: it reads the clear part of every group of every
// run (no key is opened) and the delta's index.
func (c *Cache) Live(now time.Time) (int, error) {
	n, err := c.count(now.Unix())
	if err != nil {
		return 0, fmt.Errorf("cache: live: %w", err)
	}
	return n, nil
}

// count counts the certificates the cache holds, each once (the newest
// record of an ID shadows its older ones in older runs), whose expiry is
// at or after notBefore (Unix seconds; the lowest int64 counts all).
func (c *Cache) count(notBefore int64) (int, error) {
	c.mu.RLock()
	runs := c.runs
	n := 0
	inDelta := make(map[verify.CertID]bool, c.idx.len())
	for _, i := range c.idx.each() {
		e := c.idx.entry(i)
		inDelta[verify.CertID(e)] = true
		if entryNotAfter(e) >= notBefore {
			n++
		}
	}
	c.mu.RUnlock()
	err := c.view(func(tx *bolt.Tx) error {
		var e [entryLen]byte
		defer clear(e[:])
		groups := groupsCursor(tx)
		for ri, r := range runs {
			newer := runs[ri+1:]
			err := c.eachGroup(tx, r.Seq, func(g *group) error {
				for i := range g.n {
					id := g.id(i)
					if clearNotAfter(g.clear[i*clearLen:]) < notBefore || inDelta[verify.CertID(id)] {
						continue
					}
					shadowed := false
					for _, o := range newer {
						if o.bloom.has(id) {
							if found, err := c.lookupRun(groups, o, id, e[:]); err == nil && found {
								shadowed = true
								break
							}
						}
					}
					if !shadowed {
						n++
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}
