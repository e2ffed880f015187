package wear

import (
	"sync"
	"time"
)

// MinElapsed is the least time a projection is made from.
const MinElapsed = 10 * time.Minute

// DefaultEvery is how often the agent samples the counters: the last 24 hours
// are measured from the newest sample at least a day old, so they cover
// 24 h to 24 h + DefaultEvery.
const DefaultEvery = 15 * time.Minute

// Rate is what the process wrote since the meter started, and in the last
// 24 hours once it has run that long.
type Rate struct {
	Since   time.Time     `json:"since"`
	At      time.Time     `json:"at"`
	Elapsed time.Duration `json:"-"`
	// Total is the counters now (since the process started); Written is
	// what was written since the meter started.
	Total   Counters `json:"total"`
	Written Counters `json:"written"`
	// Last24h is what was written over Window (24 h or a little more),
	// once the meter has run a day; nil before.
	Last24h *Counters     `json:"last_24h,omitempty"`
	Window  time.Duration `json:"-"`
}

// perDay projects n bytes written over d to a day.
func perDay(n uint64, d time.Duration) float64 {
	return float64(n) * float64(Day) / float64(d)
}

// Projected is the bytes a day the rate projects, by counter c (WChar
// judged, WriteBytes beside it; see the package doc): the last 24 hours
// once known, else the time since start, and false before MinElapsed.
func (r Rate) Projected(c func(Counters) uint64) (float64, bool) {
	if r.Last24h != nil && r.Window > 0 {
		return perDay(c(*r.Last24h), r.Window), true
	}
	if r.Elapsed < MinElapsed {
		return 0, false
	}
	return perDay(c(r.Written), r.Elapsed), true
}

// PerDay is the projected WChar a day (the figure judged).
func (r Rate) PerDay() (float64, bool) { return r.Projected(WChar) }

// WChar and WriteBytes pick a counter for Rate.Projected.
func WChar(c Counters) uint64      { return c.WChar }
func WriteBytes(c Counters) uint64 { return c.WriteBytes }

type sample struct {
	at time.Time
	c  Counters
}

// Meter measures the process's write rate over real elapsed time. Its
// methods are safe for concurrent use.
type Meter struct {
	read func() (Counters, error)
	now  func() time.Time

	mu      sync.Mutex
	start   sample
	started bool
	err     error    // the start's read, while no start
	samples []sample // oldest first; the oldest at most a day before the second
}

// NewMeter starts a meter on read (ReadSelf) and now (time.Now: its
// monotonic reading keeps the elapsed time right across clock steps). A
// first read that fails is retried at each Sample and Rate: the meter
// then counts from the first read that succeeds.
func NewMeter(read func() (Counters, error), now func() time.Time) *Meter {
	m := &Meter{read: read, now: now}
	m.mu.Lock()
	m.begin()
	m.mu.Unlock()
	return m
}

// begin takes the start sample if there is none; m.mu held.
func (m *Meter) begin() bool {
	if m.started {
		return true
	}
	c, err := m.read()
	if err != nil {
		m.err = err
		return false
	}
	m.start, m.started, m.err = sample{m.now(), c}, true, nil
	m.samples = append(m.samples[:0], m.start)
	return true
}

// Sample reads the counters and keeps them for the last 24 hours' figure.
func (m *Meter) Sample() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.begin() {
		return m.err
	}
	c, err := m.read()
	if err != nil {
		return err
	}
	s := sample{m.now(), c}
	m.samples = append(m.samples, s)
	// Keep one sample at least a day old: drop the oldest while the next
	// one is a day old too.
	i := 0
	for i+1 < len(m.samples) && s.at.Sub(m.samples[i+1].at) >= Day {
		i++
	}
	m.samples = append(m.samples[:0], m.samples[i:]...)
	return nil
}

// Rate reads the counters now and returns the rate.
func (m *Meter) Rate() (Rate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.begin() {
		return Rate{}, m.err
	}
	c, err := m.read()
	if err != nil {
		return Rate{}, err
	}
	now := m.now()
	r := Rate{Since: m.start.at, At: now, Elapsed: now.Sub(m.start.at), Total: c, Written: c.Sub(m.start.c)}
	// The newest sample at least a day old.
	for i := len(m.samples) - 1; i >= 0; i-- {
		if d := now.Sub(m.samples[i].at); d >= Day {
			w := c.Sub(m.samples[i].c)
			r.Last24h, r.Window = &w, d
			break
		}
	}
	return r, nil
}
