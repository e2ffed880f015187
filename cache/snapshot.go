package cache

import (
	"bytes"
	"fmt"
	"slices"
	"time"

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
}

// ApplySnapshot writes one page of a full sync and the sync's progress in
// one transaction: the page's certificates appended as groups of new runs
// (runs.go), one for each window of expiry (the run window, 3 hours) they
// fall in, so that each is deleted once its own certificates expired; no
// lookup reads them until the final page. The cache keeps serving lookups
// from what it holds while a resync runs. The final page lists the new
// runs above what the cache held, with the feed's cursor and state. A
// restarted agent resumes the resync after the last page written
// (FeedState.Resync).
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
	err := c.write(func() error {
		c.mu.RLock()
		r, st := c.resync, c.st
		c.mu.RUnlock()
		switch {
		case p.After == (verify.CertID{}):
			r = &Resync{Epoch: p.Epoch, Snapshot: p.Snapshot}
		case r == nil || r.Epoch != p.Epoch || r.Snapshot != p.Snapshot || r.After != p.After:
			return fmt.Errorf("%w: page does not continue the resync under way (%+v)", ErrGap, r)
		default:
			cp := *r
			cp.Runs = slices.Clone(r.Runs)
			r = &cp
		}
		writers := map[int64]*groupWriter{}
		at := map[int64]int{}
		for i, rr := range r.Runs {
			w := &groupWriter{c: c, seq: rr.Seq}
			if rr.Certs > 0 {
				w.prev = bytes.Clone(rr.Last[:])
			}
			writers[rr.Window], at[rr.Window] = w, i
		}
		window := int64(c.window / time.Second)
		e := make([]byte, entryLen)
		defer clear(e)
		err := c.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketGroups)
			for i := range p.Upserts {
				u := &p.Upserts[i]
				win := u.NotAfter.Unix() / window
				w, ok := writers[win]
				if !ok {
					w = &groupWriter{c: c, seq: st.Next}
					st.Next++
					writers[win], at[win] = w, len(r.Runs)
					r.Runs = append(r.Runs, ResyncRun{Seq: w.seq, Window: win})
				}
				encodeEntry(e, u, 0)
				w.add(e)
				r.Runs[at[win]].Certs++
			}
			for win, w := range writers {
				w.flush()
				if err := w.put(b); err != nil {
					return err
				}
				if w.prev != nil {
					r.Runs[at[win]].Last = verify.CertID(w.prev)
				}
			}
			r.Certs += len(p.Upserts)
			if n := len(p.Upserts); n > 0 {
				r.After = p.Upserts[n-1].ID
			}
			if err := c.writeRuns(tx, &st); err != nil {
				return err
			}
			return c.writeResync(tx, r)
		})
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.resync, c.st = r, st
		c.mu.Unlock()
		res.Upserted = len(p.Upserts)
		if !p.Final {
			res.Cursor = c.fs.Cursor
			return nil
		}
		return c.finishSnapshot(p, r, &res)
	})
	if err != nil {
		return fail(err)
	}
	if p.Final {
		// A rebuilt cache now holds a full sync: it replaces the old one.
		c.wmu.Lock()
		err := c.finishRebuild()
		c.wmu.Unlock()
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

// finishSnapshot lists the resync's run as the cache's newest, with the
// snapshot's cursor and the feed state of its final page p. What the
// cache held stays under it, as a snapshot laid over older records in
// place would leave it (a certificate the issuer no longer lists, after a
// new epoch, still opens the gate until it expires), and the delta is
// first written as a run of its own, older than the snapshot's.
func (c *Cache) finishSnapshot(p *SnapshotPage, r *Resync, res *ApplyResult) error {
	fs := p.Feed
	fs.Cursor, fs.Epoch, fs.Resync = p.Snapshot, p.Epoch, nil
	if _, err := c.cutRun(fs.SyncedAt, time.Time{}, nil, nil); err != nil {
		return err
	}
	carry, err := c.carryRevocations(r)
	if err != nil {
		return err
	}
	covers := c.delta.Next() - 1
	if len(carry) > 0 {
		if _, err = c.appendDelta(deltaCarry, &deltaRecord{entries: carry}); err != nil {
			return err
		}
	}
	c.mu.RLock()
	st, runs := c.st, c.runs
	c.mu.RUnlock()
	err = c.update(func(tx *bolt.Tx) error {
		runs = slices.Clip(runs)
		for _, rr := range r.Runs {
			nr, err := c.describeRun(tx, rr.Seq, rr.Certs, fs.SyncedAt)
			if err != nil {
				return err
			}
			if nr.Certs != rr.Certs {
				return damaged(c.Path(), 0, "run %d of the full sync holds %d certificates, %d were written", rr.Seq, nr.Certs, rr.Certs)
			}
			if nr.Certs > 0 {
				if err := c.putBloom(tx, nr); err != nil {
					return err
				}
				runs = append(runs, nr)
			}
		}
		st.Covers, st.Runs = covers, metas(runs)
		if err := c.writeRuns(tx, &st); err != nil {
			return err
		}
		if err := c.writeResync(tx, nil); err != nil {
			return err
		}
		return c.writeFeed(tx, &fs)
	})
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.runs, c.st, c.covers, c.resync = runs, st, covers, nil
	old := c.idx
	c.idx = newIndex()
	for off := 0; off < len(carry); off += entryLen {
		c.idx.put(carry[off : off+entryLen])
	}
	clear(carry)
	c.fs = fs
	c.mu.Unlock()
	old.wipe() // no lookup reads it now: it was replaced under mu
	c.synced.Store(true)
	res.Cursor = fs.Cursor
	if err := c.delta.Release(covers); err != nil {
		return fmt.Errorf("delta %s: give back segments: %w", c.deltaDir, err)
	}
	return nil
}

// carryRevocations returns the revocations the cache holds that the
// snapshot's run r would hide: certificates it holds unrevoked, carried
// revoked with the snapshot's record, as revocation is final whatever a
// snapshot says. A group that fails authentication is not believed. The
// entries go into a delta record (deltaCarry) before the snapshot's run
// is listed, so that a power cut between the two keeps them either way.
func (c *Cache) carryRevocations(r *Resync) ([]byte, error) {
	if r.Certs == 0 {
		return nil, nil
	}
	c.mu.RLock()
	runs := c.runs
	c.mu.RUnlock()
	var out []byte
	err := c.view(func(tx *bolt.Tx) error {
		revoked := map[verify.CertID]bool{}
		for _, run := range runs {
			err := c.eachGroup(tx, run.Seq, func(g *group) error {
				// The clear part says where a revocation may be; only
				// an authenticated group is believed.
				any := false
				for i := range g.n {
					any = any || g.entryFlags(i)&flagRevoke != 0
				}
				if !any || !g.openAll(c.aead) {
					return nil
				}
				for i := range g.n {
					if g.entryFlags(i)&flagRevoke != 0 {
						revoked[verify.CertID(g.id(i))] = true
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		e := make([]byte, entryLen)
		defer clear(e)
		groups := groupsCursor(tx)
		for id := range revoked {
			for _, rr := range r.Runs {
				if rr.Certs == 0 {
					continue
				}
				found, err := c.lookupRun(groups, &run{runMeta: runMeta{Seq: rr.Seq, Last: rr.Last}}, id[:], e)
				if err != nil {
					return err
				}
				if found && e[verify.CertIDLen]&flagRevoke == 0 {
					e[verify.CertIDLen] |= flagRevoke
					out = append(out, e...)
				}
			}
		}
		return nil
	})
	return out, err
}

func less(a, b verify.CertID) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}
