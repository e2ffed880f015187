package cache

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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

// Dump returns what the cache holds as its lookups and its feed client
// see it: every certificate's newest entry (the runs, oldest first, then
// the delta), the feed state and the resync under way; to compare a cache
// before and after a change that must not have happened.
func Dump(c *Cache) (map[string]string, error) {
	out := map[string]string{}
	c.mu.RLock()
	runs := c.runs
	var delta []string
	for _, i := range c.idx.each() {
		delta = append(delta, string(c.idx.entry(i)))
	}
	fs := c.fs
	if c.resync != nil {
		r := *c.resync
		fs.Resync = &r
	}
	c.mu.RUnlock()
	fj, _ := json.Marshal(fs)
	out["feed"] = string(fj)
	err := c.db.View(func(tx *bolt.Tx) error {
		for _, r := range runs {
			err := c.scanRun(tx, r.Seq, func(g *group) error {
				e := make([]byte, entryLen)
				for i := range g.n {
					g.entry(i, e)
					out["cert/"+string(e[:16])] = string(e)
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	for _, e := range delta { // newer than any run
		out["cert/"+e[:16]] = e
	}
	return out, err
}

// DB exposes the bbolt handle, for tests that plant bad data.
//
// The lookups' kept read transaction is ended first: a test's commit of
// the file (not Cache's, which ends it itself) would wait for it.
func DB(c *Cache) *bolt.DB {
	c.rd.end()
	return c.db
}

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
	return DB(c).Update(func(tx *bolt.Tx) error {
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

// OpenGroup is openGroup for the fuzz target, under c's sealing: the
// certificates of an accepted group, and whether it was well-formed and
// authentic.
func OpenGroup(c *Cache, k, v []byte) (int, bool, bool) {
	g, outcome := openGroup(c.aead, k, v)
	defer g.release()
	return g.n, outcome != recordShape, outcome == recordOK
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

// CertOffset maps byte at of a certificate's record as schema 3 laid it
// out (flags, times, nonce, sealed key, tag: the fields the tests damage)
// to the byte of the group that holds the same field for certificate i of
// n (group.go), so that a test damages the same field in either; a
// negative at is a byte of the certificate's ID, from its end.
func CertOffset(at, i, n int, noKey bool) int {
	sealed := groupHeadLen + n*clearLen
	x := groupHeadLen + i*clearLen + verify.CertIDLen
	blk := i / blockSize
	tag := sealed + blk*blockBytes + (min(n, (blk+1)*blockSize)-blk*blockSize)*verify.KeyLen
	switch {
	case at <= 0: // the flags, or (negative) a byte of the ID
		return x + at
	case at < 9: // not_before's low 4 bytes are the group's
		return x + 1 + max(0, at-5)
	case at < headLen:
		return x + 5 + max(0, at-13)
	case at < headLen+nonceLen: // the group's nonce
		return min(at-headLen, groupNonceLen-1)
	case !noKey && at < headLen+nonceLen+verify.KeyLen:
		return sealed + blk*blockBytes + i%blockSize*verify.KeyLen + at - headLen - nonceLen
	case noKey:
		return tag + at - headLen - nonceLen
	default:
		return tag + at - headLen - nonceLen - verify.KeyLen
	}
}

// FlipCert XORs byte at of certificate id's record (CertOffset) with x
// in the run that holds it, on the disk.
func FlipCert(c *Cache, id []byte, at int, x byte) error {
	return DB(c).Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGroups)
		cur := b.Cursor()
		for k, v := cur.First(); k != nil; k, v = cur.Next() {
			n := int(v[groupNonceLen])
			for i := range n {
				e := v[groupHeadLen+i*clearLen:]
				if bytes.Equal(e[:verify.CertIDLen], id) {
					v = bytes.Clone(v)
					v[CertOffset(at, i, n, e[verify.CertIDLen]&flagNoKey != 0)] ^= x
					return b.Put(bytes.Clone(k), v)
				}
			}
		}
		return fmt.Errorf("certificate %x is in no run", id)
	})
}

// SetDeltaFS puts the deltas of the caches opened until the test ends on
// fsys (a model of a power cut).
func SetDeltaFS(t testing.TB, fsys seglog.FS) {
	old := deltaFS
	deltaFS = fsys
	t.Cleanup(func() { deltaFS = old })
}

// SetCommitHook calls fn before each write transaction of a cache until
// the test ends; an error from fn stops the transaction.
func SetCommitHook(t testing.TB, fn func() error) {
	commitHook = fn
	t.Cleanup(func() { commitHook = nil })
}

// WriteSchema3 writes a certificate cache as the builds before runs did
// (schema 3): a record per certificate under its ID in bucket certs, each
// key sealed on its own, the feed state at cursor; forged names a
// certificate whose record is written with a wrong tag.
func WriteSchema3(path string, k *Key, certs []verify.Cert, cursor uint64, forged *verify.CertID) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	c := &Cache{key: k}
	c.path.Store(&path)
	return db.Update(func(tx *bolt.Tx) error {
		if err := createFile(tx, kindCache, 3, k, bucketCerts); err != nil {
			return err
		}
		salt := bytes.Repeat([]byte{7}, saltLen)
		if err := tx.Bucket(bucketMeta).Put(keySalt, salt); err != nil {
			return err
		}
		aead, err := k.sealer(salt)
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketCerts)
		for i := range certs {
			v := make([]byte, recordLen)
			nonce := binary.BigEndian.AppendUint64(make([]byte, nonceLen-8), uint64(i))
			sealRecord(aead, v, &certs[i], 0, nonce)
			if forged != nil && certs[i].ID == *forged {
				v[len(v)-1] ^= 1
			}
			if err := b.Put(certs[i].ID[:], v); err != nil {
				return err
			}
		}
		return c.writeFeed(tx, &FeedState{Cursor: cursor, Epoch: 1})
	})
}
