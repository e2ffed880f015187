package cache

import (
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/event"
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

// WriteSchema1 writes a cache file as builds before the journal wrote
// them (schema 1): certificates, feed state, and the passback and events
// buckets, the events under their sequence numbers and the bucket's
// sequence at lastSeq.
func WriteSchema1(path string, certs []verify.Cert, events []event.Event, lastSeq uint64, passes map[[17]byte]int64) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		var v [4]byte
		v[3] = 1
		meta.Put(keySchema, v[:])
		if err := writeFeed(tx, &FeedState{Cursor: uint64(len(certs)), MaxAge: time.Hour}); err != nil {
			return err
		}
		cb, _ := tx.CreateBucket(bucketCerts)
		for i := range certs {
			var r [recordLen]byte
			putRecord(&r, &certs[i], 0)
			if err := cb.Put(certs[i].ID[:], r[:]); err != nil {
				return err
			}
		}
		pb, _ := tx.CreateBucket(bucketPassback)
		for k, ns := range passes {
			if err := pb.Put(k[:], u64(uint64(ns))); err != nil {
				return err
			}
		}
		eb, _ := tx.CreateBucket(bucketEvents)
		for _, e := range events {
			if err := eb.Put(u64(e.Seq), encodeEvent(&e)); err != nil {
				return err
			}
		}
		return eb.SetSequence(lastSeq)
	})
}

// AppendEventShared appends e to an events bucket in the certificate
// cache's own file, as schema 1 kept them: the benchmarks' comparison of
// one shared file with the journal apart.
func AppendEventShared(c *Cache, e event.Event) error {
	return c.db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketEvents); err != nil {
			return err
		}
		return appendEvent(tx, &e)
	})
}
