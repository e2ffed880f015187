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
		cur := tx.Bucket(bucketGroups).Cursor()
		var e [entryLen]byte
		for ri, r := range runs {
			newer := runs[ri+1:]
			for k, v := cur.Seek(u64key(r.Seq)); k != nil && len(k) == groupKeyLen && be64(k) == r.Seq; k, v = cur.Next() {
				if !groupShape(k, v) {
					return damaged(c.Path(), 0, "run %d: group %x", r.Seq, k[8:])
				}
				cl := v[groupHeadLen:]
				for i := range int(v[groupNonceLen]) {
					x := cl[i*clearLen:]
					if clearNotAfter(x) < notBefore {
						continue
					}
					id := x[:verify.CertIDLen]
					if inDelta[verify.CertID(id)] {
						continue
					}
					shadowed := false
					for _, o := range newer {
						if o.bloom.has(id) {
							if found, err := c.lookupRun(tx, o, id, e[:]); err == nil && found {
								shadowed = true
								break
							}
						}
					}
					if !shadowed {
						n++
					}
				}
				// cur was moved by no lookup: lookupRun uses a cursor
				// of its own.
			}
		}
		clear(e[:])
		return nil
	})
	return n, err
}
