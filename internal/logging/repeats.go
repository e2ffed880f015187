package logging

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Repeats writes the first line of a kind at once and, for the rest of an
// interval, counts the lines of that kind instead of writing them; when
// the interval ends it writes one line with the count (the last line's
// message and attributes, with "repeated"=N and "over"=the interval) and
// starts another interval. An interval with none is the end of the run:
// the next line of that kind is written at once again. So a scanner that
// sends 10,000 garbage lines a second writes about one line per interval,
// and journald's rate limit never drops the lines that matter.
//
// Someone must call Flush when an interval ends: the owner's own timer
// (Next says when; the gate controller does so from its loop), or Repeats'
// timer when made by NewTimedRepeats. A Repeats is safe for concurrent use.
type Repeats struct {
	log   *slog.Logger
	every time.Duration
	now   func() time.Time
	timed bool

	mu     sync.Mutex
	runs   map[string]*run
	timer  *time.Timer
	closed bool
}

type run struct {
	level slog.Level
	msg   string
	args  []any
	n     int       // lines counted, not written, in this interval
	until time.Time // the end of this interval
}

// NewRepeats returns a Repeats on the clock now, whose owner calls Flush.
func NewRepeats(log *slog.Logger, every time.Duration, now func() time.Time) *Repeats {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Repeats{log: log, every: every, now: now, runs: map[string]*run{}}
}

// NewTimedRepeats returns a Repeats that flushes itself on a timer of
// package time (which testing/synctest fakes). Close it when done.
func NewTimedRepeats(log *slog.Logger, every time.Duration) *Repeats {
	r := NewRepeats(log, every, time.Now)
	r.timed = true
	return r
}

// Log writes msg at once when no line of kind key was written in the
// current interval; otherwise it counts it. key names the kind: lines
// that differ in what matters (another error, another reason) should have
// another key.
func (r *Repeats) Log(level slog.Level, key, msg string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		r.log.Log(context.Background(), level, msg, args...)
		return
	}
	if ru, ok := r.runs[key]; ok {
		ru.n++
		ru.level, ru.msg, ru.args = level, msg, slices.Clone(args)
		return
	}
	r.runs[key] = &run{level: level, msg: msg, until: r.now().Add(r.every)}
	r.log.Log(context.Background(), level, msg, args...)
	r.arm()
}

// Flush writes the count of every kind whose interval has ended, and
// returns when the next interval ends (zero when none runs).
func (r *Repeats) Flush() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, key := range r.keys() {
		ru := r.runs[key]
		if now.Before(ru.until) {
			continue
		}
		if ru.n == 0 {
			delete(r.runs, key)
			continue
		}
		r.write(ru)
		ru.n, ru.until = 0, now.Add(r.every)
	}
	return r.next()
}

// End writes the count of kind key now, if any, and ends its run: the
// next line of that kind is written at once (say, before "port open" ends
// a run of "port not available").
func (r *Repeats) End(key string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ru, ok := r.runs[key]; ok {
		if ru.n > 0 {
			r.write(ru)
		}
		delete(r.runs, key)
	}
}

// Next returns when the earliest interval ends (zero when none runs).
func (r *Repeats) Next() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.next()
}

// Close writes every count still pending and stops the timer; later lines
// are written as they come, uncounted.
func (r *Repeats) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, key := range r.keys() {
		if ru := r.runs[key]; ru.n > 0 {
			r.write(ru)
		}
	}
	clear(r.runs)
	if r.timer != nil {
		r.timer.Stop()
	}
	r.closed = true
}

// write writes ru's count. Called with mu held.
func (r *Repeats) write(ru *run) {
	args := append(slices.Clone(ru.args), "repeated", ru.n, "over", r.every)
	r.log.Log(context.Background(), ru.level, ru.msg, args...)
}

// keys returns the kinds in order of their interval's end, so that counts
// come out in the order their runs began.
func (r *Repeats) keys() []string {
	keys := make([]string, 0, len(r.runs))
	for k := range r.runs {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(r.runs[a].until.Compare(r.runs[b].until), cmp.Compare(a, b))
	})
	return keys
}

func (r *Repeats) next() time.Time {
	var next time.Time
	for _, ru := range r.runs {
		if next.IsZero() || ru.until.Before(next) {
			next = ru.until
		}
	}
	return next
}

// arm sets the timer of a timed Repeats for the next interval's end, if
// it is not set. Called with mu held.
func (r *Repeats) arm() {
	if !r.timed || r.closed || r.timer != nil {
		return
	}
	next := r.next()
	if next.IsZero() {
		return
	}
	r.timer = time.AfterFunc(next.Sub(r.now()), r.fire)
}

func (r *Repeats) fire() {
	r.Flush()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.timer = nil
	r.arm()
}
