package scanner

import (
	"crypto/sha256"
	"time"
)

// DedupSize is how many distinct recent texts a Dedup remembers.
const DedupSize = 8

// Dedup is the repeat window: a scanner sends a code again and again while
// it stays in view, and the gate must act on it once.
//
// Seen reports a text as a repeat when the same text was last read less
// than Window ago. The window runs from the LAST read of the text, so a
// code held in front of the scanner stays suppressed however long it is
// held; it is delivered again only after a pause of at least Window.
//
// Memory is fixed: a Dedup remembers the SHA-256 digests (not the texts,
// which are passengers' credentials) of the DedupSize texts read most
// recently; an older text is forgotten, so with more than DedupSize
// different codes in turn within the window a repeat may get through (the
// gate's own checks, such as anti-passback, still apply to it).
//
// A Dedup is not safe for concurrent use.
type Dedup struct {
	window  time.Duration
	entries [DedupSize]dedupEntry
}

type dedupEntry struct {
	sum  [sha256.Size]byte
	last time.Time
	used bool
}

// NewDedup returns a Dedup with the given window; 0 or less turns it off
// (Seen is then always false).
func NewDedup(window time.Duration) *Dedup { return &Dedup{window: window} }

// Window returns the repeat window.
func (d *Dedup) Window() time.Duration { return d.window }

// Seen records that text was read at now and reports whether it repeats a
// read of the same text less than the window before. A clock that steps
// back counts as within the window.
func (d *Dedup) Seen(text []byte, now time.Time) bool {
	if d == nil || d.window <= 0 {
		return false
	}
	sum := sha256.Sum256(text)
	oldest := 0
	for i := range d.entries {
		e := &d.entries[i]
		if e.used && e.sum == sum {
			repeat := now.Sub(e.last) < d.window
			e.last = now
			return repeat
		}
		if o := &d.entries[oldest]; o.used && (!e.used || e.last.Before(o.last)) {
			oldest = i
		}
	}
	d.entries[oldest] = dedupEntry{sum: sum, last: now, used: true}
	return false
}
