package qrcode

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"testing"

	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
)

// FuzzDecodeImage: any file contents give text or an error, never a panic.
func FuzzDecodeImage(f *testing.F) {
	m := mustEncode(f, token)
	var p, j, g bytes.Buffer
	if err := m.PNG(&p, 2); err != nil {
		f.Fatal(err)
	}
	if err := jpeg.Encode(&j, m.Image(2), nil); err != nil {
		f.Fatal(err)
	}
	if err := gif.Encode(&g, m.Image(2), nil); err != nil {
		f.Fatal(err)
	}
	for _, b := range [][]byte{p.Bytes(), j.Bytes(), g.Bytes(), p.Bytes()[:p.Len()/2], j.Bytes()[:200], nil, []byte("GIF89a")} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := decodeImage(data)
		if err != nil {
			return
		}
		_, _ = Decode(img)
	})
}

// FuzzRoundTrip: any base45 text up to the limit survives Encode, Image and
// Decode byte for byte, trailing spaces included.
func FuzzRoundTrip(f *testing.F) {
	f.Add([]byte(token))
	f.Add([]byte(" "))
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) == 0 || len(raw) > MaxTextBytes {
			return
		}
		text := make([]byte, len(raw))
		for i, c := range raw {
			text[i] = base45[int(c)%len(base45)]
		}
		m, err := Encode(string(text))
		if err != nil {
			t.Fatalf("Encode(%q): %v", text, err)
		}
		got, err := Decode(m.Image(3))
		if err != nil || got != string(text) {
			t.Fatalf("round trip of %q: got %q, %v", text, got, err)
		}
	})
}

// panicImage panics when its pixels are read, standing in for a decoder bug.
type panicImage struct{ *image.Gray }

func (panicImage) At(x, y int) color.Color { panic("pixel read") }

func TestDecodeRecoversPanic(t *testing.T) {
	_, err := Decode(panicImage{image.NewGray(image.Rect(0, 0, 64, 64))})
	if err == nil || !bytes.Contains([]byte(err.Error()), []byte("panicked")) {
		t.Fatalf("Decode(panicking image) error = %v, want a recovered panic", err)
	}
}

// TestTokenIsLevelM reads the error-correction level back with gozxing.
func TestTokenIsLevelM(t *testing.T) {
	bmp, err := gozxing.NewBinaryBitmapFromImage(mustEncode(t, token).Image(2))
	if err != nil {
		t.Fatal(err)
	}
	res, err := zxqr.NewQRCodeReader().Decode(bmp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := res.GetResultMetadata()[gozxing.ResultMetadataType_ERROR_CORRECTION_LEVEL]; got != "M" {
		t.Fatalf("error-correction level %v, want M", got)
	}
}
