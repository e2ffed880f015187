package cache

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/internal/lowprio"
	"gateagent/verify"
)

// The certificates of a schema 4 cache are immutable runs and a delta
// (docs/flash.md §5):
//
//   - A run is a set of certificates written once, in ID order, into
//     groups (group.go) appended at the end of bucket "groups", and never
//     changed: the delta of a window (Purge writes it when the window has
//     passed), a full sync's snapshot (ApplySnapshot), or a schema 3
//     cache's certificates (migrate.go). Its Bloom filter (bucket
//     "blooms") says which IDs it may hold. A run is deleted whole once
//     every certificate in it expired more than the retention ago, the
//     oldest first; no certificate is ever rewritten or deleted in place.
//   - The delta (delta.go) is every feed batch since the newest run cut
//     from it, indexed in memory.
//
// A lookup reads the index, then the runs from the newest (a record
// written later, such as a revocation, shadows an older one), each run's
// filter first. The file's meta bucket holds what the runs are
// ("runs": JSON ‖ MAC): their numbers, counts, last IDs, expiries and
// filters' MACs, the delta LSN they cover, and the store's ID that binds
// the delta to this file. It changes in the same transaction as the
// runs, and the feed state beside it is the one as of Covers.

// runMeta is what the file says of one run.
type runMeta struct {
	Seq         uint64        `json:"seq"`
	Certs       int           `json:"certs"`
	Last        verify.CertID `json:"last"`
	MaxNotAfter time.Time     `json:"max_not_after"`
	Written     time.Time     `json:"written"`
	BloomMAC    []byte        `json:"bloom_mac"`
}

// runsState is the file's meta/runs record.
type runsState struct {
	Store  []byte    `json:"store"`
	Covers uint64    `json:"covers"` // the last delta LSN the runs hold
	Next   uint64    `json:"next"`   // the next run's number
	Runs   []runMeta `json:"runs"`   // oldest first
}

// run is a run as lookups use it.
type run struct {
	runMeta
	bloom bloom
}

var (
	bucketGroups = []byte("groups")
	bucketBlooms = []byte("blooms")
	keyRuns      = []byte("runs")
	keyResync    = []byte("resync")
	domainRuns   = []byte("gateagent cache v4 runs\x00")
	domainResync = []byte("gateagent cache v4 resync\x00")
	domainBloom  = []byte("gateagent cache v4 bloom\x00")
)

// commitGroups is how many groups one transaction of a run's writing
// holds (about 256 KB): a grant's fdatasync, which the device serves
// after the writes queued before it, never waits behind more.
const commitGroups = 64

func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// readRuns reads and authenticates meta/runs, and the runs' filters.
func (c *Cache) readRuns(tx *bolt.Tx) (runsState, []*run, error) {
	var st runsState
	found, err := c.readMeta(tx, keyRuns, domainRuns, "the runs' record", &st)
	switch {
	case err != nil:
		return st, nil, err
	case !found:
		return st, nil, &AuthError{Path: c.Path(), Bucket: "meta", Key: keyRuns} // a file of schema 4 has one
	case len(st.Store) != storeIDLen:
		return st, nil, damaged(c.Path(), 0, "the runs' record: a store ID of %d bytes", len(st.Store))
	}
	blooms := tx.Bucket(bucketBlooms)
	runs := make([]*run, 0, len(st.Runs))
	for _, m := range st.Runs {
		willNeed(blooms.Get(u64key(m.Seq)))
	}
	for _, m := range st.Runs {
		b := blooms.Get(u64key(m.Seq))
		if !c.bloomOK(m.Seq, b, m.BloomMAC) {
			return st, nil, &AuthError{Path: c.Path(), Bucket: "blooms", Key: u64key(m.Seq)}
		}
		runs = append(runs, &run{runMeta: m, bloom: bytes.Clone(b)})
	}
	return st, runs, nil
}

func (c *Cache) writeRuns(tx *bolt.Tx, st *runsState) error {
	return c.writeMeta(tx, keyRuns, domainRuns, st)
}

// readResync reads the full sync under way, nil when none is.
func (c *Cache) readResync(tx *bolt.Tx) (*Resync, error) {
	r := new(Resync)
	if found, err := c.readMeta(tx, keyResync, domainResync, "resync state", r); !found || err != nil {
		return nil, err
	}
	return r, nil
}

func (c *Cache) writeResync(tx *bolt.Tx, r *Resync) error {
	if r == nil {
		return tx.Bucket(bucketMeta).Delete(keyResync)
	}
	return c.writeMeta(tx, keyResync, domainResync, r)
}

// newStore makes the runs' record of a new file: no runs, a new store ID.
func newStore() runsState {
	st := runsState{Store: make([]byte, storeIDLen), Next: 1}
	rand.Read(st.Store)
	return st
}

// groupWriter seals a run's groups, a group of groupSize entries at a
// time, each after the last, for bucket groups (sealed, put).
type groupWriter struct {
	c      *Cache
	seq    uint64
	prev   []byte // the last ID written; nil before the first group
	groups int
	// pending is the entries of the group being filled.
	pending []byte
	// desc, when set, is made the run's record and filter as the
	// entries pass (a run written in one go: no scan of it after).
	desc *run
	// sealed is the groups sealed and not yet taken (take, put).
	sealed gathered
}

// gathered is groups sealed ahead of the transaction that puts them,
// each key and value.
type gathered [][2][]byte

// putAll puts the groups into bucket b, which keeps their values (not
// copied) until the transaction ends.
func (g gathered) putAll(b *bolt.Bucket) error {
	b.FillPercent = 1.0 // appended in order: pages filled whole
	for _, kv := range g {
		if err := b.Put(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// add appends entry e (IDs ascending) and seals a group when one is full
// (its IDs then added to desc's filter, if set).
func (w *groupWriter) add(e []byte) {
	if r := w.desc; r != nil {
		r.Last = verify.CertID(e[:verify.CertIDLen])
		if na := time.Unix(int64(time32(e[verify.CertIDLen+9:])), 0).UTC(); na.After(r.MaxNotAfter) {
			r.MaxNotAfter = na
		}
		r.Certs++
	}
	w.pending = append(w.pending, e...)
	if len(w.pending) == groupSize*entryLen {
		w.flush()
	}
}

// flush seals the group being filled, if any.
func (w *groupWriter) flush() {
	if len(w.pending) == 0 {
		return
	}
	if r := w.desc; r != nil {
		r.bloom.addEntries(w.pending)
	}
	last := w.pending[len(w.pending)-entryLen:][:verify.CertIDLen]
	k := groupKey(w.seq, last)
	w.sealed = append(w.sealed, [2][]byte{k, sealGroup(w.c.aead, nil, w.seq, w.prev, w.pending)})
	clear(w.pending)
	w.prev = append(w.prev[:0], k[8:]...)
	w.pending = w.pending[:0]
	w.groups++
}

// take returns the groups sealed since the last take.
func (w *groupWriter) take() gathered {
	g := w.sealed
	w.sealed = nil
	return g
}

// put puts the groups sealed since the last take into bucket b.
func (w *groupWriter) put(b *bolt.Bucket) error { return w.take().putAll(b) }

// groupsCursor is a cursor of tx's bucket of groups, nil when the file
// has none.
func groupsCursor(tx *bolt.Tx) *bolt.Cursor {
	if b := tx.Bucket(bucketGroups); b != nil {
		return b.Cursor()
	}
	return nil
}

// newestHit is the index of the newest of runs whose filter may hold id,
// -1 when none may.
func newestHit(runs []*run, id []byte) int {
	for i := len(runs) - 1; i >= 0; i-- {
		if runs[i].bloom.has(id) {
			return i
		}
	}
	return -1
}

// scanHit is newestHit for a scan's lookup, which reads the oldest run
// without asking its filter when no newer run's may hold id: a filter
// spares a run's read only for an ID the run does not hold, and an ID
// that no newer run holds is in the oldest (the full sync's, the
// largest, whose filter is the likeliest to miss the processor's cache)
// unless the gate does not know it at all, and refuses it. Writers keep
// newestHit: a feed batch's IDs are mostly new to every run.
func scanHit(runs []*run, id []byte) int {
	if len(runs) == 0 {
		return -1
	}
	return max(0, newestHit(runs[1:], id)+1)
}

// lookupRuns finds id's newest record in the runs, newest first, into e
// (entryLen bytes): runs ends with newestHit's run, whose filter is not
// asked again. groups is a cursor of bucket groups in a read transaction
// begun while runs was the cache's list, or since (see reader).
func (c *Cache) lookupRuns(groups *bolt.Cursor, runs []*run, id []byte, e []byte) (bool, error) {
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		if i < len(runs)-1 && !r.bloom.has(id) {
			continue
		}
		found, err := c.lookupRun(groups, r, id, e)
		if err != nil || found {
			return found, err
		}
	}
	return false, nil
}

// lookupRun finds id in run r with groups, a cursor of bucket groups (nil
// when the file has none).
func (c *Cache) lookupRun(groups *bolt.Cursor, r *run, id []byte, e []byte) (bool, error) {
	var k [groupKeyLen]byte
	binary.BigEndian.PutUint64(k[:], r.Seq)
	copy(k[8:], id)
	if c.later != nil {
		if err := c.later.descendSeek(k[:]); err != nil {
			return false, err
		}
	}
	if groups == nil {
		return false, damaged(c.Path(), 0, "run %d listed, but the file has no bucket of groups", r.Seq)
	}
	gk, v := groups.Seek(k[:])
	if gk == nil || len(gk) != groupKeyLen || binary.BigEndian.Uint64(gk) != r.Seq {
		if bytes.Compare(id, r.Last[:]) > 0 {
			return false, nil
		}
		return false, damaged(c.Path(), 0, "run %d: no group holds certificate %s, before the run's last %s", r.Seq, verify.CertID(id), r.Last)
	}
	found, outcome := lookupGroup(c.aead, gk, v, id, e)
	switch outcome {
	case recordShape:
		// Not a group, or not the one a Seek of id should land on: the
		// tree led past the group that covers id.
		return false, damaged(c.Path(), 0, "run %d: group %s does not cover certificate %s", r.Seq, verify.CertID(gk[8:]), verify.CertID(id))
	case recordForged:
		return false, &AuthError{Path: c.Path(), Bucket: "certs", Key: bytes.Clone(id)}
	}
	return found, nil
}

// scanRun reads every group of run seq in order, authenticated, checking
// that each follows the last: what a run's record and filter are made
// from, and what Authenticate checks.
func (c *Cache) scanRun(tx *bolt.Tx, seq uint64, fn func(g *group) error) error {
	var prev []byte
	return c.eachGroup(tx, seq, func(g *group) error {
		if !g.openAll(c.aead) {
			return &AuthError{Path: c.Path(), Bucket: "certs", Key: bytes.Clone(g.last())}
		}
		ok := g.first
		if prev != nil {
			ok = !g.first && bytes.Equal(g.prev, prev) && bytes.Compare(g.id(0), prev) > 0
		}
		for i := 1; i < g.n && ok; i++ {
			ok = bytes.Compare(g.id(i-1), g.id(i)) < 0
		}
		if !ok {
			return damaged(c.Path(), 0, "run %d: group %x does not follow the one before it", seq, g.last())
		}
		prev = append(prev[:0], g.last()...)
		return fn(g)
	})
}

// eachGroup calls fn with every group of run seq in ID order, read in
// place (parseGroup: its shape checked, nothing authenticated; fn opens
// what it needs); a group of the wrong shape is damage.
func (c *Cache) eachGroup(tx *bolt.Tx, seq uint64, fn func(g *group) error) error {
	cur := tx.Bucket(bucketGroups).Cursor()
	for k, v := cur.Seek(u64key(seq)); k != nil && len(k) == groupKeyLen && be64(k) == seq; k, v = cur.Next() {
		g, ok := parseGroup(k, v)
		if !ok {
			return damaged(c.Path(), 0, "run %d: group %x", seq, k[8:])
		}
		err := fn(&g)
		g.release()
		if err != nil {
			return err
		}
	}
	return nil
}

// describeRun makes a run's record and filter from its groups.
func (c *Cache) describeRun(tx *bolt.Tx, seq uint64, expect int, now time.Time) (*run, error) {
	r := &run{runMeta: runMeta{Seq: seq, Written: now}, bloom: newBloom(expect)}
	var maxNA int64
	err := c.scanRun(tx, seq, func(g *group) error {
		for i := range g.n {
			r.bloom.add(g.id(i))
			maxNA = max(maxNA, clearNotAfter(g.clear[i*clearLen:]))
		}
		r.Certs += g.n
		r.Last = verify.CertID(g.last())
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.MaxNotAfter = time.Unix(maxNA, 0).UTC()
	return r, nil
}

// putBloom stores run r's filter in tx, and its authenticator in r's
// record.
//
// A filter is authenticated by AES-GCM under the file's sealing key with
// the filter as associated data, sealing the domain and the run's number
// (nonce ‖ sealed ‖ tag): GHASH reads a 5M run's 7.5 MB filter at open in
// about a millisecond, where HMAC-SHA256 takes several.
func (c *Cache) putBloom(tx *bolt.Tx, r *run) error {
	nonce := make([]byte, nonceLen)
	rand.Read(nonce)
	r.BloomMAC = c.aead.Seal(nonce, nonce, bloomLabel(r.Seq), r.bloom)
	return tx.Bucket(bucketBlooms).Put(u64key(r.Seq), r.bloom)
}

func bloomLabel(seq uint64) []byte {
	return binary.BigEndian.AppendUint64(bytes.Clone(domainBloom), seq)
}

// bloomOK checks run seq's filter b against its authenticator.
func (c *Cache) bloomOK(seq uint64, b, auth []byte) bool {
	if len(auth) < nonceLen+tagLen {
		return false
	}
	got, err := c.aead.Open(nil, auth[:nonceLen], auth[nonceLen:], b)
	return err == nil && bytes.Equal(got, bloomLabel(seq))
}

// metas returns the records of runs.
func metas(runs []*run) []runMeta {
	out := make([]runMeta, len(runs))
	for i, r := range runs {
		out[i] = r.runMeta
	}
	return out
}

// cutRun writes the delta as a new run, then gives the delta's segments
// back: the maintenance's job once a window has passed. Writers wait
// (c.wmu is held); lookups go on, from the index until the run is in the
// list, from the run after.
//
// Entries that expired before cut (the retention's start) are left out:
// it returns how many. With batch set (a batch too large for a delta record: its entries, and
// the feed state after it), the run is the delta and the batch together,
// the batch's entries over the delta's: the batch is in the cache once
// the run is, and not before.
func (c *Cache) cutRun(now, cut time.Time, batch []byte, batchFS *FeedState) (int, error) {
	c.mu.RLock()
	ids := c.idx.each()
	st := c.st
	fs := c.fs
	c.mu.RUnlock()
	if len(ids) == 0 && len(batch) == 0 {
		return 0, nil
	}
	if batchFS != nil {
		resync := fs.Resync
		fs = *batchFS
		fs.Resync = resync
	}
	// Both in ID order; merged as they are written, a batch's entry
	// over the delta's of the same ID.
	sortByID(ids, c.idx)
	var extra [][]byte
	for off := 0; off < len(batch); off += entryLen {
		extra = append(extra, batch[off:off+entryLen])
	}
	slices.SortFunc(extra, func(a, b []byte) int { return compareKeys(a[:verify.CertIDLen], b[:verify.CertIDLen]) })
	dropped := 0
	next := func(yield func([]byte) bool) {
		i, j := 0, 0
		for i < len(ids) || j < len(extra) {
			var e []byte
			switch {
			case j == len(extra):
				e, i = c.idx.entry(ids[i]), i+1
			case i == len(ids):
				e, j = extra[j], j+1
			default:
				switch cmp := compareKeys(c.idx.id(ids[i]), extra[j][:verify.CertIDLen]); {
				case cmp < 0:
					e, i = c.idx.entry(ids[i]), i+1
				case cmp > 0:
					e, j = extra[j], j+1
				default:
					e, i, j = extra[j], i+1, j+1
				}
			}
			if entryNotAfter(e) < cut.Unix() {
				dropped++
				continue
			}
			if !yield(e) {
				return
			}
		}
	}
	seq := st.Next
	r := &run{runMeta: runMeta{Seq: seq, Written: now}, bloom: newBloom(len(ids) + len(extra))}
	if err := c.writeGroups(seq, r, next); err != nil {
		return 0, fmt.Errorf("write run %d: %w", seq, err)
	}
	covers := c.delta.Next() - 1
	var nst runsState
	err := c.update(func(tx *bolt.Tx) error {
		nst = st
		nst.Covers, nst.Next = covers, seq+1
		nst.Runs = slices.Clone(st.Runs)
		if r.Certs > 0 {
			if err := c.putBloom(tx, r); err != nil {
				return err
			}
			nst.Runs = append(nst.Runs, r.runMeta)
		}
		if err := c.writeRuns(tx, &nst); err != nil {
			return err
		}
		f := fs
		f.Resync = nil
		return c.writeFeed(tx, &f)
	})
	if err != nil {
		return 0, fmt.Errorf("write run %d: %w", seq, err)
	}
	c.mu.Lock()
	if r.Certs > 0 {
		c.runs = append(slices.Clip(c.runs), r)
	}
	c.st = nst
	c.covers = covers
	c.fs = fs
	old := c.idx
	c.idx = newIndex() // all of it is in the run now (no writer ran meanwhile): nothing to copy under the lock
	c.mu.Unlock()
	old.wipe() // no lookup reads it now: it was replaced under mu
	c.lastCut = now
	if err := c.delta.Release(covers); err != nil {
		return dropped, fmt.Errorf("delta %s: give back segments: %w", c.deltaDir, err)
	}
	return dropped, nil
}

// writeGroups appends the entries of next (IDs ascending) as run seq's
// groups, commitGroups a transaction, and makes r the run's record and
// filter. A goroutine seals each transaction's groups (AES-GCM, the
// filter) while the one before commits: the sealing shares no lock with
// the commit, runs at the caller's priority (lowprio.Follow: the agent's
// maintenance is below the gate) and waits for the gate's decisions as
// the commits do (yield), and the run is the same, to the byte, as one
// goroutine would write.
func (c *Cache) writeGroups(seq uint64, r *run, next iter.Seq[[]byte]) error {
	sealed := make(chan gathered, 1)
	quit := make(chan struct{})
	var serr error
	follow := lowprio.Follow()
	go func() {
		follow()
		defer close(sealed)
		serr = safely(c.Path(), func() error {
			w := &groupWriter{c: c, seq: seq, desc: r}
			send := func() bool {
				select {
				case sealed <- w.take():
					return true
				case <-quit:
					return false
				}
			}
			for e := range next {
				if w.add(e); len(w.sealed) == commitGroups {
					if !send() {
						return nil
					}
					c.yield()
				}
			}
			if w.flush(); len(w.sealed) > 0 {
				send()
			}
			return nil
		})
	}()
	// On a failed commit the sealing stops, and has stopped before this
	// returns: it reads the delta's index, which the next writer changes.
	defer func() {
		close(quit)
		for range sealed {
		}
	}()
	for g := range sealed {
		err := c.update(func(tx *bolt.Tx) error { return g.putAll(tx.Bucket(bucketGroups)) })
		if err != nil {
			return err
		}
	}
	return serr
}

// dropRuns deletes the runs every certificate of which expired before
// cut: first from the runs' record (lookups stop reading them), then
// their groups (sweep). It returns the certificates deleted.
//
// A revocation is never dropped while the certificate it revokes is
// still to be decided on: a revocation's record expires with its
// certificate's (a key-less one a day after the revocation, later than
// any certificate issued before it), so the run that holds it outlives,
// or is dropped with, every older record of the certificate that has not
// itself expired before cut; and a certificate expired more than the
// retention ago, which is longer than any exit grace, is refused as
// expired.
func (c *Cache) dropRuns(cut time.Time) (int, error) {
	c.mu.RLock()
	runs, st := c.runs, c.st
	c.mu.RUnlock()
	var keep, drop []*run
	for _, r := range runs {
		if r.MaxNotAfter.Before(cut) {
			drop = append(drop, r)
		} else {
			keep = append(keep, r)
		}
	}
	if len(keep) == 0 && len(drop) > 0 {
		// Every run due: the newest stays whatever the clock says. A
		// clock far ahead would otherwise empty the cache, and the
		// feed's client would not know to fetch it again.
		keep, drop = drop[len(drop)-1:], drop[:len(drop)-1]
	}
	if len(drop) == 0 {
		return 0, nil
	}
	next := st
	next.Runs = metas(keep)
	err := c.update(func(tx *bolt.Tx) error {
		for _, r := range drop {
			if err := tx.Bucket(bucketBlooms).Delete(u64key(r.Seq)); err != nil {
				return err
			}
		}
		return c.writeRuns(tx, &next)
	})
	if err != nil {
		return 0, fmt.Errorf("drop expired runs: %w", err)
	}
	c.mu.Lock()
	c.runs = keep
	c.st = next
	c.mu.Unlock()
	n := 0
	for _, r := range drop {
		n += r.Certs
	}
	return n, nil
}

// sweepChunk bounds the groups one transaction of a sweep deletes.
const sweepChunk = 2000

// sweep deletes the groups of runs the file no longer lists (dropped, or
// left half written by a cut or a full sync that did not finish), but
// not those of the full sync under way.
func (c *Cache) sweep() error {
	c.mu.RLock()
	keep := map[uint64]bool{}
	for _, r := range c.runs {
		keep[r.Seq] = true
	}
	if c.resync != nil {
		for _, rr := range c.resync.Runs {
			keep[rr.Seq] = true
		}
	}
	c.mu.RUnlock()
	for {
		var seq uint64
		found := false
		err := c.view(func(tx *bolt.Tx) error {
			cur := tx.Bucket(bucketGroups).Cursor()
			for k, _ := cur.First(); k != nil; {
				s := binary.BigEndian.Uint64(k)
				if !keep[s] {
					seq, found = s, true
					return nil
				}
				k, _ = cur.Seek(u64key(s + 1))
			}
			return nil
		})
		if err != nil || !found {
			return err
		}
		for more := true; more; {
			err := c.update(func(tx *bolt.Tx) error {
				b := tx.Bucket(bucketGroups)
				cur := b.Cursor()
				var due [][]byte
				k, _ := cur.Seek(u64key(seq))
				for ; k != nil && binary.BigEndian.Uint64(k) == seq && len(due) < sweepChunk; k, _ = cur.Next() {
					due = append(due, bytes.Clone(k))
				}
				more = k != nil && binary.BigEndian.Uint64(k) == seq
				for _, k := range due {
					if err := b.Delete(k); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("delete the groups of run %d: %w", seq, err)
			}
		}
	}
}

func be64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

// sortByID orders the index's entries ids by their IDs: on a copy of each
// ID as two numbers beside the entry's number, so that the sort compares
// in registers and moves 24 bytes, not the slab's entries. The copies are
// first spread by their top 16 bits into as many buckets (spread), then
// each bucket is sorted (pdqsort,
// which sorts a few by insertion): IDs are random (the spec's are
// opaque), so a bucket holds a few and a million sort in about a third
// of a comparison sort's time; IDs that share their top bits cost a
// comparison sort of their bucket, never more. IDs in order already (a
// delta loaded from a full sync's pages) are left as they are.
func sortByID(ids []int, x *index) {
	type key struct {
		hi, lo uint64
		i      int
	}
	keys := make([]key, len(ids))
	ascending := true
	for n, i := range ids {
		id := x.id(i)
		keys[n] = key{binary.BigEndian.Uint64(id), binary.BigEndian.Uint64(id[8:]), i}
		if n > 0 && ascending {
			p := &keys[n-1]
			ascending = p.hi < keys[n].hi || p.hi == keys[n].hi && p.lo < keys[n].lo
		}
	}
	if ascending { // a full sync's order, kept by the delta: sorted already
		return
	}
	keys, ends := spread(keys, func(k *key) uint64 { return k.hi })
	start := int32(0)
	for _, end := range ends {
		if bucket := keys[start:end]; len(bucket) > 1 {
			slices.SortFunc(bucket, func(a, b key) int {
				if a.hi != b.hi {
					return cmp.Compare(a.hi, b.hi)
				}
				return cmp.Compare(a.lo, b.lo)
			})
		}
		start = end
	}
	for n := range keys {
		ids[n] = keys[n].i
	}
}
