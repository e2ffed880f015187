package churn

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/verify"
)

// Run is one target driven through simulated days.
type Run struct {
	cfg Config
	t   Target
	rnd *rand.Rand
	// Dev, when set, names a block device (as in /sys/block) whose
	// written sectors each day reports too: the device the target's files
	// live on, alone on it (a loop device), for the file system's own
	// writes.
	Dev string

	day      int
	nextK    int64  // the next certificate to issue
	cursor   uint64 // the feed's position: one change per record
	revoked  map[verify.CertID]bool
	appended uint64 // events appended, all kinds
	acked    uint64 // the last sequence number acknowledged
	revDone  int    // revocations sent since the first day began
	grants   int    // grants since the first day began
}

// NewRun prepares a run of cfg on t; Load fills t to steady state.
func NewRun(cfg Config, t Target) *Run {
	return &Run{cfg: cfg, t: t, rnd: rand.New(rand.NewPCG(cfg.Seed, 16)), revoked: map[verify.CertID]bool{}}
}

// PageSize is the number of certificates in one page of the full sync, as
// the issuer serves it.
const PageSize = 16384

// Load writes the certificates a gate holds at steady state as a full
// sync would: every one approved in the Validity + Retention before Start
// (valid ones, and expired ones not yet purged), in ID order.
func (r *Run) Load() error {
	n := r.firstIssuedAfter(Start)
	type ik struct {
		id verify.CertID
		k  int64
	}
	all := make([]ik, n)
	for k := range n {
		all[k] = ik{r.cert(k).ID, k}
	}
	slices.SortFunc(all, func(a, b ik) int { return bytes.Compare(a.id[:], b.id[:]) })
	pages := func(yield func([]verify.Cert) bool) {
		for i := 0; i < len(all); i += PageSize {
			pg := make([]verify.Cert, 0, PageSize)
			for _, x := range all[i:min(len(all), i+PageSize)] {
				pg = append(pg, r.cert(x.k))
			}
			if !yield(pg) {
				return
			}
		}
	}
	r.nextK, r.cursor = n, uint64(n)
	return r.t.Load(pages, r.cursor, feedState(Start))
}

// Op is a kind of operation the harness drives.
type Op int

// The operations, in the order reports list them.
const (
	OpFeed     Op = iota // a feed batch
	OpGrant              // a grant's decision event (fsync before the relay)
	OpPassage            // the passage and the anti-passback state
	OpUpload             // reading the next upload and deleting what was acknowledged
	OpMaintain           // the hourly maintenance
	numOps
)

var opNames = [numOps]string{"feed", "grant", "passage", "upload", "maintain"}

func (o Op) String() string { return opNames[o] }

// OpStats is what one kind of operation did in a day.
type OpStats struct {
	N                      int
	Wchar, WriteBytes, Dev int64
	// Times of each operation, for its percentiles (wall clock, on a
	// machine that may be shared: for information).
	Times []time.Duration
}

// Pct is the p-th quantile of the operation's times.
func (s *OpStats) Pct(p float64) time.Duration {
	if len(s.Times) == 0 {
		return 0
	}
	t := slices.Clone(s.Times)
	slices.Sort(t)
	return t[min(len(t)-1, int(p*float64(len(t))))]
}

// Day is what one simulated day wrote.
type Day struct {
	N          int
	Wchar      int64 // bytes handed to write(2)
	WriteBytes int64 // /proc/self/io write_bytes: folio-granular, see counters
	DevBytes   int64 // sectors written to Run.Dev × 512, when set
	HasDev     bool
	Syncs      int64
	Files      Usage
	Ops        [numOps]OpStats
	Elapsed    time.Duration
	cfg        Config
}

// Written is the figure the goal is judged on: the bytes that reached the
// device when the run has one of its own (file system included), else
// wchar, which equals the device's data bytes for a storage that writes
// whole aligned 4 KB blocks (bbolt's pages, the log's blocks), and leaves
// out the file system's metadata (docs/flash.md).
func (d *Day) Written() int64 {
	if d.HasDev {
		return d.DevBytes
	}
	return d.Wchar
}

// WriteMB is Written in MB (10^6).
func (d *Day) WriteMB() float64 { return float64(d.Written()) / 1e6 }

// XFloor is Written against the floor.
func (d *Day) XFloor() float64 { return float64(d.Written()) / d.cfg.FloorBytes() }

// FileXLive is the certificate files' size at the day's end (the journal
// left out) against the raw bytes of the valid certificates.
func (d *Day) FileXLive() float64 { return float64(d.Files.Certs()) / d.cfg.LiveBytes() }

// FileXHeld is the same against the raw bytes of every certificate the
// gate must still hold (valid, or expired less than Retention ago).
func (d *Day) FileXHeld() float64 {
	held := d.cfg.LiveBytes() * float64(d.cfg.Validity+d.cfg.Retention) / float64(d.cfg.Validity)
	return float64(d.Files.Certs()) / held
}

// String is the day's one line.
func (d *Day) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "day %d: ", d.N)
	if d.HasDev {
		fmt.Fprintf(&b, "device %.1f MB, ", float64(d.DevBytes)/1e6)
	}
	fmt.Fprintf(&b, "wchar %.1f MB, write_bytes %.1f MB, %.1fx floor, %d fsyncs (floor %.0f), certificate files %.1f MB = %.2fx live, %.2fx held (journal %.1f MB)",
		float64(d.Wchar)/1e6, float64(d.WriteBytes)/1e6, d.XFloor(), d.Syncs, d.cfg.FloorSyncs(), float64(d.Files.Certs())/1e6, d.FileXLive(), d.FileXHeld(),
		float64(d.Files.Total()-d.Files.Certs())/1e6)
	b.WriteString("; by op:")
	for o := range numOps {
		s := &d.Ops[o]
		n := s.Wchar
		if d.HasDev {
			n = s.Dev
		}
		fmt.Fprintf(&b, " %s %.1f MB (%d, %.1f KB each)", Op(o), float64(n)/1e6, s.N, float64(n)/1e3/float64(max(1, s.N)))
	}
	f, m := &d.Ops[OpFeed], &d.Ops[OpMaintain]
	g := &d.Ops[OpGrant]
	fmt.Fprintf(&b, "; feed p50/p99 %.1f/%.1f ms, maintain max %.0f ms, grant p99 %.2f ms; %s",
		ms(f.Pct(0.5)), ms(f.Pct(0.99)), ms(m.Pct(1)), ms(g.Pct(0.99)), d.Elapsed.Round(time.Second))
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// event schedule of a day: each stream's first instant after the day's
// start and its period.
type stream struct {
	op     Op
	next   time.Time
	period time.Duration
}

// Day simulates the next day and returns what it wrote.
func (r *Run) Day() (*Day, error) {
	r.day++
	d := &Day{N: r.day, cfg: r.cfg}
	begin := Start.Add(time.Duration(r.day-1) * 24 * time.Hour)
	end := begin.Add(24 * time.Hour)
	grantEvery := 24 * time.Hour / time.Duration(max(1, r.cfg.GrantsPerDay))
	streams := []*stream{
		{OpFeed, begin.Add(r.cfg.BatchEvery), r.cfg.BatchEvery},
		{OpUpload, begin.Add(r.cfg.UploadEvery / 2), r.cfg.UploadEvery},
		{OpMaintain, begin.Add(time.Minute), r.cfg.MaintainEvery},
	}
	if r.cfg.GrantsPerDay > 0 {
		streams = append(streams, &stream{OpGrant, begin.Add(grantEvery / 2), grantEvery})
	}
	io0, err := readIO(r.Dev)
	if err != nil {
		return nil, err
	}
	u0, err := r.t.Usage()
	if err != nil {
		return nil, err
	}
	started := time.Now()
	for {
		s := slices.MinFunc(streams, func(a, b *stream) int { return a.next.Compare(b.next) })
		if !s.next.Before(end) {
			break
		}
		now := s.next
		s.next = s.next.Add(s.period)
		if err := r.step(d, s.op, now); err != nil {
			return d, fmt.Errorf("day %d, %s at %s: %w", r.day, s.op, now.Format(time.TimeOnly), err)
		}
	}
	d.Elapsed = time.Since(started)
	io1, err := readIO(r.Dev)
	if err != nil {
		return nil, err
	}
	w := io1.sub(io0)
	d.Wchar, d.WriteBytes, d.DevBytes, d.HasDev = w.wchar, w.writeBytes, w.dev, r.Dev != ""
	if d.Files, err = r.t.Usage(); err != nil {
		return nil, err
	}
	d.Syncs = d.Files.Syncs - u0.Syncs
	return d, r.check(end)
}

// step runs one operation at now and counts what it wrote.
func (r *Run) step(d *Day, op Op, now time.Time) error {
	var fn func() error
	switch op {
	case OpFeed:
		b := r.batch(now)
		if b == nil {
			return nil // nothing issued since the last poll: the feed has no document
		}
		fn = func() error { return r.t.Apply(b) }
	case OpGrant:
		return r.grant(d, now)
	case OpUpload:
		evs, err := r.t.Events(0, 1)
		if err != nil || len(evs) == 0 {
			return err // nothing to upload: keysync sends nothing
		}
		fn = r.upload
	case OpMaintain:
		fn = func() error { return r.t.Maintain(now, r.cfg.Retention, r.cfg.PassbackWindow) }
	}
	return r.timed(d, op, fn)
}

// timed runs fn and adds its bytes and time to op's figures.
func (r *Run) timed(d *Day, op Op, fn func() error) error {
	a, err := readIO(r.Dev)
	if err != nil {
		return err
	}
	t0 := time.Now()
	err = fn()
	el := time.Since(t0)
	b, ioErr := readIO(r.Dev)
	if err != nil {
		return err
	}
	if ioErr != nil {
		return ioErr
	}
	s := &d.Ops[op]
	s.N++
	w := b.sub(a)
	s.Wchar += w.wchar
	s.WriteBytes += w.writeBytes
	s.Dev += w.dev
	s.Times = append(s.Times, el)
	return nil
}

// batch is the feed batch of the certificates approved since the last one
// (and the day's share of revocations), nil when there is nothing.
func (r *Run) batch(now time.Time) *cache.Batch {
	upto := r.firstIssuedAfter(now)
	b := &cache.Batch{From: r.cursor, Feed: feedState(now)}
	for ; r.nextK < upto; r.nextK++ {
		b.Upserts = append(b.Upserts, r.cert(r.nextK))
	}
	if r.cfg.RevokesPerDay > 0 {
		elapsed := now.Sub(Start)
		due := int(float64(r.cfg.RevokesPerDay) * float64(elapsed) / float64(24*time.Hour))
		for ; r.revDone < due; r.revDone++ {
			c := r.cert(r.validK(now))
			b.Revokes = append(b.Revokes, c.ID)
			r.revoked[c.ID] = true
		}
	}
	n := len(b.Upserts) + len(b.Revokes)
	if n == 0 {
		return nil
	}
	r.cursor += uint64(n)
	b.Next = r.cursor
	return b
}

// validK picks a certificate valid at now (approved within the last
// Validity), at random.
func (r *Run) validK(now time.Time) int64 {
	lo := r.firstIssuedAfter(now.Add(-r.cfg.Validity + time.Second))
	return lo + r.rnd.Int64N(max(1, r.nextK-lo))
}

// grant looks up a valid certificate as the verifier does, records the
// decision, then the passage 2 s later.
func (r *Run) grant(d *Day, now time.Time) error {
	var c verify.Cert
	for {
		c = r.cert(r.validK(now))
		if !r.revoked[c.ID] {
			break
		}
	}
	rec, ok, err := r.t.Lookup(c.ID)
	switch {
	case err != nil:
		return fmt.Errorf("lookup: %w", err)
	case !ok:
		return fmt.Errorf("lookup: certificate %s (valid) not found", c.ID)
	case rec.Key != c.Key || rec.Revoked || !rec.NotAfter.Equal(c.NotAfter):
		return fmt.Errorf("lookup: certificate %s found with another record", c.ID)
	}
	r.grants++
	e := event.Event{Time: now, Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, CertID: c.ID}
	if err := r.timed(d, OpGrant, func() error { _, err := r.t.AppendEvent(e); return err }); err != nil {
		return err
	}
	r.appended++
	p := event.Event{Time: now.Add(2 * time.Second), Kind: event.Passage, Reason: verify.OK, Direction: verify.Entry, CertID: c.ID}
	if err := r.timed(d, OpPassage, func() error { _, err := r.t.RecordPassage(c.ID, verify.Entry, p); return err }); err != nil {
		return err
	}
	r.appended++
	return nil
}

// upload sends the event log as keysync does: batches oldest first, each
// deleted once acknowledged; each event exactly once, in order, no gap.
func (r *Run) upload() error {
	for {
		evs, err := r.t.Events(0, r.cfg.UploadBatch)
		if err != nil {
			return err
		}
		if len(evs) == 0 {
			return nil
		}
		for i, e := range evs {
			if e.Seq != r.acked+uint64(i)+1 {
				return fmt.Errorf("upload: event %d where %d was due: an event lost or sent twice", e.Seq, r.acked+uint64(i)+1)
			}
		}
		last := evs[len(evs)-1].Seq
		if _, err := r.t.DeleteEventsThrough(last); err != nil {
			return err
		}
		r.acked = last
	}
}

// check samples certificates the target must hold at now: 1000 approved
// within Validity + Retention before now, each found with its record
// (revoked ones revoked); and the journal holds every event not acked.
func (r *Run) check(now time.Time) error {
	lo := r.firstIssuedAfter(now.Add(-r.cfg.Validity - r.cfg.Retention + r.cfg.BatchEvery))
	var errs []error
	for range 1000 {
		c := r.cert(lo + r.rnd.Int64N(max(1, r.nextK-lo)))
		rec, ok, err := r.t.Lookup(c.ID)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("lookup %s: %w", c.ID, err))
		case !ok:
			errs = append(errs, fmt.Errorf("certificate %s approved %s, expiring %s, not found", c.ID, c.NotBefore, c.NotAfter))
		case rec.Key != c.Key || rec.Revoked != r.revoked[c.ID]:
			errs = append(errs, fmt.Errorf("certificate %s found with another record (revoked %v)", c.ID, rec.Revoked))
		}
		if len(errs) >= 3 {
			break
		}
	}
	evs, err := r.t.Events(0, int(r.appended-r.acked)+1)
	if err != nil {
		errs = append(errs, err)
	} else if uint64(len(evs)) != r.appended-r.acked {
		errs = append(errs, fmt.Errorf("%d events waiting, want %d (%d appended, %d acknowledged)", len(evs), r.appended-r.acked, r.appended, r.acked))
	}
	return errors.Join(errs...)
}

// Cursor is the feed position the run has reached.
func (r *Run) Cursor() uint64 { return r.cursor }

// Totals is what the whole run has done so far.
func (r *Run) Totals() (grants int, events, acked uint64, revoked int) {
	return r.grants, r.appended, r.acked, len(r.revoked)
}
