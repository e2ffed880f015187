package cache

import (
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// purgeChunk bounds the deletions of one purge transaction, so that the
// event writes of the scan path never wait long behind a purge.
const purgeChunk = 5000

// PurgeResult says what Purge deleted.
type PurgeResult struct {
	Certs     int `json:"certs"`
	Passbacks int `json:"passbacks"`
}

// Purge deletes the certificates whose not_after lies more than retention
// before now, and the passages older than passbackWindow (which must be at
// least the verifier's anti-passback window). It deletes in chunks, each
// its own transaction: every chunk leaves a whole cache.
func (c *Cache) Purge(now time.Time, retention, passbackWindow time.Duration) (PurgeResult, error) {
	var res PurgeResult
	if retention < 0 || passbackWindow < 0 {
		return res, fmt.Errorf("cache: purge: negative retention %v or window %v", retention, passbackWindow)
	}
	certCut := now.Add(-retention)
	passCut := now.Add(-passbackWindow).UnixNano()
	var err error
	res.Certs, err = c.purgeBucket(bucketCerts, func(v []byte) bool {
		na, ok := notAfterOf(v)
		return ok && na.Before(certCut)
	})
	if err != nil {
		return res, fmt.Errorf("cache: purge certificates expired before %v: %w", certCut, err)
	}
	res.Passbacks, err = c.purgeBucket(bucketPassback, func(v []byte) bool {
		return len(v) == 8 && int64(binary.BigEndian.Uint64(v)) < passCut
	})
	if err != nil {
		return res, fmt.Errorf("cache: purge passages: %w", err)
	}
	c.passMu.Lock()
	for k, ns := range c.passes {
		if ns < passCut {
			delete(c.passes, k)
		}
	}
	c.passMu.Unlock()
	return res, nil
}

// purgeBucket deletes the keys whose value old reports as due, a chunk at a
// time, resuming each chunk after the last key the previous one looked at.
func (c *Cache) purgeBucket(name []byte, old func(v []byte) bool) (int, error) {
	total := 0
	var resume []byte
	for {
		var done bool
		n := 0
		err := c.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			cur := b.Cursor()
			k, v := cur.First()
			if resume != nil {
				k, v = cur.Seek(resume)
			}
			var due [][]byte
			for ; k != nil && len(due) < purgeChunk; k, v = cur.Next() {
				if old(v) {
					due = append(due, k)
				}
			}
			if k == nil {
				done = true
			} else {
				resume = append(resume[:0], k...)
			}
			for _, k := range due {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n = len(due)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		if done {
			return total, nil
		}
	}
}
