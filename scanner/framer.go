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

// The terminators a scanner can be set to send after each code, and Auto.
const (
	CR   Terminator = iota + 1 // carriage return, "\r" (most scanners' default)
	LF                         // line feed, "\n"
	CRLF                       // "\r\n"
	// Auto ends a code at a CR, an LF or a CRLF, whichever the scanner
	// sends (the default): a CR or an LF each end a line and the empty
	// line between the two of a CRLF is skipped, so no code starts with
	// the LF. A code can then hold neither byte (a TR1 code never does).
	Auto
)

// ParseTerminator parses "auto", "cr", "lf" or "crlf", in any case.
func ParseTerminator(s string) (Terminator, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "auto":
		return Auto, nil
	case "cr":
		return CR, nil
	case "lf":
		return LF, nil
	case "crlf":
		return CRLF, nil
	}
	return 0, fmt.Errorf("scanner: terminator %q unknown: use auto, cr, lf or crlf (auto takes whichever the scanner sends)", s)
}

// String returns "auto", "cr", "lf" or "crlf" (or "Terminator(N)" for a
// value that is none of them).
func (t Terminator) String() string {
	switch t {
	case Auto:
		return "auto"
	case CR:
		return "cr"
	case LF:
		return "lf"
	case CRLF:
		return "crlf"
	}
	return fmt.Sprintf("Terminator(%d)", uint8(t))
}

func (t Terminator) valid() bool { return t >= CR && t <= Auto }

// Endings counts the line endings a scanner sent, whatever the framing:
// a CR followed by an LF is one CRLF, a CR alone a CR, an LF alone an LF.
// It says which terminator the scanner actually sends.
type Endings struct {
	CR, LF, CRLF uint64
}

// Add returns the sum of e and o.
func (e Endings) Add(o Endings) Endings {
	return Endings{CR: e.CR + o.CR, LF: e.LF + o.LF, CRLF: e.CRLF + o.CRLF}
}

// Total is the number of endings counted.
func (e Endings) Total() uint64 { return e.CR + e.LF + e.CRLF }

// Sent names the terminator the scanner sends: "cr", "lf" or "crlf" when
// every ending counted is of that kind, "mixed" when they differ, and ""
// when none was counted.
func (e Endings) Sent() string {
	kinds := 0
	name := ""
	for _, k := range []struct {
		n    uint64
		name string
	}{{e.CR, "cr"}, {e.LF, "lf"}, {e.CRLF, "crlf"}} {
		if k.n > 0 {
			kinds++
			name = k.name
		}
	}
	switch kinds {
	case 0:
		return ""
	case 1:
		return name
	}
	return "mixed"
}

// Ends reports whether a framer set to t cuts every line at the endings
// counted in e without leaving a terminator's byte in the next line: Auto
// takes any; CR takes CR only, LF only LF, CRLF only CRLF.
func (t Terminator) Ends(e Endings) bool {
	switch t {
	case Auto:
		return true
	case CR:
		return e.LF == 0 && e.CRLF == 0
	case LF:
		return e.CR == 0 && e.CRLF == 0
	case CRLF:
		return e.CR == 0 && e.LF == 0
	}
	return false
}

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
// part of the line. Empty lines (a terminator alone) are skipped. With
// Auto, a CR and an LF each end a line (so a CRLF ends one, and the empty
// line between its two bytes is skipped). A line
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

	endings Endings // the endings counted, but for lastCR
	lastCR  bool    // the last byte fed was a CR: a CR or a CRLF, as the next byte says
}

// NewFramer returns a Framer for lines ended by t, of at most maxLine bytes.
// A maxLine below 1 is taken as 1, and an unknown terminator as Auto
// (Config and ParseTerminator refuse both).
func NewFramer(t Terminator, maxLine int) *Framer {
	if !t.valid() {
		t = Auto
	}
	return &Framer{term: t, max: max(maxLine, 1)}
}

// Pending returns how many bytes of an unterminated line are held (never
// more than maxLine). With CRLF a trailing CR that may start the
// terminator is not counted.
func (f *Framer) Pending() int { return len(f.buf) }

// Endings returns the line endings fed so far (a CR last fed counts as a
// CR until an LF makes it a CRLF).
func (f *Framer) Endings() Endings {
	e := f.endings
	if f.lastCR {
		e.CR++
	}
	return e
}

// count counts the endings in p.
func (f *Framer) count(p []byte) {
	for _, b := range p {
		switch {
		case f.lastCR && b == '\n':
			f.endings.CRLF++
			f.lastCR = false
			continue
		case f.lastCR:
			f.endings.CR++
		}
		f.lastCR = b == '\r'
		if b == '\n' {
			f.endings.LF++
		}
	}
}

// Reset discards the unterminated line, as after the stream was cut.
func (f *Framer) Reset() {
	if f.lastCR {
		f.endings.CR++
		f.lastCR = false
	}
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
	f.count(p)
	if f.term == Auto {
		for {
			i := bytes.IndexAny(p, "\r\n")
			if i < 0 {
				f.absorb(p)
				return
			}
			f.absorb(p[:i])
			f.end(emit)
			p = p[i+1:]
		}
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
