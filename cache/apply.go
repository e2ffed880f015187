package cache

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"time"

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
		case c.NotAfter.Unix() > math.MaxUint32:
			return fmt.Errorf("%w: upsert %d (cert %s): not_after %v is after 2106, which the cache cannot hold", ErrBadBatch, i, c.ID, c.NotAfter)
		case c.NotAfter.Sub(c.NotBefore) > MaxValidity:
			return fmt.Errorf("%w: upsert %d (cert %s): valid for %v, the spec allows %v: the issuer is misconfigured",
				ErrBadBatch, i, c.ID, c.NotAfter.Sub(c.NotBefore), MaxValidity)
		}
	}
	return nil
}

// Apply writes a feed batch and its cursor as one record of the delta
// (delta.go), synced before it returns: all of it or none. A batch the
// cache already holds (Next at or before the cursor) is skipped without a
// write, so applying the same batch twice changes nothing; a batch that
// starts after the cursor is refused with ErrGap. Each certificate is
// written as it stands after the batch, against what the cache holds: a
// revoked certificate stays revoked whatever an upsert says, and a
// revocation of a certificate not held is kept as a key-less record, so
// that a late upsert cannot bring it back. Lookups see the batch once it
// is on the disk.
func (c *Cache) Apply(b *Batch) (ApplyResult, error) {
	res := ApplyResult{}
	if err := b.validate(); err != nil {
		return res, fmt.Errorf("cache: apply batch (%d, %d]: %w", b.From, b.Next, err)
	}
	err := c.write(func() error {
		fs, _ := c.Feed()
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
		w := newBatchWriter(c, len(b.Upserts)+len(b.Revokes))
		if err := w.upsert(b.Upserts, &res); err != nil {
			return err
		}
		if err := w.revoke(b, &res); err != nil {
			return err
		}
		res.Upserted, res.Revoked = len(b.Upserts), len(b.Revokes)
		next := b.Feed
		next.Cursor = b.Next
		if err := w.commit(deltaBatch, b.From, b.Next, &next); err != nil {
			return err
		}
		res.Cursor = b.Next
		c.synced.Store(true)
		return nil
	})
	if err != nil {
		return ApplyResult{}, fmt.Errorf("cache: apply batch (%d, %d]: %w", b.From, b.Next, err)
	}
	return res, nil
}

// write runs fn as the cache's one writer, or refuses with ErrReadOnly,
// once the deferred check has passed (a writer reads the runs).
func (c *Cache) write(fn func() error) error {
	if c.readOnly {
		return ErrReadOnly
	}
	if err := c.Checked(); err != nil {
		return err
	}
	c.yield() // its work too, not only its writes, after the gate's decision
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.delta == nil {
		return errClosed
	}
	return safely(c.Path(), fn)
}

var errInjected = errors.New("injected fault")

// batchWriter gathers a batch's entries, each computed against the
// cache and the batch's own earlier entries, for one delta record.
type batchWriter struct {
	c       *Cache
	entries []byte
	at      idTable // of entries
}

// newBatchWriter returns a batchWriter for about n certificates.
func newBatchWriter(c *Cache, n int) *batchWriter {
	w := &batchWriter{c: c, entries: make([]byte, 0, n*entryLen)}
	w.at.reset(n, 4)
	return w
}

func (w *batchWriter) id(i int) []byte { return w.entries[i*entryLen : i*entryLen+verify.CertIDLen] }

// get finds id's newest entry: the batch's own, else the cache's. A
// cache record that fails authentication is not believed (not even its
// revocation flag): it counts as absent and is listed in res.Replaced.
func (w *batchWriter) get(id verify.CertID, e []byte, res *ApplyResult) (bool, error) {
	if i, _ := w.at.find(id[:], w.at.hash(id[:]), w.id); i >= 0 {
		copy(e, w.entries[i*entryLen:(i+1)*entryLen])
		return true, nil
	}
	found, err := w.c.record(id[:], e)
	if errors.Is(err, ErrAuth) {
		res.Replaced = append(res.Replaced, id)
		return false, nil
	}
	return found, err
}

func (w *batchWriter) set(id verify.CertID, e []byte) {
	h := w.at.hash(id[:])
	if i, s := w.at.find(id[:], h, w.id); i >= 0 {
		copy(w.entries[i*entryLen:], e)
	} else {
		w.entries = append(w.entries, e...)
		w.at.set(s, h, len(w.entries)/entryLen-1)
	}
}

// warmAhead is how many certificates' lines upsert reads ahead at once
// (Cache.warm): their lines stay in the processor's cache until their turn.
const warmAhead = 256

// upsert adds certificates, keeping any revocation already held. A
// certificate held already as it would be written is left out: the feed
// client sends the whole current log page each round, from its first
// change (a batch that overlaps the cursor), and only what is new is
// written again.
func (w *batchWriter) upsert(ups []verify.Cert, res *ApplyResult) error {
	var old, e [entryLen]byte
	for i := range ups {
		if i%warmAhead == 0 {
			w.c.warm(ups[i:min(i+warmAhead, len(ups))])
		}
		u := &ups[i]
		found, err := w.get(u.ID, old[:], res)
		if err != nil {
			return err
		}
		var flags byte
		if found && old[verify.CertIDLen]&flagRevoke != 0 {
			flags = flagRevoke // revocation is final
		}
		encodeEntry(e[:], u, flags)
		if found && e == old {
			continue
		}
		w.set(u.ID, e[:])
	}
	clear(e[:])
	clear(old[:])
	return nil
}

// revoke marks certificates revoked. A revocation for a certificate the
// cache does not hold is kept as a key-less record, so that a late upsert
// cannot bring the certificate back; it expires a day after the batch,
// when any certificate issued before its revocation has expired. A held
// record that fails authentication is replaced by such a key-less
// revocation: its key cannot be believed either, and the certificate's
// codes are refused from now on.
func (w *batchWriter) revoke(b *Batch, res *ApplyResult) error {
	var e [entryLen]byte
	for _, id := range b.Revokes {
		found, err := w.get(id, e[:], res)
		if err != nil {
			return err
		}
		if found && e[verify.CertIDLen]&flagNoKey == 0 {
			if e[verify.CertIDLen]&flagRevoke != 0 {
				continue
			}
			e[verify.CertIDLen] |= flagRevoke
		} else if found && e[verify.CertIDLen]&flagRevoke != 0 {
			continue // a key-less revocation already
		} else {
			at := b.Feed.IssuerTime
			if at.IsZero() {
				at = b.Feed.SyncedAt
			}
			encodeEntry(e[:], &verify.Cert{ID: id, NotBefore: at, NotAfter: at.Add(MaxValidity)}, flagRevoke|flagNoKey)
		}
		w.set(id, e[:])
	}
	clear(e[:])
	return nil
}

// commit writes the entries as one delta record with the cursor moved
// from..next and feed state fs, then lets lookups see them.
func (w *batchWriter) commit(kind byte, from, next uint64, fs *FeedState) error {
	c := w.c
	if c.failAfter > 0 && len(w.entries)/entryLen > c.failAfter {
		return errInjected
	}
	if len(w.entries) > c.delta.MaxPayload()-maxDeltaOverhead {
		// Too large for a record of the delta (a catch-up after an
		// outage): written as a run, with the delta.
		_, err := c.cutRun(fs.SyncedAt, time.Time{}, w.entries, fs)
		clear(w.entries)
		return err
	}
	_, err := c.appendDelta(kind, &deltaRecord{from: from, next: next, fs: *fs, entries: w.entries})
	if err != nil {
		return err
	}
	c.mu.Lock()
	for off := 0; off < len(w.entries); off += entryLen {
		if n := off / entryLen; n%warmAhead == 0 { // see Cache.warm
			c.idx.warm(w.entries[off:min(off+warmAhead*entryLen, len(w.entries))])
		}
		c.idx.put(w.entries[off : off+entryLen])
	}
	resync := c.fs.Resync
	c.fs = *fs
	c.fs.Resync = resync
	c.mu.Unlock()
	clear(w.entries)
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
// (the gate is caught up): a delta record of its own. The cursor is not
// moved.
func (c *Cache) RecordSync(fs FeedState) error {
	err := c.write(func() error {
		old, _ := c.Feed()
		fs.Cursor, fs.Resync = old.Cursor, nil
		return newBatchWriter(c, 0).commit(deltaSync, old.Cursor, old.Cursor, &fs)
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
// certificate long gone), and is deleted (a key-less record that is no
// revocation shadows it), so that the certificate is refused as unknown
// rather than undecided. It returns what became of it: "healed",
// "deleted" or "absent".
func (c *Cache) Settle(id verify.CertID) (string, error) {
	state := "absent"
	err := c.write(func() error {
		var e [entryLen]byte
		found, err := c.record(id[:], e[:])
		clear(e[:])
		switch {
		case err == nil && found:
			state = "healed"
			return nil
		case err == nil:
			return nil
		case !errors.Is(err, ErrAuth):
			return err
		}
		state = "deleted"
		fs, _ := c.Feed()
		at := fs.IssuerTime
		if at.IsZero() {
			at = fs.SyncedAt
		}
		w := newBatchWriter(c, 1)
		encodeEntry(e[:], &verify.Cert{ID: id, NotBefore: at, NotAfter: at.Add(MaxValidity)}, flagNoKey)
		w.set(id, e[:])
		fs.Resync = nil
		return w.commit(deltaBatch, fs.Cursor, fs.Cursor, &fs)
	})
	if err != nil {
		return "", fmt.Errorf("cache: settle %s: %w", id, err)
	}
	return state, nil
}
