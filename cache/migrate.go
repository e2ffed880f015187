package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Moved says what MoveToJournal moved.
type Moved struct {
	Events    int
	Passbacks int
}

// MoveToJournal moves the event log and the anti-passback state out of a
// cache of schema 1, where they used to live, into the journal, and makes
// the cache schema 2. It does nothing to a cache of schema 2.
//
// It is two transactions, one per file, and safe to cut at any instant:
// first every event is copied into the journal under its own sequence
// number (unless the journal has it, or the issuer acknowledged it) and
// the journal's sequence is raised to the cache's, so numbers are never
// reused; then the cache's two buckets are deleted and its schema raised.
// A cut between the two repeats the copy at the next start, which finds
// every event already there.
func MoveToJournal(c *Cache, j *Journal) (Moved, error) {
	var mv Moved
	if c.schema != 1 {
		return mv, nil
	}
	type kv struct{ k, v []byte }
	var events, passes []kv
	var seq uint64
	err := c.view(func(tx *bolt.Tx) error {
		ev := tx.Bucket(bucketEvents)
		seq = ev.Sequence()
		if err := ev.ForEach(func(k, v []byte) error {
			if err := checkEventRecord(k, v); err != nil {
				return damaged(c.path, 0, "%v", err)
			}
			events = append(events, kv{bytes.Clone(k), bytes.Clone(v)})
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketPassback).ForEach(func(k, v []byte) error {
			if checkPassRecord(k, v) == nil {
				passes = append(passes, kv{bytes.Clone(k), bytes.Clone(v)})
			}
			return nil
		})
	})
	if err != nil {
		return mv, fmt.Errorf("cache: move events to the journal: %w", err)
	}
	newer := map[[passKeyLen]byte]int64{}
	err = j.update(func(tx *bolt.Tx) error {
		acked := uint64(0)
		if v := tx.Bucket(bucketMeta).Get(keyAcked); len(v) == 8 {
			acked = binary.BigEndian.Uint64(v)
		}
		b := tx.Bucket(bucketEvents)
		b.FillPercent = 1.0
		for _, e := range events {
			if binary.BigEndian.Uint64(e.k) <= acked || b.Get(e.k) != nil {
				continue
			}
			if err := b.Put(e.k, e.v); err != nil {
				return err
			}
			mv.Events++
		}
		if seq > b.Sequence() {
			if err := b.SetSequence(seq); err != nil {
				return err
			}
		}
		pb := tx.Bucket(bucketPassback)
		for _, p := range passes {
			ns := int64(binary.BigEndian.Uint64(p.v))
			if old := pb.Get(p.k); len(old) == 8 && int64(binary.BigEndian.Uint64(old)) >= ns {
				continue
			}
			if err := pb.Put(p.k, p.v); err != nil {
				return err
			}
			newer[[passKeyLen]byte(p.k)] = ns
			mv.Passbacks++
		}
		return nil
	})
	if err != nil {
		return mv, fmt.Errorf("cache: move events to the journal: %w", err)
	}
	j.passMu.Lock()
	for k, ns := range newer {
		j.passes[k] = ns
	}
	j.passMu.Unlock()
	err = c.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketEvents, bucketPassback} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		var v [4]byte
		binary.BigEndian.PutUint32(v[:], SchemaVersion)
		if err := tx.Bucket(bucketMeta).Put(keySchema, v[:]); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keyKind, []byte(kindCache))
	})
	if err != nil {
		return mv, fmt.Errorf("cache: move events to the journal: %w", err)
	}
	c.schema = SchemaVersion
	return mv, nil
}
