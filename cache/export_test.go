package cache

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"gateagent/event"
	"gateagent/internal/seglog"
	"gateagent/verify"
)

// HoldChecks makes the check of the certificates that Open starts wait
// until release is called (or the test ends).
func HoldChecks(t interface{ Cleanup(func()) }) (release func()) {
	hold := make(chan struct{})
	holdChecks.Store(&hold)
	var once sync.Once
	release = func() {
		once.Do(func() {
			holdChecks.Store(nil)
			close(hold)
		})
	}
	t.Cleanup(release)
	return release
}

// SetFailAfter makes Apply fail after n writes inside its transaction.
func SetFailAfter(c *Cache, n int) { c.failAfter = n }

// Record lengths, for the tests that damage records field by field.
const (
	RecordLen  = recordLen
	NoKeyLen   = noKeyLen
	HeadLen    = headLen
	NonceLen   = nonceLen
	TagLen     = tagLen
	PassLen    = passLen
	FlagRevoke = flagRevoke
	FlagNoKey  = flagNoKey
)

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

// FlipJournalMemory changes byte at of what the open journal holds in
// memory under key in bucket, as cachetest.DamageJournalRecord changes it
// on the disk (which the journal reads at its next open): "events", the
// event sealed (key its sequence number); "passback", the passage (which
// then fails authentication).
func FlipJournalMemory(j *Journal, bucket string, key []byte, at int, x byte) {
	j.mu.Lock()
	defer j.mu.Unlock()
	switch bucket {
	case "events":
		for i, ev := range j.st.events {
			if bytes.Equal(u64(ev.seq), key) {
				s := bytes.Clone(ev.sealed)
				s[at] ^= x
				j.st.events[i].sealed = s
			}
		}
	case "passback":
		j.passMu.Lock()
		if p, ok := j.passes[[passKeyLen]byte(key)]; ok {
			p.bad = true
			j.passes[[passKeyLen]byte(key)] = p
		}
		j.passMu.Unlock()
	}
}

// WriteSchema1 writes a cache file as builds before the journal wrote
// them (schema 1): certificates in plaintext, feed state, and the passback
// and events buckets (events of version 1, without MAC) under their
// sequence numbers and the bucket's sequence at lastSeq.
func WriteSchema1(path string, certs []verify.Cert, events []event.Event, lastSeq uint64, passes map[[17]byte]int64) error {
	return writeV1(path, func(tx *bolt.Tx, meta *bolt.Bucket) error {
		meta.Put(keyFeed, fmt.Appendf(nil, `{"cursor":%d,"max_age":3600000000000}`, len(certs)))
		cb, _ := tx.CreateBucket(bucketCerts)
		for i := range certs {
			if err := cb.Put(certs[i].ID[:], legacyRecord(&certs[i])); err != nil {
				return err
			}
		}
		return putJournalV1(tx, events, lastSeq, passes)
	})
}

func legacyRecord(c *verify.Cert) []byte {
	v := make([]byte, recordLenV2)
	if c.Revoked {
		v[0] = flagRevoke
	}
	binary.BigEndian.PutUint64(v[1:], uint64(c.NotBefore.Unix()))
	binary.BigEndian.PutUint64(v[9:], uint64(c.NotAfter.Unix()))
	copy(v[17:], c.Key[:])
	return v
}

// writeV1 creates a file of schema 1 at path, its meta bucket saying so,
// and lets fill write the rest in the same transaction.
func writeV1(path string, fill func(tx *bolt.Tx, meta *bolt.Bucket) error) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Update(func(tx *bolt.Tx) error {
		meta, _ := tx.CreateBucket(bucketMeta)
		meta.Put(keySchema, []byte{0, 0, 0, 1})
		return fill(tx, meta)
	})
}

// putJournalV1 writes the passback and events buckets as schema 1 kept
// them: passages and events (of version 1) without MAC, the bucket's
// sequence at lastSeq.
func putJournalV1(tx *bolt.Tx, events []event.Event, lastSeq uint64, passes map[[17]byte]int64) error {
	pb, _ := tx.CreateBucket(bucketPassback)
	for k, ns := range passes {
		if err := pb.Put(k[:], u64(uint64(ns))); err != nil {
			return err
		}
	}
	eb, _ := tx.CreateBucket(bucketEvents)
	for _, e := range events {
		if err := eb.Put(u64(e.Seq), EncodeEventV1(&e)); err != nil {
			return err
		}
	}
	return eb.SetSequence(lastSeq)
}

// EncodeEventV1 is an event as journals of schema 1 stored it: no MAC.
func EncodeEventV1(e *event.Event) []byte {
	b := []byte{eventVersionV1, byte(e.Kind), byte(e.Reason), byte(e.Direction)}
	b = binary.BigEndian.AppendUint64(b, uint64(e.Time.UnixNano()))
	b = append(b, e.CertID[:]...)
	b = binary.AppendVarint(b, e.StepOffset)
	b = binary.AppendUvarint(b, uint64(len(e.Detail)))
	return append(b, e.Detail...)
}

// WriteJournalV1 writes a journal as builds before MACs wrote it (schema
// 1): events of version 1 and passages without MAC.
func WriteJournalV1(path string, events []event.Event, lastSeq uint64, passes map[[17]byte]int64) error {
	return writeV1(path, func(tx *bolt.Tx, meta *bolt.Bucket) error {
		meta.Put(keyKind, []byte(kindJournal))
		return putJournalV1(tx, events, lastSeq, passes)
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
		b := tx.Bucket(bucketEvents)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		b.FillPercent = 1.0
		return b.Put(u64(seq), encodeEvent(c.key, seq, &e))
	})
}

// OpenRecord is openRecord for the fuzz target, under c's sealing.
func OpenRecord(c *Cache, id, v []byte) (verify.Cert, bool, bool) {
	var cert verify.Cert
	_, outcome := openRecord(c.aead, id, v, &cert)
	return cert, outcome != recordShape, outcome == recordOK
}

// SetJournalFS puts the journals' segments opened until the test ends on
// fsys (a model of a power cut).
func SetJournalFS(t testing.TB, fsys seglog.FS) {
	old := journalFS
	journalFS = fsys
	t.Cleanup(func() { journalFS = old })
}
