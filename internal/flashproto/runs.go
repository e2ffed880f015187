package flashproto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/verify"
)

// RunCerts keeps the certificates in immutable runs cut by time of
// arrival, never merged:
//
//   - the delta (a Log of feed batches, indexed in memory) holds what
//     arrived since the last run was written;
//   - every Window, the delta is written as a new run, run.SEQ.db: a file
//     of packed groups in ID order with a Bloom filter of its IDs, and
//     the delta's segments are released;
//   - a run is deleted whole once every certificate in it expired more
//     than the retention ago: certificates arrive in order of approval
//     and all live 24 h, so a run's certificates expire together, and no
//     expired certificate is ever deleted in place.
//
// A certificate is written twice in its life (the delta, then its run),
// whatever the number of certificates held. A lookup reads the index,
// then the runs from the newest (a revocation written later shadows the
// certificate's older record), testing each run's filter first.
type RunCerts struct {
	*delta
	dir    string
	window time.Duration
	runs   []*run // oldest first
	next   uint64 // the next run's number
	syncs  int64
}

type run struct {
	db   *bolt.DB
	path string
	// tx is a read transaction held for the run's life (nothing writes
	// it): its filter is read in place from the memory map, a page at a
	// time as lookups touch it, never copied.
	tx    *bolt.Tx
	bloom bloom
	meta  runMeta
}

// runMeta is what a run says of itself.
type runMeta struct {
	Seq         uint64          `json:"seq"`
	Covers      uint64          `json:"covers"` // the last delta LSN in this run and those before
	Cursor      uint64          `json:"cursor"`
	Feed        cache.FeedState `json:"feed"`
	Written     time.Time       `json:"written"`       // simulated time
	MaxNotAfter time.Time       `json:"max_not_after"` // when all of it has expired
	Certs       int             `json:"certs"`
}

// OpenRunCerts opens the store in dir: its runs read only (their filters
// read into memory), the delta log replayed into the index.
func OpenRunCerts(dir string, segBytes int64, window time.Duration) (*RunCerts, error) {
	c := &RunCerts{dir: dir, window: window, next: 1}
	names, err := filepath.Glob(filepath.Join(dir, "run.*.db"))
	if err != nil {
		return nil, err
	}
	slices.Sort(names) // fixed-width numbers: in order
	var covers, cursor uint64
	var fs cache.FeedState
	for _, p := range names {
		r, err := openRun(p)
		if err != nil {
			c.closeRuns()
			return nil, err
		}
		c.runs = append(c.runs, r)
		c.next = r.meta.Seq + 1
		covers, cursor, fs = r.meta.Covers, r.meta.Cursor, r.meta.Feed
	}
	if c.delta, err = openDelta(dir, segBytes, covers, cursor, fs); err != nil {
		c.closeRuns()
		return nil, err
	}
	return c, nil
}

func openRun(path string) (*run, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, NoStatistics: true})
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin(false)
	if err != nil {
		db.Close()
		return nil, err
	}
	r := &run{db: db, path: path, tx: tx}
	mb := tx.Bucket(bucketMeta)
	if mb == nil || tx.Bucket(bucketGroups) == nil {
		err = fmt.Errorf("%s: not a run", path)
	} else {
		r.bloom = bloom(mb.Get(keyBloom))
		err = json.Unmarshal(mb.Get(keyMeta), &r.meta)
	}
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

func (r *run) close() error { return errors.Join(r.tx.Rollback(), r.db.Close()) }

func (c *RunCerts) closeRuns() error {
	var errs []error
	for _, r := range c.runs {
		errs = append(errs, r.close())
	}
	c.runs = nil
	return errors.Join(errs...)
}

// record returns what the store holds for id: the index, then the runs
// from the newest.
func (c *RunCerts) record(id verify.CertID) ([recordLen]byte, bool, error) {
	if r, ok := c.idx.get(id[:]); ok {
		return [recordLen]byte(r), true, nil
	}
	for i := len(c.runs) - 1; i >= 0; i-- {
		r := c.runs[i]
		if len(r.bloom) > 0 && !r.bloom.has(id[:]) {
			continue
		}
		if v, ok := lookupGroups(r.tx, id[:]); ok {
			return [recordLen]byte(v), true, nil
		}
	}
	return [recordLen]byte{}, false, nil
}

// Lookup finds a certificate as cache.Cache.Lookup does.
func (c *RunCerts) Lookup(id verify.CertID) (verify.Record, bool, error) {
	rec, ok, err := c.record(id)
	if err != nil || !ok || rec[0]&flagNoKey != 0 {
		return verify.Record{}, false, err
	}
	return decodeRecord(id, rec), true, nil
}

// Apply writes a feed batch into the delta.
func (c *RunCerts) Apply(b *cache.Batch) (skipped bool, err error) { return c.apply(b, c.record) }

// Load writes a full sync as one run, replacing every run before it.
func (c *RunCerts) Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState, now time.Time) error {
	fs.Cursor = cursor
	var maxNA time.Time
	next := func(yield func(id verify.CertID, rec []byte) bool) {
		var r [recordLen]byte
		for certs := range pages {
			for i := range certs {
				putRecord(r[:], &certs[i], 0)
				if certs[i].NotAfter.After(maxNA) {
					maxNA = certs[i].NotAfter
				}
				if !yield(certs[i].ID, r[:]) {
					return
				}
			}
		}
	}
	old := c.runs
	c.runs = nil
	m := runMeta{Covers: c.log.Next() - 1, Cursor: cursor, Feed: fs, Written: now}
	if err := c.writeRun(next, &m, &maxNA, 1<<20); err != nil {
		return err
	}
	for _, r := range old {
		r.close()
		os.Remove(r.path)
	}
	c.idx = newIndex()
	c.cursor, c.fs = cursor, fs
	return c.log.Release(m.Covers)
}

// writeRun writes the entries next yields as the next run and opens it.
func (c *RunCerts) writeRun(next func(yield func(verify.CertID, []byte) bool), m *runMeta, maxNA *time.Time, bloomFor int) error {
	m.Seq = c.next
	path := filepath.Join(c.dir, fmt.Sprintf("run.%020d.db", m.Seq))
	_, syncs, err := writeRun(path, next, func(n int) any { m.Certs, m.MaxNotAfter = n, *maxNA; return m }, bloomFor)
	c.syncs += syncs
	if err != nil {
		return err
	}
	r, err := openRun(path)
	if err != nil {
		return err
	}
	c.runs = append(c.runs, r)
	c.next++
	return nil
}

// Maintain deletes the runs whose certificates all expired more than
// retention ago, and writes the delta as a run when Window has passed
// since the last.
func (c *RunCerts) Maintain(now time.Time, retention time.Duration) error {
	for len(c.runs) > 0 && c.runs[0].meta.MaxNotAfter.Before(now.Add(-retention)) && len(c.runs) > 1 {
		r := c.runs[0]
		c.runs = c.runs[1:]
		if err := errors.Join(r.close(), os.Remove(r.path)); err != nil {
			return err
		}
	}
	last := time.Time{}
	if n := len(c.runs); n > 0 {
		last = c.runs[n-1].meta.Written
	}
	if now.Sub(last) < c.window || c.idx.len() == 0 {
		return nil
	}
	ids := c.idx.each()
	slices.SortFunc(ids, func(a, b int) int { return bytes.Compare(c.idx.id(a), c.idx.id(b)) })
	var maxNA time.Time
	next := func(yield func(id verify.CertID, rec []byte) bool) {
		for _, i := range ids {
			r := decodeRecord(verify.CertID(c.idx.id(i)), [recordLen]byte(c.idx.rec(i)))
			if r.NotAfter.After(maxNA) {
				maxNA = r.NotAfter
			}
			if !yield(r.ID, c.idx.rec(i)) {
				return
			}
		}
	}
	covers := c.log.Next() - 1
	fs := c.fs
	fs.Cursor = c.cursor
	m := runMeta{Covers: covers, Cursor: c.cursor, Feed: fs, Written: now}
	if err := c.writeRun(next, &m, &maxNA, len(ids)); err != nil {
		return err
	}
	c.idx.compact(covers)
	return c.log.Release(covers)
}

// Runs is the number of runs.
func (c *RunCerts) Runs() int { return len(c.runs) }

// Syncs counts the fsyncs of the runs and the delta log.
func (c *RunCerts) Syncs() int64 { return c.syncs + c.log.Stats().Syncs }

// Sizes is the bytes of the runs and of the delta log.
func (c *RunCerts) Sizes() (runs, delta int64) {
	for _, r := range c.runs {
		if fi, err := os.Stat(r.path); err == nil {
			runs += fi.Size()
		}
	}
	return runs, c.log.Stats().Bytes
}

// Close closes the files.
func (c *RunCerts) Close() error { return errors.Join(c.closeRuns(), c.log.Close()) }
