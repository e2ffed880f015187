package cache

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/verify"
)

// Limits on one batch, so that a hostile feed cannot make one transaction
// unbounded.
const (
	MaxBatchRecords = 100_000
	// MaxValidity is the longest validity the spec allows a certificate.
	MaxValidity = 24 * time.Hour
	maxKeyIDLen = 64
)

// Batch is one feed batch, already authenticated by the feed client.
type Batch struct {
	// From is the cursor the batch follows and Next the one it leaves the
	// cache at: it holds the feed's changes in (From, Next].
	From, Next uint64
	// Upserts add certificates. A revoked certificate stays revoked
	// whatever an upsert says.
	Upserts []verify.Cert
	// Revokes revoke certificates, known or not yet known.
	Revokes []verify.CertID
	// Feed is stored with the cursor; its Cursor field is ignored.
	Feed FeedState
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	// Skipped is true when the cache was already at or past Next: the
	// batch was applied before and nothing was written.
	Skipped  bool
	Upserted int
	Revoked  int
	Cursor   uint64
}

// validate checks everything that can be checked before the transaction,
// so that a refused batch writes nothing.
func (b *Batch) validate() error {
	n := len(b.Upserts) + len(b.Revokes)
	switch {
	case b.Next < b.From:
		return fmt.Errorf("%w: cursor goes back from %d to %d", ErrBadBatch, b.From, b.Next)
	case n > 0 && b.Next == b.From:
		return fmt.Errorf("%w: %d records but the cursor stays at %d", ErrBadBatch, n, b.From)
	case n > MaxBatchRecords:
		return fmt.Errorf("%w: %d records, at most %d in one batch", ErrBadBatch, n, MaxBatchRecords)
	case len(b.Feed.KeyID) > maxKeyIDLen:
		return fmt.Errorf("%w: key ID of %d bytes, at most %d", ErrBadBatch, len(b.Feed.KeyID), maxKeyIDLen)
	case b.Feed.MaxAge < 0:
		return fmt.Errorf("%w: negative max age %v", ErrBadBatch, b.Feed.MaxAge)
	}
	return validateCerts(b.Upserts)
}

func validateCerts(ups []verify.Cert) error {
	for i := range ups {
		c := &ups[i]
		switch {
		case c.Key == (verify.Key{}):
			return fmt.Errorf("%w: upsert %d (cert %s): all-zero key", ErrBadBatch, i, c.ID)
		case c.NotBefore.Unix() <= 0:
			return fmt.Errorf("%w: upsert %d (cert %s): not_before %v is not a real approval time", ErrBadBatch, i, c.ID, c.NotBefore)
		case !c.NotAfter.After(c.NotBefore):
			return fmt.Errorf("%w: upsert %d (cert %s): not_after %v is not after not_before %v", ErrBadBatch, i, c.ID, c.NotAfter, c.NotBefore)
		case c.NotAfter.Sub(c.NotBefore) > MaxValidity:
			return fmt.Errorf("%w: upsert %d (cert %s): valid for %v, the spec allows %v: the issuer is misconfigured",
				ErrBadBatch, i, c.ID, c.NotAfter.Sub(c.NotBefore), MaxValidity)
		}
	}
	return nil
}

// Apply writes a feed batch and its cursor in one transaction: all of it or
// none. A batch the cache already holds (Next at or before the cursor) is
// skipped without a write, so applying the same batch twice changes
// nothing; a batch that starts after the cursor is refused with ErrGap.
//
// A batch whose certificates come in ascending ID order and all sort after
// the last one stored (a full sync, which the feed serves in ID order) is
// appended with full pages: the file stays near the size of its records.
func (c *Cache) Apply(b *Batch) (ApplyResult, error) {
	res := ApplyResult{}
	if err := b.validate(); err != nil {
		return res, fmt.Errorf("cache: apply batch (%d, %d]: %w", b.From, b.Next, err)
	}
	err := c.update(func(tx *bolt.Tx) error {
		fs, err := readFeed(tx, c.path)
		if err != nil {
			return err
		}
		res.Cursor = fs.Cursor
		if b.Next <= fs.Cursor { // validate: records imply Next > From >= 0
			res.Skipped = true
			return nil
		}
		if b.From > fs.Cursor {
			return fmt.Errorf("%w: batch follows cursor %d, cache is at %d", ErrGap, b.From, fs.Cursor)
		}
		if b.Feed.Epoch != fs.Epoch {
			return fmt.Errorf("%w: batch of feed epoch %x, cache holds epoch %x", ErrGap, b.Feed.Epoch, fs.Epoch)
		}
		certs := tx.Bucket(bucketCerts)
		writes := 0
		put := func(k, v []byte) error {
			if c.failAfter > 0 && writes >= c.failAfter {
				return errInjected
			}
			writes++
			return certs.Put(k, v)
		}
		if err := upsert(c.path, certs, b.Upserts, put); err != nil {
			return err
		}
		res.Upserted = len(b.Upserts)
		if err := revoke(c.path, certs, b, put); err != nil {
			return err
		}
		res.Revoked = len(b.Revokes)
		resync := fs.Resync
		fs = b.Feed
		fs.Cursor = b.Next
		fs.Resync = resync
		res.Cursor = b.Next
		tx.OnCommit(func() { c.synced.Store(true) })
		return writeFeed(tx, &fs)
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("cache: apply batch (%d, %d]: %w", b.From, b.Next, err)
	}
	return res, nil
}

var errInjected = errors.New("injected fault")

// upsert writes certificates, keeping any revocation already stored.
func upsert(path string, certs *bolt.Bucket, ups []verify.Cert, put func(k, v []byte) error) error {
	if len(ups) == 0 {
		return nil
	}
	appending := ascending(ups)
	if appending {
		if last, _ := certs.Cursor().Last(); last != nil && bytes.Compare(ups[0].ID[:], last) <= 0 {
			appending = false
		}
	}
	if appending {
		// Nothing stored sorts after the first record: no record can
		// exist yet, and pages may be filled whole. bbolt splits pages
		// at commit, and the bucket handle lives as long as the
		// transaction, so the setting holds until then.
		certs.FillPercent = 1.0
	}
	// bbolt keeps the slices given to Put until the commit: one slab per
	// batch, a fresh record in it per Put.
	slab := make([]byte, len(ups)*recordLen)
	for i := range ups {
		u := &ups[i]
		v := (*[recordLen]byte)(slab[i*recordLen:])
		var flags byte
		if !appending {
			var old verify.Cert
			if ov := certs.Get(u.ID[:]); ov != nil {
				of, ok := getRecord(ov, &old)
				if !ok {
					return damaged(path, 0, "record of cert %s", u.ID)
				}
				if of&flagRevoke != 0 {
					flags |= flagRevoke // revocation is final
				}
			}
		}
		putRecord(v, u, flags)
		if err := put(u.ID[:], v[:]); err != nil {
			return err
		}
	}
	return nil
}

// revoke marks certificates revoked. A revocation for a certificate the
// cache does not hold is kept as a key-less record, so that a late upsert
// cannot bring the certificate back; it is purged a day after the batch,
// when any certificate issued before its revocation has expired.
func revoke(path string, certs *bolt.Bucket, b *Batch, put func(k, v []byte) error) error {
	slab := make([]byte, len(b.Revokes)*recordLen)
	for i, id := range b.Revokes {
		v := (*[recordLen]byte)(slab[i*recordLen:])
		var c verify.Cert
		flags := byte(flagRevoke)
		if ov := certs.Get(id[:]); ov != nil {
			of, ok := getRecord(ov, &c)
			if !ok {
				return damaged(path, 0, "record of cert %s", id)
			}
			if of&flagRevoke != 0 {
				continue
			}
			flags |= of
		} else {
			flags |= flagNoKey
			at := b.Feed.IssuerTime
			if at.IsZero() {
				at = b.Feed.SyncedAt
			}
			c.NotBefore, c.NotAfter = at, at.Add(MaxValidity)
		}
		putRecord(v, &c, flags)
		if err := put(b.Revokes[i][:], v[:]); err != nil {
			return err
		}
	}
	return nil
}

func ascending(ups []verify.Cert) bool {
	for i := 1; i < len(ups); i++ {
		if bytes.Compare(ups[i-1].ID[:], ups[i].ID[:]) >= 0 {
			return false
		}
	}
	return true
}

// RecordSync stores the feed state of an exchange that brought no records
// (the gate is caught up). The cursor is not moved.
func (c *Cache) RecordSync(fs FeedState) error {
	err := c.update(func(tx *bolt.Tx) error {
		old, err := readFeed(tx, c.path)
		if err != nil {
			return err
		}
		fs.Cursor = old.Cursor
		return writeFeed(tx, &fs)
	})
	if err != nil {
		return fmt.Errorf("cache: record sync: %w", err)
	}
	return nil
}
