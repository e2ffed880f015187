package cache

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// purgeChunk bounds the deletions of one purge transaction, so that the
// event writes of the scan path never wait long behind a purge.
const purgeChunk = 5000

// PurgeResult says what a purge deleted.
type PurgeResult struct {
	Certs     int `json:"certs"`
	Passbacks int `json:"passbacks"`
}

// Purge deletes the certificates whose not_after lies more than retention
// before now. It deletes in chunks, each its own transaction: every chunk
// leaves a whole cache.
func (c *Cache) Purge(now time.Time, retention time.Duration) (int, error) {
	if retention < 0 {
		return 0, fmt.Errorf("cache: purge: negative retention %v", retention)
	}
	cut := now.Add(-retention)
	n, err := purgeBucket(c.update, bucketCerts, func(k, v []byte) bool {
		na, ok := notAfterOf(v)
		if !ok || !na.Before(cut) {
			return false
		}
		// Deleted only on an authentic expiry: a revocation must not go
		// early because a byte of its date changed.
		var cert verify.Cert
		_, outcome := openRecord(c.aead, k, v, &cert)
		return outcome == recordOK
	})
	if err != nil {
		return n, fmt.Errorf("cache: purge certificates expired before %v: %w", cut, err)
	}
	return n, nil
}

// purgeBucket deletes the keys whose value old reports as due, a chunk at a
// time, resuming each chunk after the last key the previous one looked at.
func purgeBucket(update func(func(*bolt.Tx) error) error, name []byte, old func(k, v []byte) bool) (int, error) {
	total := 0
	var resume []byte
	for {
		var done bool
		n := 0
		err := update(func(tx *bolt.Tx) error {
			b := tx.Bucket(name)
			cur := b.Cursor()
			k, v := cur.First()
			if resume != nil {
				k, v = cur.Seek(resume)
			}
			var due [][]byte
			for ; k != nil && len(due) < purgeChunk; k, v = cur.Next() {
				if old(k, v) {
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
