package cache

import (
	"bytes"
	"crypto/rand"
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
	// Sealed, when set, is Upserts sealed ahead (Seal); else Apply seals.
	Sealed *Sealed
}

// ApplyResult says what Apply did.
type ApplyResult struct {
	// Skipped is true when the cache was already at or past Next: the
	// batch was applied before and nothing was written.
	Skipped  bool
	Upserted int
	Revoked  int
	Cursor   uint64
	// Replaced lists the records that failed authentication and were
	// overwritten with the feed's (a damaged record healed).
	Replaced []verify.CertID
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
		fs, err := c.readFeed(tx)
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
		if err := c.upsert(certs, b.Upserts, b.Sealed, put, &res); err != nil {
			return err
		}
		res.Upserted = len(b.Upserts)
		if err := c.revoke(certs, b, put, &res); err != nil {
			return err
		}
		res.Revoked = len(b.Revokes)
		resync := fs.Resync
		fs = b.Feed
		fs.Cursor = b.Next
		fs.Resync = resync
		res.Cursor = b.Next
		tx.OnCommit(func() { c.synced.Store(true) })
		return c.writeFeed(tx, &fs)
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("cache: apply batch (%d, %d]: %w", b.From, b.Next, err)
	}
	return res, nil
}

var errInjected = errors.New("injected fault")

// upsert writes certificates, each key sealed under the file's key with a
// fresh random nonce, keeping any revocation already stored. A stored
// record that fails authentication is not believed (not even its
// revocation flag): the feed's authenticated record replaces it, and it
// is listed in res.Replaced.
func (c *Cache) upsert(certs *bolt.Bucket, ups []verify.Cert, pre *Sealed, put func(k, v []byte) error, res *ApplyResult) error {
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
	// batch, a fresh record in it per Put, sealed before the transaction
	// when the caller could (Seal).
	if pre == nil || pre.cache != c || len(pre.slab) != len(ups)*recordLen {
		pre = c.Seal(ups)
	}
	var nonce [nonceLen]byte
	for i := range ups {
		u := &ups[i]
		v := pre.slab[i*recordLen : (i+1)*recordLen]
		if !appending {
			if ov := certs.Get(u.ID[:]); ov != nil {
				var old verify.Cert
				of, outcome := openRecord(c.aead, u.ID[:], ov, &old)
				switch outcome {
				case recordShape:
					return damaged(c.Path(), 0, "record of cert %s", u.ID)
				case recordForged:
					res.Replaced = append(res.Replaced, u.ID)
				default:
					if of&flagRevoke != 0 && !u.Revoked {
						// Revocation is final: sealed again with it.
						rand.Read(nonce[:])
						sealRecord(c.aead, v, u, flagRevoke, nonce[:])
					}
				}
			}
		}
		if err := put(u.ID[:], v); err != nil {
			return err
		}
	}
	return nil
}

// Sealed is certificates sealed for one cache ahead of their transaction
// (Seal), so that a caller can seal the next page while the cache writes
// this one.
type Sealed struct {
	cache *Cache
	slab  []byte
}

// Seal seals certs' records under c's key, each with a fresh random
// nonce, for an Apply or ApplySnapshot of exactly these certificates. It
// writes nothing; it is safe to call while the cache applies another
// batch.
func (c *Cache) Seal(certs []verify.Cert) *Sealed {
	s := &Sealed{cache: c, slab: make([]byte, len(certs)*recordLen)}
	nonces := make([]byte, len(certs)*nonceLen)
	rand.Read(nonces)
	for i := range certs {
		sealRecord(c.aead, s.slab[i*recordLen:(i+1)*recordLen], &certs[i], 0, nonces[i*nonceLen:])
	}
	return s
}

// revoke marks certificates revoked. A revocation for a certificate the
// cache does not hold is kept as a key-less record, so that a late upsert
// cannot bring the certificate back; it is purged a day after the batch,
// when any certificate issued before its revocation has expired. A stored
// record that fails authentication is replaced by such a key-less
// revocation: its key cannot be believed either, and the certificate's
// codes are refused from now on.
func (c *Cache) revoke(certs *bolt.Bucket, b *Batch, put func(k, v []byte) error, res *ApplyResult) error {
	slab := make([]byte, len(b.Revokes)*recordLen)
	nonces := make([]byte, len(b.Revokes)*nonceLen)
	rand.Read(nonces)
	for i, id := range b.Revokes {
		var cert verify.Cert
		cert.ID = id
		flags := byte(flagRevoke)
		known := false
		if ov := certs.Get(id[:]); ov != nil {
			of, outcome := openRecord(c.aead, id[:], ov, &cert)
			switch outcome {
			case recordShape:
				return damaged(c.Path(), 0, "record of cert %s", id)
			case recordForged:
				res.Replaced = append(res.Replaced, id)
				cert = verify.Cert{ID: id}
			default:
				if of&flagRevoke != 0 {
					continue
				}
				flags |= of
				known = true
			}
		}
		if !known {
			flags |= flagNoKey
			at := b.Feed.IssuerTime
			if at.IsZero() {
				at = b.Feed.SyncedAt
			}
			cert.NotBefore, cert.NotAfter = at, at.Add(MaxValidity)
		}
		v := slab[i*recordLen : i*recordLen+recordLenOf(flags)]
		sealRecord(c.aead, v, &cert, flags, nonces[i*nonceLen:])
		if err := put(b.Revokes[i][:], v); err != nil {
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
		old, err := c.readFeed(tx)
		if err != nil {
			return err
		}
		fs.Cursor = old.Cursor
		return c.writeFeed(tx, &fs)
	})
	if err != nil {
		return fmt.Errorf("cache: record sync: %w", err)
	}
	return nil
}

// Settle is the last step of healing a certificate whose record failed
// authentication, after a full resync has laid the feed's records over
// the cache: a record that now authenticates is healed; one that still
// fails is one the feed no longer holds (expired, or a revocation of a
// certificate long gone), and is deleted, so that the certificate is
// refused as unknown rather than undecided. It returns what became of it:
// "healed", "deleted" or "absent".
func (c *Cache) Settle(id verify.CertID) (string, error) {
	state := "absent"
	err := c.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCerts)
		v := b.Get(id[:])
		if v == nil {
			return nil
		}
		var cert verify.Cert
		if _, outcome := openRecord(c.aead, id[:], v, &cert); outcome == recordOK {
			state = "healed"
			return nil
		}
		state = "deleted"
		return b.Delete(id[:])
	})
	if err != nil {
		return "", fmt.Errorf("cache: settle %s: %w", id, err)
	}
	return state, nil
}
