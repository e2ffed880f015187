package scanner

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// got is a frame as a test sees it: a line, or a dropped length.
type got struct {
	line    string
	dropped int
}

func (g got) String() string {
	if g.dropped > 0 {
		return fmt.Sprintf("<dropped %d>", g.dropped)
	}
	return fmt.Sprintf("%q", g.line)
}

func feedAll(f *Framer, chunks ...[]byte) []got {
	var out []got
	for _, c := range chunks {
		f.Feed(c, func(fr Frame) {
			if fr.Dropped > 0 && fr.Line != nil {
				panic("frame with both a line and a dropped length")
			}
			out = append(out, got{line: string(fr.Line), dropped: fr.Dropped})
		})
	}
	return out
}

func TestParseTerminator(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Terminator
	}{{"auto", Auto}, {"AUTO", Auto}, {"cr", CR}, {"CR", CR}, {"lf", LF}, {"Lf", LF}, {"crlf", CRLF}, {"CRLF", CRLF}} {
		got, err := ParseTerminator(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseTerminator(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if got.String() != strings.ToLower(tc.in) {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), strings.ToLower(tc.in))
		}
	}
	for _, in := range []string{"", "\\r", "cr lf", "nul", "lfcr"} {
		_, err := ParseTerminator(in)
		if err == nil {
			t.Errorf("ParseTerminator(%q) accepted", in)
			continue
		}
		if !strings.Contains(err.Error(), "auto, cr, lf or crlf") {
			t.Errorf("ParseTerminator(%q) error %q does not list the accepted values", in, err)
		}
	}
	if s := Terminator(9).String(); s != "Terminator(9)" {
		t.Errorf("Terminator(9).String() = %q", s)
	}
}

func TestFramer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		term    Terminator
		max     int
		chunks  []string
		want    []got
		pending int
	}{
		{"cr", CR, 512, []string{"TR1:ABC\r"}, []got{{line: "TR1:ABC"}}, 0},
		{"lf", LF, 512, []string{"a\nb\n"}, []got{{line: "a"}, {line: "b"}}, 0},
		{"crlf", CRLF, 512, []string{"a\r\nb\r\n"}, []got{{line: "a"}, {line: "b"}}, 0},
		{"trailing spaces kept", CR, 512, []string{"TR1:ABC  \r"}, []got{{line: "TR1:ABC  "}}, 0},
		{"leading spaces and tabs kept", LF, 512, []string{" \tX \n"}, []got{{line: " \tX "}}, 0},
		{"NUL bytes kept", CR, 512, []string{"\x00TR1\x00:\x00\r"}, []got{{line: "\x00TR1\x00:\x00"}}, 0},
		{"high bytes kept", CR, 512, []string{"\xff\xfe\x80\r"}, []got{{line: "\xff\xfe\x80"}}, 0},
		{"empty lines skipped cr", CR, 512, []string{"\r\r\rA\r\r"}, []got{{line: "A"}}, 0},
		{"empty lines skipped lf", LF, 512, []string{"\n\nA\n\n"}, []got{{line: "A"}}, 0},
		{"empty lines skipped crlf", CRLF, 512, []string{"\r\n\r\nA\r\n\r\n"}, []got{{line: "A"}}, 0},
		{"cr split from its line", CR, 512, []string{"TR1:", "ABC", "\r"}, []got{{line: "TR1:ABC"}}, 0},
		{"crlf split between cr and lf", CRLF, 512, []string{"ab\r", "\ncd\r\n"}, []got{{line: "ab"}, {line: "cd"}}, 0},
		{"crlf split, each alone", CRLF, 512, []string{"ab", "\r", "\n"}, []got{{line: "ab"}}, 0},
		{"crlf lone cr at chunk end is content", CRLF, 512, []string{"ab\r", "x\r\n"}, []got{{line: "ab\rx"}}, 0},
		{"crlf lone cr inside is content", CRLF, 512, []string{"a\rb\r\n"}, []got{{line: "a\rb"}}, 0},
		{"crlf cr before crlf is content", CRLF, 512, []string{"\r\r\n"}, []got{{line: "\r"}}, 0},
		{"crlf lone lf is content", CRLF, 512, []string{"a\nb\r\n"}, []got{{line: "a\nb"}}, 0},
		{"lf keeps a cr", LF, 512, []string{"a\r\n"}, []got{{line: "a\r"}}, 0},
		{"cr keeps an lf", CR, 512, []string{"a\r\nb\r"}, []got{{line: "a"}, {line: "\nb"}}, 0},
		{"exactly max", CR, 5, []string{"12345\r"}, []got{{line: "12345"}}, 0},
		{"over-long dropped, next intact", CR, 5, []string{"123456\rABC\r"}, []got{{dropped: 6}, {line: "ABC"}}, 0},
		{"over-long across chunks", CR, 5, []string{"123", "456", "7\rok\r"}, []got{{dropped: 7}, {line: "ok"}}, 0},
		{"over-long reported once", LF, 2, []string{"abcdef", "ghij", "\n"}, []got{{dropped: 10}}, 0},
		{"crlf terminator not counted", CRLF, 3, []string{"abc\r", "\n"}, []got{{line: "abc"}}, 0},
		{"crlf lone cr counted", CRLF, 3, []string{"abc\r", "d\r\n"}, []got{{dropped: 5}}, 0},
		{"tail held", CR, 512, []string{"A\rtail"}, []got{{line: "A"}}, 4},
		{"tail held up to max", CR, 3, []string{"A\rtail"}, []got{{line: "A"}}, 3},
		{"crlf tail cr not held", CRLF, 512, []string{"ab\r"}, nil, 2},
		{"nothing", CR, 512, []string{""}, nil, 0},
		{"auto cr", Auto, 512, []string{"a\rb\r"}, []got{{line: "a"}, {line: "b"}}, 0},
		{"auto lf", Auto, 512, []string{"a\nb\n"}, []got{{line: "a"}, {line: "b"}}, 0},
		{"auto crlf", Auto, 512, []string{"a\r\nb\r\n"}, []got{{line: "a"}, {line: "b"}}, 0},
		{"auto crlf split between cr and lf", Auto, 512, []string{"a\r", "\nb\r", "\n"}, []got{{line: "a"}, {line: "b"}}, 0},
		{"auto mixed", Auto, 512, []string{"a\rb\nc\r\nd\n\re\r"}, []got{{line: "a"}, {line: "b"}, {line: "c"}, {line: "d"}, {line: "e"}}, 0},
		{"auto empty lines skipped", Auto, 512, []string{"\r\n\r\n\n\rA\r\n\r\n"}, []got{{line: "A"}}, 0},
		{"auto code ends at its cr, not waiting for the lf", Auto, 512, []string{"TR1:X\r"}, []got{{line: "TR1:X"}}, 0},
		{"auto over-long dropped", Auto, 3, []string{"abcd\r\nok\n"}, []got{{dropped: 4}, {line: "ok"}}, 0},
		{"auto tail held", Auto, 512, []string{"A\r\ntail"}, []got{{line: "A"}}, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var chunks [][]byte
			for _, c := range tc.chunks {
				chunks = append(chunks, []byte(c))
			}
			f := NewFramer(tc.term, tc.max)
			out := feedAll(f, chunks...)
			if fmt.Sprint(out) != fmt.Sprint(tc.want) {
				t.Errorf("frames %v, want %v", out, tc.want)
			}
			if f.Pending() != tc.pending {
				t.Errorf("Pending() = %d, want %d", f.Pending(), tc.pending)
			}
			// The same bytes one at a time, and all at once, give the
			// same frames.
			all := []byte(strings.Join(tc.chunks, ""))
			var bytewise [][]byte
			for i := range all {
				bytewise = append(bytewise, all[i:i+1])
			}
			if out := feedAll(NewFramer(tc.term, tc.max), bytewise...); fmt.Sprint(out) != fmt.Sprint(tc.want) {
				t.Errorf("fed byte by byte: frames %v, want %v", out, tc.want)
			}
			if out := feedAll(NewFramer(tc.term, tc.max), all); fmt.Sprint(out) != fmt.Sprint(tc.want) {
				t.Errorf("fed at once: frames %v, want %v", out, tc.want)
			}
		})
	}
}

// TestFramerEndings: the endings the scanner sends are counted whatever
// the framing, a CRLF split over two reads as one CRLF.
func TestFramerEndings(t *testing.T) {
	for _, tc := range []struct {
		chunks []string
		want   Endings
		sent   string
	}{
		{[]string{"a\rb\r"}, Endings{CR: 2}, "cr"},
		{[]string{"a\nb\n"}, Endings{LF: 2}, "lf"},
		{[]string{"a\r\nb\r", "\n"}, Endings{CRLF: 2}, "crlf"},
		{[]string{"a\r\nb\rc\n"}, Endings{CR: 1, LF: 1, CRLF: 1}, "mixed"},
		{[]string{"\r\r\n\n\r"}, Endings{CR: 2, LF: 1, CRLF: 1}, "mixed"},
		{[]string{"no ending"}, Endings{}, ""},
	} {
		for _, term := range []Terminator{Auto, CR, LF, CRLF} {
			f := NewFramer(term, 512)
			for _, c := range tc.chunks {
				f.Feed([]byte(c), nil)
			}
			if got := f.Endings(); got != tc.want || got.Sent() != tc.sent {
				t.Errorf("%v %q: endings %+v (%q), want %+v (%q)", term, tc.chunks, got, got.Sent(), tc.want, tc.sent)
			}
		}
	}
	// A CR last fed counts as a CR until an LF follows.
	f := NewFramer(Auto, 512)
	f.Feed([]byte("a\r"), nil)
	if e := f.Endings(); e != (Endings{CR: 1}) {
		t.Fatalf("after a\\r: %+v, want one CR", e)
	}
	f.Feed([]byte("\n"), nil)
	if e := f.Endings(); e != (Endings{CRLF: 1}) {
		t.Fatalf("after the LF: %+v, want one CRLF", e)
	}
}

func TestTerminatorEnds(t *testing.T) {
	cr, lf, crlf, mixed := Endings{CR: 3}, Endings{LF: 3}, Endings{CRLF: 3}, Endings{CR: 1, CRLF: 1}
	for _, tc := range []struct {
		term Terminator
		e    Endings
		want bool
	}{
		{Auto, cr, true}, {Auto, lf, true}, {Auto, crlf, true}, {Auto, mixed, true},
		{CR, cr, true}, {CR, crlf, false}, {CR, lf, false},
		{LF, lf, true}, {LF, crlf, false},
		{CRLF, crlf, true}, {CRLF, cr, false}, {CRLF, mixed, false},
		{CR, Endings{}, true},
	} {
		if got := tc.term.Ends(tc.e); got != tc.want {
			t.Errorf("%v.Ends(%+v) = %v, want %v", tc.term, tc.e, got, tc.want)
		}
	}
}

// TestFramerBounded feeds 1 MB without a terminator in random-size chunks:
// the Framer never holds more than maxLine bytes, then reports the line
// once with its full length and delivers the next line intact.
func TestFramerBounded(t *testing.T) {
	for _, term := range []Terminator{CR, LF, CRLF, Auto} {
		t.Run(term.String(), func(t *testing.T) {
			const maxLine = 512
			rng := rand.New(rand.NewPCG(1, uint64(term)))
			f := NewFramer(term, maxLine)
			big := make([]byte, 1<<20)
			for i := range big {
				big[i] = byte('A' + rng.IntN(26)) // no terminator byte
			}
			var frames []got
			emit := func(fr Frame) { frames = append(frames, got{line: string(fr.Line), dropped: fr.Dropped}) }
			for p := big; len(p) > 0; {
				n := min(1+rng.IntN(8192), len(p))
				f.Feed(p[:n], emit)
				p = p[n:]
				if f.Pending() > maxLine {
					t.Fatalf("Pending() = %d after %d bytes, more than maxLine %d", f.Pending(), len(big)-len(p), maxLine)
				}
				if c := cap(f.buf); c > 2*maxLine {
					t.Fatalf("buffer capacity %d, want at most %d", c, 2*maxLine)
				}
			}
			if len(frames) != 0 {
				t.Fatalf("frames %v before any terminator", frames)
			}
			end := map[Terminator]string{CR: "\r", LF: "\n", CRLF: "\r\n", Auto: "\r\n"}[term]
			f.Feed([]byte(end+"TR1:OK "+end), emit)
			want := []got{{dropped: len(big)}, {line: "TR1:OK "}}
			if fmt.Sprint(frames) != fmt.Sprint(want) {
				t.Fatalf("frames %v, want %v", frames, want)
			}
			if f.Pending() != 0 {
				t.Fatalf("Pending() = %d after the last terminator", f.Pending())
			}
		})
	}
}

func TestFramerOddArguments(t *testing.T) {
	f := NewFramer(Terminator(0), 0) // taken as CR, 1 byte
	out := feedAll(f, []byte("a\rbc\r"))
	if want := []got{{line: "a"}, {dropped: 2}}; fmt.Sprint(out) != fmt.Sprint(want) {
		t.Fatalf("frames %v, want %v", out, want)
	}
	f.Feed([]byte("x\r"), nil) // a nil emit discards
	f.Feed([]byte("tail"), func(Frame) {})
	f.Reset()
	if f.Pending() != 0 {
		t.Fatalf("Pending() = %d after Reset", f.Pending())
	}
	if out := feedAll(f, []byte("\rz\r")); fmt.Sprint(out) != fmt.Sprint([]got{{line: "z"}}) {
		t.Fatalf("after Reset: frames %v, want z alone", out)
	}
}

func TestFramerLineIsTheFramersBuffer(t *testing.T) {
	// Line is only valid during the call: a caller that keeps it must
	// copy it, as Serial does. Check that the copy is what was sent.
	f := NewFramer(CR, 16)
	var kept [][]byte
	f.Feed([]byte("first\rsecond\r"), func(fr Frame) { kept = append(kept, bytes.Clone(fr.Line)) })
	if len(kept) != 2 || string(kept[0]) != "first" || string(kept[1]) != "second" {
		t.Fatalf("kept %q", kept)
	}
}

// TestFramerBegan: each frame began with the chunk that brought its first
// byte: a line split over chunks with the first, the lines after the
// first in one chunk with that chunk, and with CRLF a CR that turns out to
// be content with the chunk it came in.
func TestFramerBegan(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	at := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	type began struct {
		line string
		at   int // chunk index, -1: zero time
	}
	for _, tc := range []struct {
		name   string
		term   Terminator
		max    int
		chunks []string
		want   []began
	}{
		{"one chunk, several lines", CR, 64, []string{"A\rBB\rC\r"}, []began{{"A", 0}, {"BB", 0}, {"C", 0}}},
		{"split line", CR, 64, []string{"TR1:AB", "CD", "EF\r"}, []began{{"TR1:ABCDEF", 0}}},
		{"line ends, next starts in the same chunk", LF, 64, []string{"ONE\nTW", "O\n", "THREE\n"},
			[]began{{"ONE", 0}, {"TWO", 0}, {"THREE", 2}}},
		{"empty lines do not begin a line", CR, 64, []string{"\r\r", "\rX", "\r"}, []began{{"X", 1}}},
		{"terminator alone in a chunk", CR, 64, []string{"A", "\r", "B\r"}, []began{{"A", 0}, {"B", 2}}},
		{"CRLF split between chunks", CRLF, 64, []string{"AB\r", "\nCD\r", "\n"}, []began{{"AB", 0}, {"CD", 1}}},
		{"CRLF: an empty line's CR alone", CRLF, 64, []string{"\r", "\nXY\r\n"}, []began{{"XY", 1}}},
		{"CRLF: a lone CR is content, from its chunk", CRLF, 64, []string{"\r", "Z\r\n"}, []began{{"\rZ", 0}}},
		{"over-long line", CR, 4, []string{"123", "456", "7\rOK\r"}, []began{{"<dropped 7>", 0}, {"OK", 2}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFramer(tc.term, tc.max)
			var out []began
			for i, c := range tc.chunks {
				f.FeedAt([]byte(c), at(i), func(fr Frame) {
					b := began{line: string(fr.Line), at: -1}
					if fr.Dropped > 0 {
						b.line = fmt.Sprintf("<dropped %d>", fr.Dropped)
					}
					if !fr.Began.IsZero() {
						b.at = int(fr.Began.Sub(t0) / time.Second)
					}
					out = append(out, b)
				})
			}
			if fmt.Sprint(out) != fmt.Sprint(tc.want) {
				t.Fatalf("frames (line, chunk it began in) %v, want %v", out, tc.want)
			}
		})
	}
	// Feed, without a time, leaves Began zero; Reset forgets a line's start.
	f := NewFramer(CR, 16)
	f.FeedAt([]byte("OLD"), at(1), nil)
	f.Reset()
	f.Feed([]byte("NEW\r"), func(fr Frame) {
		if !fr.Began.IsZero() {
			t.Errorf("frame from Feed began at %v, want zero", fr.Began)
		}
	})
}

// BenchmarkFramer frames 58-byte codes each ended by CRLF, fed 4 KiB at a
// time as the serial read delivers them, per terminator setting.
func BenchmarkFramer(b *testing.B) {
	code := "TR1:" + strings.Repeat("A", 54)
	stream := []byte(strings.Repeat(code+"\r\n", 4096/(len(code)+2)))
	for _, term := range []Terminator{CRLF, Auto, CR} {
		b.Run(term.String(), func(b *testing.B) {
			f := NewFramer(term, 512)
			b.SetBytes(int64(len(stream)))
			for b.Loop() {
				f.Feed(stream, func(Frame) {})
			}
		})
	}
}
