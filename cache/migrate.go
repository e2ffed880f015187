package cache

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// Moved says what MoveLegacyJournal moved.
type Moved struct {
	Events    int
	Passbacks int
}

// MoveLegacyJournal copies the event log and the anti-passback state out
// of a cache of schema 1, where they used to live, into the journal, each
// event and passage given its MAC under the journal's key. It reads the
// old file without writing to it and does nothing for a cache of schema
// 2. The old file is not otherwise read: its certificates are plaintext
// and unauthenticated, so the cache is rebuilt from the feed (see
// Options.Replaces) and the old file removed once the new one holds a
// full sync.
//
// It is one transaction into the journal and safe to repeat: an event the
// journal has, or the issuer acknowledged, is not copied again, nor a
// passage older than the one the journal knows. So the copy that a
// restart repeats (the old file is still there until the rebuild ends)
// changes nothing.
func MoveLegacyJournal(path string, j *Journal) (Moved, error) {
	var mv Moved
	db, _, err := openDB(path, Options{ReadOnly: true}, "")
	if err != nil {
		return mv, fmt.Errorf("cache: move events to the journal: %w", err)
	}
	defer db.Close()
	in := newMergeIn()
	err = safely(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			schema, err := fileSchema(tx, path, kindCache)
			if err != nil || schema != 1 {
				return err
			}
			return readEventBuckets(tx, path, j.key, &in)
		})
	})
	if err != nil {
		return mv, fmt.Errorf("cache: move events to the journal: %w", err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if mv.Events, mv.Passbacks, err = j.merge(in, true); err != nil {
		return Moved{}, fmt.Errorf("cache: move events to the journal: %w", err)
	}
	return mv, nil
}

// LegacySchema reports the schema of the cache file at path when it is one
// of the plaintext schemas (1 or 2), reading it without writing; 0 for a
// file of this build's schema or none. The agent uses it to name what it
// is replacing.
func LegacySchema(path string) (int, error) {
	db, _, err := openDB(path, Options{ReadOnly: true}, "")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var schema int
	err = safely(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			var err error
			schema, err = fileSchema(tx, path, kindCache)
			return err
		})
	})
	if err != nil && !errors.Is(err, ErrSchema) {
		return 0, err
	}
	if schema >= SchemaVersion {
		return 0, nil
	}
	return schema, err
}

// migrate3 moves the certificates of a schema 3 cache (a record per
// certificate under its ID in bucket certs, each sealed on its own) into
// the first run of schema 4, in one transaction: the file is of one
// schema or the other whatever instant power fails. A record that fails
// authentication stops it (*CorruptError, Unauthentic): the agent then
// rebuilds the cache from the feed, as for any cache it cannot trust. A
// full sync under way is dropped (the feed's client starts it again).
// About a second for a million certificates, once.
func (c *Cache) migrate3() error {
	err := c.update(func(tx *bolt.Tx) error {
		certs := tx.Bucket(bucketCerts)
		groups, err := tx.CreateBucket(bucketGroups)
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket(bucketBlooms); err != nil {
			return err
		}
		st := newStore()
		n := certs.Stats().KeyN
		w := &groupWriter{c: c, seq: st.Next, desc: &run{runMeta: runMeta{Seq: st.Next}, bloom: newBloom(n)}}
		e := make([]byte, entryLen)
		defer clear(e)
		err = certs.ForEach(func(k, v []byte) error {
			var cert verify.Cert
			flags, outcome := openRecord(c.aead, k, v, &cert)
			switch outcome {
			case recordShape:
				return damaged(c.Path(), 0, "record of cert %x: %d bytes", k, len(v))
			case recordForged:
				return &CorruptError{Path: c.Path(), Kind: Unauthentic, Detail: fmt.Sprintf("certificate %x fails authentication under the cache key", k), Problems: 1}
			}
			cert.ID = verify.CertID(k)
			encodeEntry(e, &cert, flags&flagNoKey)
			w.add(e)
			return nil
		})
		if err != nil {
			return err
		}
		w.flush()
		if err := w.put(groups); err != nil {
			return err
		}
		fs, err := c.readFeed(tx)
		if err != nil {
			return err
		}
		if w.groups > 0 {
			r := w.desc
			r.Written = fs.SyncedAt
			if err := c.putBloom(tx, r); err != nil {
				return err
			}
			st.Runs = []runMeta{r.runMeta}
			st.Next++
		}
		if err := c.writeRuns(tx, &st); err != nil {
			return err
		}
		fs.Resync = nil
		if err := c.writeFeed(tx, &fs); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketCerts); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion))
	})
	if err != nil {
		return fmt.Errorf("move the certificates of schema 3 into a run: %w", err)
	}
	return nil
}
