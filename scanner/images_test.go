package scanner_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gateagent/gate"
	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"

	"gateagent/qrcode"
	"gateagent/scanner"
)

func codePNG(t *testing.T, text string) []byte {
	t.Helper()
	m, err := qrcode.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := m.PNG(&b, 4); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func codeJPEG(t *testing.T, text string) []byte {
	t.Helper()
	m, err := qrcode.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m.Image(6), &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func encodePNG(t *testing.T, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// hugePNG is a PNG whose header declares w×h pixels, with the pixel data
// of a 1×1 image: decoding it would fail, so an error that names the size
// shows that it was refused on its header alone.
func hugePNG(t *testing.T, w, h uint32) []byte {
	t.Helper()
	b := encodePNG(t, image.NewGray(image.Rect(0, 0, 1, 1)))
	// Signature (8), IHDR length (4), "IHDR" (4), width (4), height (4)…
	binary.BigEndian.PutUint32(b[16:], w)
	binary.BigEndian.PutUint32(b[20:], h)
	binary.BigEndian.PutUint32(b[29:], crc32.ChecksumIEEE(b[12:29])) // IHDR's CRC
	if c, _, err := image.DecodeConfig(bytes.NewReader(b)); err != nil || c.Width != int(w) || c.Height != int(h) {
		t.Fatalf("crafted header: %+v, %v", c, err)
	}
	return b
}

func writeFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	// Written under a dot name and renamed, as a camera should.
	tmp := filepath.Join(dir, ".incoming")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range es {
		ns = append(ns, e.Name())
	}
	return ns
}

type imagesRun struct {
	im     *scanner.Images
	out    chan gate.Scan
	cancel context.CancelFunc
	done   chan error
	logs   *syncbuf.Buffer
}

func startImages(t *testing.T, src scanner.FrameSource, opts scanner.ImageOptions) *imagesRun {
	t.Helper()
	r := &imagesRun{out: make(chan gate.Scan), logs: &syncbuf.Buffer{}}
	opts.Logger = slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r.im = scanner.NewImages(src, opts)
	r.cancel, r.done = background(t, r.logs, func(ctx context.Context) error { return r.im.Run(ctx, r.out) })
	return r
}

func (r *imagesRun) next(t *testing.T) gate.Scan {
	t.Helper()
	select {
	case s := <-r.out:
		return s
	case err := <-r.done:
		t.Fatalf("Run returned %v while a scan was awaited", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("no scan within 10 s (stats %+v)", r.im.Stats())
	}
	return gate.Scan{}
}

func TestImagesFromDirectory(t *testing.T) {
	dir := t.TempDir()
	const a, b, c = "TR1:IMAGE A ", "TR1:IMAGE B", "TR1:IMAGE C"
	blank := image.NewGray(image.Rect(0, 0, 120, 120))
	for i := range blank.Pix {
		blank.Pix[i] = 0xff
	}
	var gifData bytes.Buffer
	if err := gif.Encode(&gifData, image.NewPaletted(image.Rect(0, 0, 8, 8), color.Palette{color.White}), nil); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside.png")
	if err := os.WriteFile(outside, codePNG(t, "TR1:OUTSIDE"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"001.png", codePNG(t, a)},
		{"002.png", encodePNG(t, blank)},                                      // no code
		{"003.png", hugePNG(t, 10000, 10000)},                                 // refused on its header
		{"004.png", encodePNG(t, image.NewGray(image.Rect(0, 0, 5000, 1)))},   // too wide
		{"005.png", []byte("this is not an image, whatever its name says\n")}, // garbage
		{"006.jpg", codeJPEG(t, b)},
		{"007.png", codePNG(t, a)}, // the same code again: a repeat
		{"008.gif", gifData.Bytes()},
	} {
		writeFile(t, dir, f.name, f.data)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "009.png")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".partial.png"), []byte("half a frame"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}

	r := startImages(t, &scanner.DirFrames{Dir: dir, Poll: 10 * time.Millisecond}, scanner.ImageOptions{RepeatWindow: time.Minute})
	before := time.Now()
	for _, want := range []struct{ text, source string }{{a, "001.png"}, {b, "006.jpg"}} {
		s := r.next(t)
		if string(s.Text) != want.text || s.Source != want.source {
			t.Fatalf("scan %q from %q, want %q from %q", s.Text, s.Source, want.text, want.source)
		}
	}
	// A frame written while it runs is picked up.
	writeFile(t, dir, "010.png", codePNG(t, c))
	if s := r.next(t); string(s.Text) != c || s.At.Before(before) {
		t.Fatalf("scan %q at %v, want %q", s.Text, s.At, c)
	}
	eventually.True(t, 5*time.Second, "every frame taken", func() bool { return len(names(t, dir)) == 2 })
	if got := strings.Join(names(t, dir), " "); got != ".partial.png sub" {
		t.Errorf("left in the directory: %s, want the dot file and the subdirectory", got)
	}
	if _, err := os.Stat(outside); err != nil {
		t.Errorf("the symlink's target was touched: %v", err)
	}
	st := r.im.Stats()
	want := scanner.ImageStats{Frames: 5, Decoded: 4, NoCode: 1, Suppressed: 1, Errors: 5}
	st.LastError = ""
	if st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	logs := r.logs.String()
	for _, want := range []string{
		"10000x10000 pixels, larger than the 4096x4096 limit: not decoded",
		"5000x1 pixels",
		"005.png: not a PNG or JPEG image",
		"008.gif: not a PNG or JPEG image",
		"009.png: not a regular file",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "IMAGE") || strings.Contains(logs, "OUTSIDE") {
		t.Errorf("a scanned text in the log:\n%s", logs)
	}
	r.cancel()
	if err := <-r.done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	r.done <- nil
}

func TestDirFramesMaxBytes(t *testing.T) {
	dir := t.TempDir()
	data := codePNG(t, "TR1:BIG")
	writeFile(t, dir, "big.png", data)
	d := &scanner.DirFrames{Dir: dir, Poll: 5 * time.Millisecond, MaxBytes: int64(len(data) - 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	img, name, err := d.Next(ctx)
	if err == nil || img != nil || name != "big.png" || !strings.Contains(err.Error(), "larger than the") {
		t.Fatalf("Next = %v, %q, %v; want a size error for big.png", img, name, err)
	}
	if len(names(t, dir)) != 0 {
		t.Errorf("the refused file was not removed: %v", names(t, dir))
	}
	// Nothing left: Next waits, and returns when ctx ends.
	short, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if _, _, err := d.Next(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on an empty directory: %v, want the context's error", err)
	}
}

func TestDirFramesMissingDirectory(t *testing.T) {
	d := &scanner.DirFrames{Dir: filepath.Join(t.TempDir(), "nope"), Poll: 5 * time.Millisecond}
	_, _, err := d.Next(context.Background())
	if err == nil || !strings.Contains(err.Error(), "scanner.image_dir") {
		t.Fatalf("Next: %v, want an error pointing to scanner.image_dir", err)
	}
}

// frames is a FrameSource from a list, then io.EOF.
type frames struct {
	imgs []image.Image
	errs []error
	n    int
}

func (f *frames) Next(ctx context.Context) (image.Image, string, error) {
	if len(f.imgs) == 0 {
		return nil, "", io.EOF
	}
	img, err := f.imgs[0], f.errs[0]
	f.imgs, f.errs = f.imgs[1:], f.errs[1:]
	f.n++
	return img, fmt.Sprintf("frame-%d", f.n), err
}

func TestImagesFromSource(t *testing.T) {
	img := func(text string) image.Image {
		m, err := qrcode.Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		return m.Image(3)
	}
	src := &frames{
		imgs: []image.Image{img("TR1:0123456789ABCDEF"), nil, img("TR1:SHORT"), img("TR1:SHORT"), image.NewGray(image.Rect(0, 0, 0, 0))},
		errs: []error{nil, errors.New("camera hiccup"), nil, nil, nil},
	}
	r := startImages(t, src, scanner.ImageOptions{MaxText: 10, RepeatWindow: 0})
	for range 2 { // window off: the repeat is delivered
		if s := r.next(t); string(s.Text) != "TR1:SHORT" {
			t.Fatalf("scan %q", s.Text)
		}
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run returned %v at the end of the frames, want nil", err)
		}
		r.done <- nil
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return at the end of the frames")
	}
	st := r.im.Stats()
	// Errors: the camera's, the over-long text, the empty image.
	if st.Frames != 4 || st.Decoded != 2 || st.Errors != 3 || st.Suppressed != 0 {
		t.Errorf("stats %+v", st)
	}
	if !strings.Contains(r.logs.String(), "frame-1: the code holds 20 bytes, more than the 10-byte limit") {
		t.Errorf("over-long text not logged with its length:\n%s", r.logs.String())
	}
}

// TestImagesBegan: a scan from a frame file began when the file was
// found, before it was read, removed and decoded, and is complete (At)
// once its code is decoded; from any other source it began when Next
// returned the frame.
func TestImagesBegan(t *testing.T) {
	dir := t.TempDir()
	base := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var calls int
	present := map[time.Time]bool{} // each time the clock gave: was the frame file still there?
	now := func() time.Time {
		_, err := os.Stat(filepath.Join(dir, "001.png"))
		mu.Lock()
		defer mu.Unlock()
		calls++
		at := base.Add(time.Duration(calls) * time.Second)
		present[at] = err == nil
		return at
	}
	writeFile(t, dir, "001.png", codePNG(t, "TR1:BEGAN"))
	r := startImages(t, &scanner.DirFrames{Dir: dir, Poll: 10 * time.Millisecond}, scanner.ImageOptions{Now: now})
	s := r.next(t)
	mu.Lock()
	defer mu.Unlock()
	if s.Began.IsZero() || !s.Began.Before(s.At) {
		t.Fatalf("began %v, at %v: want Began before At", s.Began, s.At)
	}
	if !present[s.Began] {
		t.Errorf("Began %v was taken after the frame file was read and removed, want when it was found", s.Began)
	}
	if present[s.At] {
		t.Errorf("At %v was taken while the frame file was still there, want once its code was decoded", s.At)
	}

	// A plain FrameSource: the frame began when Next returned it.
	m, err := qrcode.Encode("TR1:PLAIN")
	if err != nil {
		t.Fatal(err)
	}
	var n int
	step := func() time.Time { n++; return base.Add(time.Duration(n) * time.Second) }
	r2 := startImages(t, &frames{imgs: []image.Image{m.Image(3)}, errs: []error{nil}}, scanner.ImageOptions{Now: step})
	s2 := r2.next(t)
	if want := base.Add(time.Second); !s2.Began.Equal(want) || !s2.At.Equal(base.Add(2*time.Second)) {
		t.Errorf("began %v, at %v: want %v (when Next returned) and a second later (decoded)", s2.Began, s2.At, want)
	}
}
