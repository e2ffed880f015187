package cache

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
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
