// Package qrcode encodes TR1 tokens as QR codes (PNG, image or terminal
// text) and decodes QR codes from camera frames and image files.
//
// It wraps github.com/makiuchi-d/gozxing, a pure Go port of ZXing, so it
// builds with CGO_ENABLED=0 for every target. Decoded text is returned
// exactly as stored in the code: a TR1 token may end in a space, so nothing
// is ever trimmed.
package qrcode

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	_ "image/gif"  // register GIF for DecodeFile
	_ "image/jpeg" // register JPEG for DecodeFile
	"image/png"
	"io"
	"os"

	"github.com/makiuchi-d/gozxing"
	zxqr "github.com/makiuchi-d/gozxing/qrcode"
	"github.com/makiuchi-d/gozxing/qrcode/decoder"
)

const (
	// MaxTextBytes is the longest text Encode accepts.
	MaxTextBytes = 512
	// QuietZone is the light border, in modules, around every encoded code.
	QuietZone = 4
	// MinScale and MaxScale bound the pixels per module of PNG and Image.
	MinScale, MaxScale = 1, 40
	// MaxFileBytes is the largest file DecodeFile reads.
	MaxFileBytes = 20 << 20
	// MaxPixels is the largest image, in pixels, DecodeFile decodes.
	MaxPixels = 40_000_000
)

// ErrNotFound reports that no QR code could be found in an image. Decode
// and DecodeFile wrap it with context; test for it with errors.Is.
var ErrNotFound = errors.New("no QR code found in the image: hold the screen flat, fill the frame, avoid glare")

// Matrix is an encoded QR code, quiet zone included.
type Matrix struct {
	size int
	dark []bool // row-major, size*size
}

// Encode returns the QR code of text at error-correction level M with a
// 4-module quiet zone, as a bit matrix (true = dark). It uses the smallest
// version that fits: a 58-character TR1 token (QR alphanumeric mode) is
// version 3, 29x29 modules, 37x37 with the quiet zone. Text that is not
// alphanumeric is stored as UTF-8 bytes without an ECI header. Text longer
// than MaxTextBytes bytes is refused.
func Encode(text string) (*Matrix, error) {
	if len(text) > MaxTextBytes {
		return nil, fmt.Errorf("qrcode: text is %d bytes, longer than the %d-byte limit", len(text), MaxTextBytes)
	}
	if text == "" {
		return nil, errors.New("qrcode: cannot encode empty text")
	}
	hints := map[gozxing.EncodeHintType]any{
		gozxing.EncodeHintType_ERROR_CORRECTION: decoder.ErrorCorrectionLevel_M,
		gozxing.EncodeHintType_MARGIN:           QuietZone,
	}
	// Width and height 0 ask for one pixel per module.
	bm, err := zxqr.NewQRCodeWriter().Encode(text, gozxing.BarcodeFormat_QR_CODE, 0, 0, hints)
	if err != nil {
		return nil, fmt.Errorf("qrcode: encode %d bytes: %w", len(text), err)
	}
	n := bm.GetWidth()
	if n != bm.GetHeight() {
		return nil, fmt.Errorf("qrcode: encoder returned a %dx%d matrix, want a square", n, bm.GetHeight())
	}
	m := &Matrix{size: n, dark: make([]bool, n*n)}
	for y := range n {
		for x := range n {
			m.dark[y*n+x] = bm.Get(x, y)
		}
	}
	return m, nil
}

// Size returns the width and height of the code in modules, quiet zone
// included.
func (m *Matrix) Size() int { return m.size }

// Dark reports whether module (x, y) is dark; (0, 0) is the top left corner
// of the quiet zone. Modules outside the matrix are light.
func (m *Matrix) Dark(x, y int) bool {
	if x < 0 || y < 0 || x >= m.size || y >= m.size {
		return false
	}
	return m.dark[y*m.size+x]
}

// Image returns the code as a black-on-white image.Gray at scale pixels per
// module; scale is clamped to MinScale..MaxScale.
func (m *Matrix) Image(scale int) *image.Gray {
	scale = min(max(scale, MinScale), MaxScale)
	n := m.size * scale
	img := image.NewGray(image.Rect(0, 0, n, n))
	for y := range n {
		row := img.Pix[y*img.Stride : y*img.Stride+n]
		for x := range row {
			if m.Dark(x/scale, y/scale) {
				row[x] = 0
			} else {
				row[x] = 0xff
			}
		}
	}
	return img
}

// PNG writes the code as a grayscale PNG holding only black and white
// pixels, scale pixels per module (MinScale..MaxScale; other values are an
// error).
func (m *Matrix) PNG(w io.Writer, scale int) error {
	if scale < MinScale || scale > MaxScale {
		return fmt.Errorf("qrcode: PNG scale %d is outside %d..%d pixels per module", scale, MinScale, MaxScale)
	}
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(w, m.Image(scale)); err != nil {
		return fmt.Errorf("qrcode: write PNG: %w", err)
	}
	return nil
}

// Terminal writes the code as text for a terminal, quiet zone included, two
// module rows per line with the Unicode half blocks ▀ ▄ █ and space, so each
// line holds Size() characters and there are (Size()+1)/2 lines.
//
// The colours are inverted on purpose: LIGHT modules are drawn with block
// characters (the terminal's foreground ink) and DARK modules are spaces
// (the terminal's background). On the usual dark terminal with light text
// this shows dark modules on a light quiet zone, the way scanners expect. On
// a light terminal the code appears inverted and many scanners will not
// read it; use PNG there. If Size() is odd, the lower half of the last line
// lies outside the code and is left blank.
func (m *Matrix) Terminal(w io.Writer) error {
	var b bytes.Buffer
	for y := 0; y < m.size; y += 2 {
		for x := range m.size {
			top, bottom := !m.Dark(x, y), !m.Dark(x, y+1) && y+1 < m.size
			switch {
			case top && bottom:
				b.WriteRune('█')
			case top:
				b.WriteRune('▀')
			case bottom:
				b.WriteRune('▄')
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("qrcode: write terminal code: %w", err)
	}
	return nil
}

// Decode finds and decodes one QR code in img, a photo or camera frame: it
// searches the whole image (try harder, not a pure barcode) and returns the
// text exactly as stored, without trimming.
//
// When no code can be read the error wraps ErrNotFound, with gozxing's
// reason appended to the message when it got as far as a code-like
// pattern. Such patterns are routine in frames that hold no code at all
// (noise and texture pass gozxing's finder and format checks), so a
// "format" or "checksum" failure is reported as not found rather than as a
// damaged code. Other failures (a nil or empty image, a decoder panic) are
// returned as other errors with context.
//
// Decode tries the image upright and then turned by 90, 180 and 270
// degrees. gozxing's finder-pattern search scans rows from the top and can
// settle on a finder-like shape in the data before it reaches the real
// bottom-left finder: upright, it misses about 1 in 250 perfectly clean
// TR1 codes (qrencode's as well as ours), and more in noisy frames. Another
// orientation changes the scan order and reads them. A frame with no
// readable code therefore costs four attempts; a readable one usually one.
func Decode(img image.Image) (text string, err error) {
	if img == nil {
		return "", errors.New("qrcode: decode: nil image")
	}
	b := img.Bounds()
	if b.Empty() {
		return "", fmt.Errorf("qrcode: decode: empty %dx%d image", b.Dx(), b.Dy())
	}
	where := fmt.Sprintf("qrcode: decode %dx%d image", b.Dx(), b.Dy())
	defer func() {
		if r := recover(); r != nil {
			text, err = "", fmt.Errorf("%s: decoder panicked: %v", where, r)
		}
	}()
	bmp, err := gozxing.NewBinaryBitmapFromImage(img)
	if err != nil {
		return "", fmt.Errorf("%s: %w", where, err)
	}
	hints := map[gozxing.DecodeHintType]any{gozxing.DecodeHintType_TRY_HARDER: true}
	var seen error // the first reader failure other than "not found"
	for turn := range 4 {
		if turn > 0 {
			if bmp, err = bmp.RotateCounterClockwise(); err != nil {
				return "", fmt.Errorf("%s: rotate: %w", where, err)
			}
		}
		res, err := zxqr.NewQRCodeReader().Decode(bmp, hints)
		var notFound gozxing.NotFoundException
		var reader gozxing.ReaderException
		switch {
		case err == nil:
			return res.GetText(), nil
		case errors.As(err, &notFound):
		case errors.As(err, &reader):
			if seen == nil {
				seen = err
			}
		default:
			return "", fmt.Errorf("%s: %w", where, err)
		}
	}
	if seen != nil {
		return "", fmt.Errorf("%s: %w (a code-like pattern was seen but could not be read: %v)", where, ErrNotFound, seen)
	}
	return "", fmt.Errorf("%s: %w", where, ErrNotFound)
}

// DecodeFile decodes the QR code in a PNG, JPEG or GIF file, as Decode does.
// It refuses files larger than MaxFileBytes and images larger than
// MaxPixels, checking the declared size before decoding the pixels. A
// corrupt file gives an error, never a panic.
func DecodeFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("qrcode: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return "", fmt.Errorf("qrcode: %w", err)
	} else if fi.Size() > MaxFileBytes {
		return "", fmt.Errorf("qrcode: %s is %d bytes, larger than the %d MB limit", path, fi.Size(), MaxFileBytes>>20)
	}
	// Read through a limit too, in case the file grows after Stat.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("qrcode: read %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return "", fmt.Errorf("qrcode: %s is larger than the %d MB limit", path, MaxFileBytes>>20)
	}
	img, err := decodeImage(data)
	if err != nil {
		return "", fmt.Errorf("qrcode: %s: %w", path, err)
	}
	text, err := Decode(img)
	if err != nil {
		return "", fmt.Errorf("%w (file %s)", err, path)
	}
	return text, nil
}

// decodeImage decodes PNG, JPEG or GIF data after checking its declared
// dimensions against MaxPixels.
func decodeImage(data []byte) (img image.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("corrupt image: image decoder panicked: %v", r)
		}
	}()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if errors.Is(err, image.ErrFormat) {
		return nil, errors.New("not a PNG, JPEG or GIF image")
	} else if err != nil {
		return nil, fmt.Errorf("corrupt or truncated image header: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, fmt.Errorf("%s image declares an empty size %dx%d", format, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > MaxPixels {
		return nil, fmt.Errorf("%s image is %dx%d pixels (%.1f megapixels), larger than the %d megapixel limit",
			format, cfg.Width, cfg.Height, float64(px)/1e6, MaxPixels/1_000_000)
	}
	img, _, err = image.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated %s image: %w", format, err)
	}
	return img, nil
}
