package qrcode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

// base45 is the TR1 alphabet; it is also the QR alphanumeric character set.
const base45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"

// token is a TR1-like 58-character token ending in a space.
var token = "TR1:" + "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ$%*+-./:012345678 "

func randomBase45(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = base45[r.IntN(len(base45))]
	}
	return string(b)
}

func mustEncode(t testing.TB, text string) *Matrix {
	t.Helper()
	m, err := Encode(text)
	if err != nil {
		t.Fatalf("Encode(%q): %v", text, err)
	}
	return m
}

func roundTrip(t *testing.T, text string, scale int) {
	t.Helper()
	got, err := Decode(mustEncode(t, text).Image(scale))
	if err != nil {
		t.Fatalf("Decode(Encode(%q)): %v", text, err)
	}
	if got != text {
		t.Fatalf("round trip: got %q, want %q", got, text)
	}
}

func TestTokenShape(t *testing.T) {
	if len(token) != 58 || !strings.HasSuffix(token, " ") || strings.IndexFunc(token, func(r rune) bool { return !strings.ContainsRune(base45, r) }) >= 0 {
		t.Fatalf("bad test token %q (%d chars)", token, len(token))
	}
}

func TestRoundTripToken(t *testing.T) {
	for _, scale := range []int{1, 2, 4, 10} {
		roundTrip(t, token, scale)
	}
}

func TestRoundTripRandomBase45(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 10, 45, 58, 58, 58, 77, 100, 200, MaxTextBytes} {
		s := randomBase45(r, n)
		t.Run("", func(t *testing.T) { roundTrip(t, s, 3) })
	}
	// Leading, trailing and only spaces survive too.
	for _, s := range []string{" ", "   ", " TR1:AB ", "TR1:" + randomBase45(r, 53) + " "} {
		roundTrip(t, s, 3)
	}
	// Many TR1-like tokens, some ending in a space, at various scales.
	for i := range 200 {
		roundTrip(t, "TR1:"+randomBase45(r, 54), 1+i%8)
	}
}

func TestRoundTripBytes(t *testing.T) {
	for _, s := range []string{"tr1:lower case", "TR1:ÄÖÜ €", "line\nbreak\t"} {
		roundTrip(t, s, 3)
	}
}

func TestTokenIsVersion3(t *testing.T) {
	m := mustEncode(t, token)
	// Version 3 is 29x29 modules, plus a 4-module quiet zone on each side.
	if got, want := m.Size(), 29+2*QuietZone; got != want {
		t.Fatalf("Size() = %d, want %d (QR version 3)", got, want)
	}
	for i := range m.Size() {
		for _, xy := range [][2]int{{i, 0}, {0, i}, {i, m.Size() - 1}, {m.Size() - 1, i}} {
			if m.Dark(xy[0], xy[1]) {
				t.Fatalf("quiet zone module %v is dark", xy)
			}
		}
	}
	// Top left finder pattern corner, and out-of-range modules are light.
	if !m.Dark(QuietZone, QuietZone) || m.Dark(-1, 0) || m.Dark(0, m.Size()) {
		t.Fatal("Dark: finder corner light or outside module dark")
	}
}

func TestEncodeErrors(t *testing.T) {
	if _, err := Encode(strings.Repeat("A", MaxTextBytes+1)); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("Encode(513 bytes) error = %v, want a limit error", err)
	}
	if _, err := Encode(""); err == nil {
		t.Fatal("Encode(\"\") succeeded")
	}
	if _, err := Encode(strings.Repeat("é", MaxTextBytes/2)); err != nil {
		t.Fatalf("Encode(512 UTF-8 bytes): %v", err)
	}
}

func TestImage(t *testing.T) {
	m := mustEncode(t, token)
	img := m.Image(3)
	if got, want := img.Bounds(), image.Rect(0, 0, 3*m.Size(), 3*m.Size()); got != want {
		t.Fatalf("Image(3) bounds %v, want %v", got, want)
	}
	for y := range img.Bounds().Dy() {
		for x := range img.Bounds().Dx() {
			want := uint8(0xff)
			if m.Dark(x/3, y/3) {
				want = 0
			}
			if got := img.GrayAt(x, y).Y; got != want {
				t.Fatalf("pixel (%d,%d) = %d, want %d", x, y, got, want)
			}
		}
	}
	if got := m.Image(0).Bounds().Dx(); got != m.Size() {
		t.Fatalf("Image(0) is %d wide, want clamped to scale 1 (%d)", got, m.Size())
	}
}

func TestPNGDecodeFile(t *testing.T) {
	m := mustEncode(t, token)
	var buf bytes.Buffer
	if err := m.PNG(&buf, 4); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "token.png")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := DecodeFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != token {
		t.Fatalf("DecodeFile: got %q, want %q", got, token)
	}
	for _, scale := range []int{0, -1, MaxScale + 1} {
		if err := m.PNG(&bytes.Buffer{}, scale); err == nil {
			t.Errorf("PNG(scale %d) succeeded", scale)
		}
	}
}

// frame draws m at scale 4 into a 640x480 camera-like frame at an offset,
// with contrast below full black and white and random pixel noise.
func frame(m *Matrix, seed uint64) *image.Gray {
	r := rand.New(rand.NewPCG(seed, 7))
	img := image.NewGray(image.Rect(0, 0, 640, 480))
	const scale, ox, oy = 4, 371, 213
	for y := range 480 {
		for x := range 640 {
			v := 120 // background around the screen
			mx, my := (x-ox)/scale, (y-oy)/scale
			if x >= ox && y >= oy && mx < m.Size() && my < m.Size() {
				v = 215
				if m.Dark(mx, my) {
					v = 45
				}
			}
			v += r.IntN(81) - 40 // ±40 noise on every pixel
			if r.IntN(1000) == 0 {
				v = r.IntN(256) // 0.1% random (dead or hot) pixels
			}
			img.SetGray(x, y, color.Gray{Y: uint8(min(max(v, 0), 255))})
		}
	}
	return img
}

func TestDecodeNoisyFrame(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i, text := range []string{token, "TR1:" + randomBase45(r, 54), "TR1:" + randomBase45(r, 53) + " "} {
		for seed := range uint64(4) {
			got, err := Decode(frame(mustEncode(t, text), seed))
			if err != nil || got != text {
				t.Errorf("token %d, noise seed %d: got %q, %v; want %q", i, seed, got, err, text)
			}
		}
	}
}

// TestDecodeHardTokens: gozxing alone misses these clean codes upright (it
// settles on a false finder pattern); Decode reads them by turning the image.
func TestDecodeHardTokens(t *testing.T) {
	for _, text := range []string{
		"TR1:LR1%Z83V5X7SV01GF-7B$H84EB4SW*N+5VP07+9OK:4J9:TBIIA%BA",
		"TR1: .AAC/CSJ*K5IFX%14DC:920%DT3AXUWYKHQTN085QW3ICL5H818MB",
		"TR1:S5-KRJ*H*3JXYUPKH-0S-+D8PE 78Z59INZF8I3XUDF:04XJTCDZO+",
	} {
		roundTrip(t, text, 4)
	}
}

func TestDecodeBlank(t *testing.T) {
	img := image.NewGray(image.Rect(0, 0, 640, 480))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	_, err := Decode(img)
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Decode(blank) error = %v, want ErrNotFound", err)
	}
	if _, err := Decode(nil); err == nil {
		t.Fatal("Decode(nil) succeeded")
	}
	if _, err := Decode(image.NewGray(image.Rectangle{})); err == nil {
		t.Fatal("Decode(empty image) succeeded")
	}
	if _, err := Decode(image.NewGray(image.Rect(0, 0, 1, 1))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Decode(1x1 image) error = %v, want ErrNotFound", err)
	}
	// Noise alone passes gozxing's finder and format checks now and then;
	// that is still "not found".
	for seed := range uint64(8) {
		if _, err := Decode(frame(&Matrix{}, seed)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Decode(noise %d) error = %v, want ErrNotFound", seed, err)
		}
	}
}

// pngWithSize returns a valid 1x1 PNG whose header declares w x h pixels.
func pngWithSize(t *testing.T, w, h uint32) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := mustEncode(t, "A").PNG(&buf, 1); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	// 8-byte signature, then the IHDR chunk: length(4) type(4) data(13) crc(4).
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29]))
	return b
}

func TestDecodeFileErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	var good bytes.Buffer
	if err := mustEncode(t, token).PNG(&good, 4); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.png")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileBytes + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()

	for _, tc := range []struct {
		name, path, want string
	}{
		{"truncated PNG", write("trunc.png", good.Bytes()[:good.Len()/2]), "corrupt or truncated png"},
		{"header only", write("head.png", good.Bytes()[:20]), "corrupt or truncated image header"},
		{"not an image", write("notes.txt", []byte("TR1:not an image at all\n")), "not a PNG, JPEG or GIF"},
		{"empty file", write("empty.png", nil), "not a PNG, JPEG or GIF"},
		{"oversized declared image", write("huge.png", pngWithSize(t, 8000, 8000)), "64.0 megapixels"},
		{"zero-size image", write("zero.png", pngWithSize(t, 0, 10)), ""},
		{"file too large", big, "20 MB limit"},
		{"missing file", filepath.Join(dir, "missing.png"), "no such file"},
		{"directory", dir, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeFile(tc.path)
			if err == nil {
				t.Fatal("DecodeFile succeeded")
			}
			if errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want one containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestTerminal(t *testing.T) {
	m := mustEncode(t, token)
	var buf bytes.Buffer
	if err := m.Terminal(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if !strings.HasSuffix(out, "\n") {
		t.Fatal("output does not end in a newline")
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if got, want := len(lines), (m.Size()+1)/2; got != want {
		t.Fatalf("%d lines, want %d", got, want)
	}
	// Light modules are ink, dark modules are spaces; below the code is blank.
	light := func(x, y int) bool { return y < m.Size() && !m.Dark(x, y) }
	glyph := map[[2]bool]rune{{true, true}: '█', {true, false}: '▀', {false, true}: '▄', {false, false}: ' '}
	for i, line := range lines {
		if n := utf8.RuneCountInString(line); n != m.Size() {
			t.Fatalf("line %d has %d runes, want %d", i, n, m.Size())
		}
		for x, r := range []rune(line) {
			if want := glyph[[2]bool{light(x, 2*i), light(x, 2*i+1)}]; r != want {
				t.Fatalf("line %d column %d is %q, want %q", i, x, r, want)
			}
		}
	}
	if !strings.HasPrefix(lines[0], "███") || !strings.HasPrefix(lines[len(lines)-1], "▀▀▀") {
		t.Fatalf("quiet zone not drawn as ink:\n%s", out)
	}
}

// TestQrencode decodes a PNG made by the reference qrencode tool.
func TestQrencode(t *testing.T) {
	bin, err := exec.LookPath("qrencode")
	if err != nil {
		if os.Getenv("GATEAGENT_REQUIRE_QRENCODE") != "" {
			t.Fatal("qrencode not on PATH and GATEAGENT_REQUIRE_QRENCODE is set: apt-get install qrencode")
		}
		t.Skip("qrencode not on PATH (apt install qrencode); skipping the cross-check with its PNGs")
	}
	r := rand.New(rand.NewPCG(3, 4))
	for _, text := range []string{token, "TR1:" + randomBase45(r, 54), "TR1:" + randomBase45(r, 53) + " "} {
		path := filepath.Join(t.TempDir(), "qrencode.png")
		if out, err := exec.Command(bin, "-l", "M", "-s", "4", "-o", path, text).CombinedOutput(); err != nil {
			t.Fatalf("qrencode: %v\n%s", err, out)
		}
		got, err := DecodeFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got != text {
			t.Fatalf("qrencode PNG: got %q, want %q", got, text)
		}
	}
}

func BenchmarkDecode640x480(b *testing.B) {
	m, err := Encode(token)
	if err != nil {
		b.Fatal(err)
	}
	img := frame(m, 1)
	for b.Loop() {
		if _, err := Decode(img); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeNoCode640x480 is the cost of a frame without a code: all
// four orientations are tried.
func BenchmarkDecodeNoCode640x480(b *testing.B) {
	img := frame(&Matrix{}, 1)
	for b.Loop() {
		if _, err := Decode(img); !errors.Is(err, ErrNotFound) {
			b.Fatal(err)
		}
	}
}
