package cache

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Live counts the certificates not yet expired at now (revocations
// included: the gate must keep them): what the certificate file is judged
// against, as live raw records (package wear). It reads only each record's
// expiry, in one read transaction over every record: about as costly as
// Stats, so a status call, not one for the scan path.
func (c *Cache) Live(now time.Time) (int, error) {
	n := 0
	err := c.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCerts).ForEach(func(_, v []byte) error {
			if na, ok := notAfterOf(v); ok && !na.Before(now) {
				n++
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("cache: live: %w", err)
	}
	return n, nil
}
