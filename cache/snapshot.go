package cache

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// SnapshotPage is one page of a full sync: certificates in ascending ID
// order, as of the feed position Snapshot of feed Epoch, after the ID After.
// The pages of one snapshot are applied in order; the last one (Final)
// moves the cursor to Snapshot, from where the log takes over.
type SnapshotPage struct {
	Epoch, Snapshot uint64
	After           verify.CertID
	Final           bool
	// Upserts in ascending ID order, all after After; revoked ones carry
	// Revoked.
	Upserts []verify.Cert
	// Feed is stored with the cursor when the page is final.
	Feed FeedState
	// Sealed, when set, is Upserts sealed ahead (Cache.Seal).
	Sealed *Sealed
}

// ApplySnapshot writes one page of a full sync and the sync's progress in
// one transaction. The cache keeps serving lookups from what it holds while
// a resync runs: certificates converge and revocations are final, so laying
// a snapshot over older records never undoes anything.
//
// A page must continue the resync recorded in the cache (same epoch and
// snapshot, After equal to the last ID applied) or start one (After zero);
// anything else is ErrGap and writes nothing.
func (c *Cache) ApplySnapshot(p *SnapshotPage) (ApplyResult, error) {
	res := ApplyResult{}
	fail := func(err error) (ApplyResult, error) {
		return ApplyResult{}, fmt.Errorf("cache: apply snapshot %d page after %s: %w", p.Snapshot, p.After, err)
	}
	if len(p.Upserts) > MaxBatchRecords {
		return fail(fmt.Errorf("%w: %d records, at most %d in one batch", ErrBadBatch, len(p.Upserts), MaxBatchRecords))
	}
	if !ascending(p.Upserts) || len(p.Upserts) > 0 && p.After != (verify.CertID{}) && !less(p.After, p.Upserts[0].ID) {
		return fail(fmt.Errorf("%w: certificates not in ascending ID order after %s", ErrBadBatch, p.After))
	}
	if err := validateCerts(p.Upserts); err != nil {
		return fail(err)
	}
	err := c.update(func(tx *bolt.Tx) error {
		fs, err := c.readFeed(tx)
		if errors.Is(err, ErrAuth) && p.After == (verify.CertID{}) {
			// A full sync starts over and writes the state anew: the
			// one that fails authentication is not needed.
			fs, err = FeedState{}, nil
		}
		if err != nil {
			return err
		}
		r := fs.Resync
		switch {
		case p.After == (verify.CertID{}):
			r = &Resync{Epoch: p.Epoch, Snapshot: p.Snapshot}
		case r == nil || r.Epoch != p.Epoch || r.Snapshot != p.Snapshot || r.After != p.After:
			return fmt.Errorf("%w: page does not continue the resync under way (%+v)", ErrGap, r)
		}
		certs := tx.Bucket(bucketCerts)
		if err := c.upsert(certs, p.Upserts, p.Sealed, certs.Put, &res); err != nil {
			return err
		}
		res.Upserted = len(p.Upserts)
		r.Certs += len(p.Upserts)
		if n := len(p.Upserts); n > 0 {
			r.After = p.Upserts[n-1].ID
		}
		if p.Final {
			fs = p.Feed
			fs.Cursor, fs.Epoch, fs.Resync = p.Snapshot, p.Epoch, nil
			tx.OnCommit(func() { c.synced.Store(true) })
		} else {
			fs.Resync = r
		}
		res.Cursor = fs.Cursor
		return c.writeFeed(tx, &fs)
	})
	if err != nil {
		return fail(err)
	}
	if p.Final {
		// A rebuilt cache now holds a full sync: it replaces the old one.
		if err := c.finishRebuild(); err != nil {
			return res, err
		}
	}
	return res, nil
}

func less(a, b verify.CertID) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
