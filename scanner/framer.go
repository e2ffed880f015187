package scanner

import (
	"bytes"
	"fmt"
	"math"
	"strings"
	"time"
)

// Terminator ends a frame on the wire.
type Terminator uint8

// The terminators a scanner can be set to send after each code.
const (
	CR   Terminator = iota + 1 // carriage return, "\r" (most scanners' default)
	LF                         // line feed, "\n"
	CRLF                       // "\r\n"
)

// ParseTerminator parses "cr", "lf" or "crlf", in any case.
func ParseTerminator(s string) (Terminator, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "cr":
		return CR, nil
	case "lf":
		return LF, nil
	case "crlf":
		return CRLF, nil
	}
	return 0, fmt.Errorf("scanner: terminator %q unknown: use cr, lf or crlf (as set in the scanner)", s)
}

// String returns "cr", "lf" or "crlf" (or "Terminator(N)" for a value that
// is none of them).
func (t Terminator) String() string {
	switch t {
	case CR:
		return "cr"
	case LF:
		return "lf"
	case CRLF:
		return "crlf"
	}
	return fmt.Sprintf("Terminator(%d)", uint8(t))
}

func (t Terminator) valid() bool { return t >= CR && t <= CRLF }

// Frame is one frame cut from the stream by a Framer: a line, or the
// length of a line too long to keep.
type Frame struct {
	// Line is the line without its terminator. It aliases the Framer's
	// buffer: it is valid only during the emit call. Nil when Dropped > 0.
	Line []byte
	// Dropped is the length of an over-long line (longer than maxLine
	// bytes, terminator not counted), which was discarded; 0 for a line.
	Dropped int
	// Began is the time given to the FeedAt call that brought the
	// frame's first byte (zero for bytes given to Feed). A line split
	// over several reads began with the first of them.
	Began time.Time
}

// Framer splits a byte stream into lines bounded in length.
//
// Only the terminator is stripped: spaces, NULs and every other byte are
// part of the line. Empty lines (a terminator alone) are skipped. A line
// longer than maxLine bytes is not kept: only its length is counted, and it
// is reported once, as a Frame with Dropped set, when its terminator
// arrives. The Framer never holds more than maxLine bytes, whatever it is
// fed.
//
// With CRLF a line ends at "\r\n", even when the CR and the LF arrive in
// different Feed calls; a CR not followed by LF, and an LF not preceded by
// CR, are part of the line.
//
// A Framer is not safe for concurrent use.
type Framer struct {
	term    Terminator
	max     int
	buf     []byte // the first min(n, max) bytes of the current line
	n       int    // the current line's length so far (saturates at math.MaxInt)
	pending bool   // CRLF: the last byte fed was a CR, not yet known to be content

	at    time.Time // the current FeedAt call's time
	began time.Time // when the current line's first byte was fed
	crAt  time.Time // when the pending CR was fed
}

// NewFramer returns a Framer for lines ended by t, of at most maxLine bytes.
// A maxLine below 1 is taken as 1, and an unknown terminator as CR (Config
// and ParseTerminator refuse both).
func NewFramer(t Terminator, maxLine int) *Framer {
	if !t.valid() {
		t = CR
	}
	return &Framer{term: t, max: max(maxLine, 1)}
}

// Pending returns how many bytes of an unterminated line are held (never
// more than maxLine). With CRLF a trailing CR that may start the
// terminator is not counted.
func (f *Framer) Pending() int { return len(f.buf) }

// Reset discards the unterminated line, as after the stream was cut.
func (f *Framer) Reset() {
	f.buf, f.n, f.pending = f.buf[:0], 0, false
	f.began, f.crAt = time.Time{}, time.Time{}
}

// Feed consumes p and calls emit for each complete frame, in order.
// A nil emit discards the frames.
func (f *Framer) Feed(p []byte, emit func(Frame)) { f.FeedAt(p, time.Time{}, emit) }

// FeedAt is Feed for bytes that arrived at time at (when the read that
// brought them returned): each frame's Began is the at of the call that
// brought its first byte.
func (f *Framer) FeedAt(p []byte, at time.Time, emit func(Frame)) {
	f.at = at
	if emit == nil {
		emit = func(Frame) {}
	}
	if f.term != CRLF {
		sep := byte('\r')
		if f.term == LF {
			sep = '\n'
		}
		for {
			i := bytes.IndexByte(p, sep)
			if i < 0 {
				f.absorb(p)
				return
			}
			f.absorb(p[:i])
			f.end(emit)
			p = p[i+1:]
		}
	}
	if f.pending && len(p) > 0 {
		f.pending = false
		if p[0] == '\n' {
			f.end(emit)
			p = p[1:]
		} else {
			// The CR was content, fed with the previous chunk (the
			// line began then, if with it); p[0] is handled below.
			f.absorbAt(cr, f.crAt)
		}
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\r')
		if i < 0 {
			f.absorb(p)
			return
		}
		f.absorb(p[:i])
		switch {
		case i+1 == len(p): // the CR ends this chunk: wait for the next one
			f.pending, f.crAt = true, f.at
			return
		case p[i+1] == '\n':
			f.end(emit)
			p = p[i+2:]
		default: // a lone CR is content
			f.absorb(cr)
			p = p[i+1:]
		}
	}
}

var cr = []byte{'\r'}

// absorb adds b, fed now, to the current line.
func (f *Framer) absorb(b []byte) { f.absorbAt(b, f.at) }

// absorbAt adds b, fed at at, to the current line, keeping at most max
// bytes of it.
func (f *Framer) absorbAt(b []byte, at time.Time) {
	if len(b) == 0 {
		return
	}
	if f.n == 0 {
		f.began = at
	}
	if room := f.max - len(f.buf); room > 0 {
		f.buf = append(f.buf, b[:min(room, len(b))]...)
	}
	if f.n > math.MaxInt-len(b) {
		f.n = math.MaxInt
	} else {
		f.n += len(b)
	}
}

// end closes the current line at its terminator.
func (f *Framer) end(emit func(Frame)) {
	n, began := f.n, f.began
	line := f.buf[:len(f.buf):len(f.buf)]
	f.buf, f.n, f.began = f.buf[:0], 0, time.Time{}
	switch {
	case n == 0:
		return
	case n > f.max:
		emit(Frame{Dropped: n, Began: began})
	default:
		emit(Frame{Line: line, Began: began})
	}
}
