package scanner

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// referenceFrames splits data at once with bytes.Split: the pieces between
// terminators, empty ones skipped, the unterminated tail left out (it is
// returned as tail).
func referenceFrames(data []byte, term Terminator, maxLine int) (frames []got, tail []byte) {
	var pieces [][]byte
	if term == Auto {
		// Either byte ends a line: split at CR after turning every LF
		// into one.
		pieces = bytes.Split(bytes.ReplaceAll(data, []byte("\n"), []byte("\r")), []byte("\r"))
	} else {
		sep := map[Terminator][]byte{CR: []byte("\r"), LF: []byte("\n"), CRLF: []byte("\r\n")}[term]
		pieces = bytes.Split(data, sep)
	}
	tail = pieces[len(pieces)-1]
	for _, p := range pieces[:len(pieces)-1] {
		switch {
		case len(p) == 0:
		case len(p) > maxLine:
			frames = append(frames, got{dropped: len(p)})
		default:
			frames = append(frames, got{line: string(p)})
		}
	}
	return frames, tail
}

// referenceEndings counts the endings in data at once: each "\r\n" one
// CRLF, then each CR and LF left one of its kind.
func referenceEndings(data []byte) Endings {
	crlf := bytes.Count(data, []byte("\r\n"))
	return Endings{
		CR:   uint64(bytes.Count(data, []byte("\r")) - crlf),
		LF:   uint64(bytes.Count(data, []byte("\n")) - crlf),
		CRLF: uint64(crlf),
	}
}

// FuzzFramer feeds an arbitrary stream in random chunks and checks the
// frames against the reference splitter, for each terminator.
func FuzzFramer(f *testing.F) {
	f.Add([]byte("TR1:ABC \r"), uint64(0), uint8(0))
	f.Add([]byte("a\r\nb\rc\nd\r\r\n\r\n\n\r"), uint64(1), uint8(3))
	f.Add([]byte("\x00\x00\r\x00\n"), uint64(2), uint8(1))
	f.Add([]byte("0123456789abcdef\r\nshort\r\n"), uint64(3), uint8(7))
	f.Add([]byte("\r\r\r\n\n\n\r\n"), uint64(4), uint8(0))
	f.Add(bytes.Repeat([]byte("x\r"), 100), uint64(5), uint8(1))
	// Auto's cases: a code per ending kind, endings split over reads,
	// empty lines between, a lone LF first.
	f.Add([]byte("TR1:A\rTR1:B\nTR1:C\r\nTR1:D\n\r"), uint64(6), uint8(9))
	f.Add([]byte("\nTR1:X\r\n\r\n\r\r\n\nY"), uint64(7), uint8(4))
	f.Add(bytes.Repeat([]byte("ab\r\n"), 50), uint64(8), uint8(2))
	f.Fuzz(func(t *testing.T, data []byte, seed uint64, ml uint8) {
		maxLine := int(ml%40) + 1
		wantEndings := referenceEndings(data)
		for _, term := range []Terminator{CR, LF, CRLF, Auto} {
			rng := rand.New(rand.NewPCG(seed, uint64(term)))
			fr := NewFramer(term, maxLine)
			var frames []got
			emit := func(x Frame) {
				switch {
				case x.Dropped < 0:
					t.Fatalf("%v: negative Dropped %d", term, x.Dropped)
				case x.Dropped > 0 && x.Line != nil:
					t.Fatalf("%v: frame with both a line and Dropped", term)
				case x.Dropped > 0 && x.Dropped <= maxLine:
					t.Fatalf("%v: dropped %d bytes, not more than maxLine %d", term, x.Dropped, maxLine)
				case x.Dropped == 0 && len(x.Line) == 0:
					t.Fatalf("%v: empty line emitted", term)
				case len(x.Line) > maxLine:
					t.Fatalf("%v: line of %d bytes, more than maxLine %d", term, len(x.Line), maxLine)
				case term == Auto && bytes.IndexAny(x.Line, "\r\n") >= 0,
					term == CR && bytes.IndexByte(x.Line, '\r') >= 0,
					term == LF && bytes.IndexByte(x.Line, '\n') >= 0,
					term == CRLF && bytes.Contains(x.Line, []byte("\r\n")):
					t.Fatalf("%v: line %q holds its terminator", term, x.Line)
				}
				frames = append(frames, got{line: string(x.Line), dropped: x.Dropped})
			}
			for p := data; len(p) > 0; {
				n := min(1+rng.IntN(9), len(p))
				if rng.IntN(4) == 0 {
					n = min(1+rng.IntN(200), len(p))
				}
				fr.Feed(p[:n], emit)
				p = p[n:]
				if fr.Pending() > maxLine {
					t.Fatalf("%v: Pending() = %d, more than maxLine %d", term, fr.Pending(), maxLine)
				}
			}
			want, tail := referenceFrames(data, term, maxLine)
			if len(frames) != len(want) {
				t.Fatalf("%v, maxLine %d: %d frames %v, want %d %v", term, maxLine, len(frames), frames, len(want), want)
			}
			for i := range want {
				if frames[i] != want[i] {
					t.Fatalf("%v, maxLine %d: frame %d is %v, want %v", term, maxLine, i, frames[i], want[i])
				}
			}
			if e := fr.Endings(); e != wantEndings {
				t.Fatalf("%v: endings %+v, want %+v", term, e, wantEndings)
			}
			held := len(tail)
			if term == CRLF && bytes.HasSuffix(tail, []byte("\r")) {
				held-- // a CR that may start the terminator is not held
			}
			if wantPending := min(held, maxLine); fr.Pending() != wantPending {
				t.Fatalf("%v, maxLine %d: Pending() = %d, want %d (tail %q)", term, maxLine, fr.Pending(), wantPending, tail)
			}
		}
	})
}
