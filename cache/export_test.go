package cache

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// SetFailAfter makes Apply fail after n writes inside its transaction.
func SetFailAfter(c *Cache, n int) { c.failAfter = n }

// EncodeRecord returns the stored form of a certificate, for the raw floor.
func EncodeRecord(c *verify.Cert) []byte {
	var v [recordLen]byte
	putRecord(&v, c, 0)
	return v[:]
}

// Dump returns every bucket's keys and values, to compare a file before and
// after a change that must not have happened.
func Dump(c *Cache) (map[string]string, error) {
	out := map[string]string{}
	err := c.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			out[string(name)+"/seq"] = fmt.Sprint(b.Sequence())
			return b.ForEach(func(k, v []byte) error {
				out[string(name)+"/"+string(k)] = string(v)
				return nil
			})
		})
	})
	return out, err
}

// DB exposes the bbolt handle, for tests that plant bad data.
func DB(c *Cache) *bolt.DB { return c.db }
