package base45

import (
	"bytes"
	"errors"
	"testing"
)

// The examples of RFC 9285, section 4.
var rfcVectors = []struct{ plain, encoded string }{
	{"AB", "BB8"},
	{"Hello!!", "%69 VD92EX0"},
	{"base-45", "UJCLQE7W581"},
	{"ietf!", "QED8WEX0"},
	{"", ""},
}

func TestRFC9285Vectors(t *testing.T) {
	for _, v := range rfcVectors {
		if got := EncodeToString([]byte(v.plain)); got != v.encoded {
			t.Errorf("EncodeToString(%q) = %q, want %q", v.plain, got, v.encoded)
		}
		got, err := DecodeString(v.encoded)
		if err != nil {
			t.Errorf("DecodeString(%q): %v", v.encoded, err)
			continue
		}
		if string(got) != v.plain {
			t.Errorf("DecodeString(%q) = %q, want %q", v.encoded, got, v.plain)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct{ in, why string }{
		{"GGW", "65536 is over the limit (RFC 9285 section 6)"},
		{"GGWAB", "over the limit in the first group"},
		{"A", "one character over"},
		{"BB8A", "one character over after a group"},
		{"bb8", "lower case is not in the alphabet"},
		{"BB#", "# is not in the alphabet"},
		{"BB\x00", "NUL"},
		{"BB\xff", "high byte"},
		{":::", "45^3-1 = 91124 is over the limit"},
		{"::", "a final pair of 2024 is over 255"},
	} {
		if got, err := DecodeString(tc.in); err == nil {
			t.Errorf("DecodeString(%q) = %x, want an error (%s)", tc.in, got, tc.why)
		} else if !errors.Is(err, ErrInvalid) {
			t.Errorf("DecodeString(%q) error %v does not wrap ErrInvalid", tc.in, err)
		}
	}
}

func TestBoundaries(t *testing.T) {
	// FGW is the largest valid group, 0xffff; U5 the largest final pair, 0xff.
	for _, tc := range []struct {
		enc  string
		want []byte
	}{
		{"FGW", []byte{0xff, 0xff}},
		{"000", []byte{0, 0}},
		{"U5", []byte{0xff}},
		{"00", []byte{0}},
	} {
		got, err := DecodeString(tc.enc)
		if err != nil || !bytes.Equal(got, tc.want) {
			t.Errorf("DecodeString(%q) = %x, %v; want %x", tc.enc, got, err, tc.want)
		}
		if back := EncodeToString(tc.want); back != tc.enc {
			t.Errorf("EncodeToString(%x) = %q, want %q", tc.want, back, tc.enc)
		}
	}
}

func TestRoundTripAllPairs(t *testing.T) {
	src := make([]byte, 2)
	dst := make([]byte, 3)
	out := make([]byte, 2)
	for v := range 1 << 16 {
		src[0], src[1] = byte(v>>8), byte(v)
		Encode(dst, src)
		n, err := Decode(out, dst)
		if err != nil || n != 2 || !bytes.Equal(out, src) {
			t.Fatalf("round trip of %x via %q gave %x, %v", src, dst, out[:n], err)
		}
	}
}

func TestDecodeShortDestination(t *testing.T) {
	if _, err := Decode(make([]byte, 1), []byte("BB8")); err == nil {
		t.Fatal("Decode into a 1-byte buffer of a 2-byte value succeeded")
	}
}

func FuzzDecode(f *testing.F) {
	for _, v := range rfcVectors {
		f.Add(v.encoded)
	}
	f.Add("GGW")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := DecodeString(s)
		if err != nil {
			return
		}
		// Base45 is canonical: whatever decodes re-encodes to the same text.
		if back := EncodeToString(b); back != s {
			t.Fatalf("DecodeString(%q) = %x re-encodes to %q", s, b, back)
		}
	})
}
