package churn

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/internal/flashproto"
	"gateagent/verify"
)

// The candidate designs of docs/flash.md, as targets: prototypes from
// internal/flashproto, used by nothing in production.

// Segment sizes of the prototypes' logs: the journal's holds about 500
// grants and their passages, the delta's about 1,000 feed batches.
const (
	journalSegment = 4 << 20
	deltaSegment   = 8 << 20
)

// Delta is a candidate: the journal as a log (flashproto.LogJournal), the
// certificates as a delta log indexed in memory over files written in ID
// order: one base rebuilt every period (flashproto.DeltaCerts), or runs
// written every window and deleted whole (flashproto.RunCerts).
type Delta struct {
	j *flashproto.LogJournal
	c CertStore
}

// CertStore is a candidate's certificate store.
type CertStore interface {
	Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState, now time.Time) error
	Apply(b *cache.Batch) (skipped bool, err error)
	Lookup(id verify.CertID) (verify.Record, bool, error)
	Maintain(now time.Time, retention time.Duration) error
	Syncs() int64
	Sizes() (files, delta int64)
	Close() error
}

// OpenDelta opens (creating) the candidate with a base rebuilt every
// period in dir.
func OpenDelta(dir string, period time.Duration) (*Delta, error) {
	return openCandidate(dir, func() (CertStore, error) { return flashproto.OpenDeltaCerts(dir, deltaSegment, period) })
}

// OpenRuns opens (creating) the candidate with a run written every window
// in dir.
func OpenRuns(dir string, window time.Duration) (*Delta, error) {
	return openCandidate(dir, func() (CertStore, error) { return flashproto.OpenRunCerts(dir, deltaSegment, window) })
}

func openCandidate(dir string, certs func() (CertStore, error)) (*Delta, error) {
	j, err := flashproto.OpenLogJournal(dir, journalSegment)
	if err != nil {
		return nil, err
	}
	c, err := certs()
	if err != nil {
		j.Close()
		return nil, err
	}
	return &Delta{j: j, c: c}, nil
}

// Certs is the certificate store, Journal the journal, for benchmarks that
// drive each from a goroutine of its own.
func (t *Delta) Certs() CertStore { return t.c }

func (t *Delta) Journal() *flashproto.LogJournal { return t.j }

func (t *Delta) Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState) error {
	return t.c.Load(pages, cursor, fs, fs.SyncedAt)
}

func (t *Delta) Apply(b *cache.Batch) error {
	skipped, err := t.c.Apply(b)
	if err == nil && skipped {
		return errors.New("batch skipped")
	}
	return err
}

func (t *Delta) Lookup(id verify.CertID) (verify.Record, bool, error) {
	r, ok, err := t.c.Lookup(id)
	if ok {
		r.LastPass, _ = t.j.LastPass(&id, verify.Entry)
	}
	return r, ok, err
}

func (t *Delta) AppendEvent(e event.Event) (uint64, error) { return t.j.AppendEvent(e) }

func (t *Delta) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	return t.j.RecordPassage(id, dir, e)
}

func (t *Delta) Events(after uint64, max int) ([]event.Event, error) { return t.j.Events(after, max) }

func (t *Delta) DeleteEventsThrough(seq uint64) (int, error) { return t.j.DeleteEventsThrough(seq) }

func (t *Delta) Maintain(now time.Time, retention, window time.Duration) error {
	if _, err := t.j.PurgePassages(now, window); err != nil {
		return err
	}
	return t.c.Maintain(now, retention)
}

func (t *Delta) Usage() (Usage, error) {
	files, delta := t.c.Sizes()
	return Usage{
		FileBytes: map[string]int64{"certs": files, "delta": delta, "journal": t.j.Size()},
		Syncs:     t.c.Syncs() + t.j.Syncs(),
	}, nil
}

func (t *Delta) Close() error { return errors.Join(t.j.Close(), t.c.Close()) }

// LogJournal is today's certificate cache with the journal as a log: what
// the journal alone changes.
type LogJournal struct {
	c *cache.Cache
	f *boltFile
	j *flashproto.LogJournal
}

// OpenLogJournal opens (creating) cache.db and the journal log in dir.
func OpenLogJournal(dir string) (*LogJournal, error) {
	c, err := cache.Open(filepath.Join(dir, "cache.db"), &cache.Options{Key: cacheKey})
	if err != nil {
		return nil, err
	}
	f, err := newBoltFile(c.Path())
	if err != nil {
		c.Close()
		return nil, err
	}
	j, err := flashproto.OpenLogJournal(dir, journalSegment)
	if err != nil {
		c.Close()
		return nil, err
	}
	return &LogJournal{c: c, f: f, j: j}, nil
}

func (t *LogJournal) Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState) error {
	tt := &Today{store: &cache.Store{Cache: t.c}, files: []*boltFile{t.f}}
	return tt.Load(pages, cursor, fs)
}

func (t *LogJournal) Apply(b *cache.Batch) error {
	res, err := t.c.Apply(b)
	if err == nil && res.Skipped {
		err = errors.New("batch skipped")
	}
	return join(err, t.f.observe())
}

func (t *LogJournal) Lookup(id verify.CertID) (verify.Record, bool, error) {
	return t.c.Lookup(id, verify.Entry)
}

func (t *LogJournal) AppendEvent(e event.Event) (uint64, error) { return t.j.AppendEvent(e) }

func (t *LogJournal) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	return t.j.RecordPassage(id, dir, e)
}

func (t *LogJournal) Events(after uint64, max int) ([]event.Event, error) {
	return t.j.Events(after, max)
}

func (t *LogJournal) DeleteEventsThrough(seq uint64) (int, error) {
	return t.j.DeleteEventsThrough(seq)
}

func (t *LogJournal) Maintain(now time.Time, retention, window time.Duration) error {
	if _, err := t.j.PurgePassages(now, window); err != nil {
		return err
	}
	_, err := t.c.Purge(now, retention)
	return join(err, t.f.observe())
}

func (t *LogJournal) Usage() (Usage, error) {
	fi, err := os.Stat(t.c.Path())
	if err != nil {
		return Usage{}, err
	}
	return Usage{FileBytes: map[string]int64{"cache.db": fi.Size(), "journal": t.j.Size()}, Syncs: t.f.syncs + t.j.Syncs()}, nil
}

func (t *LogJournal) Close() error { return errors.Join(t.j.Close(), t.c.Close()) }

// Bolt is flashproto.BoltStore as a target: today's transactions on bbolt
// files opened with other options, or with a rebuild instead of the purge.
type Bolt struct {
	s     *flashproto.BoltStore
	files []*boltFile
}

// OpenBolt opens (creating) the replica's files in dir.
func OpenBolt(dir string, o flashproto.BoltOptions) (*Bolt, error) {
	s, err := flashproto.OpenBoltStore(dir, o)
	if err != nil {
		return nil, err
	}
	t := &Bolt{s: s}
	for _, p := range s.Paths() {
		f, err := newBoltFile(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		t.files = append(t.files, f)
	}
	return t, nil
}

func (t *Bolt) observe() error {
	for _, f := range t.files {
		if err := f.observe(); err != nil {
			return err
		}
	}
	return nil
}

func (t *Bolt) Load(pages func(yield func([]verify.Cert) bool), cursor uint64, fs cache.FeedState) error {
	for certs := range pages {
		if err := t.s.LoadPage(certs, cursor, fs, false); err != nil {
			return err
		}
		if err := t.observe(); err != nil {
			return err
		}
	}
	return join(t.s.LoadPage(nil, cursor, fs, true), t.observe())
}

func (t *Bolt) Apply(b *cache.Batch) error { return join(t.s.Apply(b), t.observe()) }

func (t *Bolt) Lookup(id verify.CertID) (verify.Record, bool, error) { return t.s.Lookup(id) }

func (t *Bolt) AppendEvent(e event.Event) (uint64, error) {
	seq, err := t.s.AppendEvent(e)
	return seq, join(err, t.observe())
}

func (t *Bolt) RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error) {
	seq, err := t.s.RecordPassage(id, dir, e)
	return seq, join(err, t.observe())
}

func (t *Bolt) Events(after uint64, max int) ([]event.Event, error) { return t.s.Events(after, max) }

func (t *Bolt) DeleteEventsThrough(seq uint64) (int, error) {
	n, err := t.s.DeleteEventsThrough(seq)
	return n, join(err, t.observe())
}

func (t *Bolt) Maintain(now time.Time, retention, window time.Duration) error {
	return join(t.s.Maintain(now, retention, window), t.observe())
}

func (t *Bolt) Usage() (Usage, error) {
	u := Usage{FileBytes: map[string]int64{}, Syncs: t.s.RebuildSyncs}
	for _, f := range t.files {
		fi, err := os.Stat(f.path)
		if err != nil {
			return u, err
		}
		u.FileBytes[filepath.Base(f.path)] = fi.Size()
		u.Syncs += f.syncs
	}
	return u, nil
}

func (t *Bolt) Close() error { return t.s.Close() }
