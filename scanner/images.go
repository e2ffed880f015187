package scanner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gateagent/gate"
	"gateagent/internal/wait"
	"gateagent/qrcode"
)

// FrameSource yields image frames.
type FrameSource interface {
	// Next returns the next frame and its name (a file name, a frame
	// number). It returns io.EOF when there are no more frames, and
	// ctx.Err() when ctx ends first. Any other error is about one frame:
	// the caller counts it and asks for the next, so a source whose
	// trouble persists must pace itself (DirFrames waits its Poll).
	Next(ctx context.Context) (image.Image, string, error)
}

// StampedFrameSource is a FrameSource that also says when it found each
// frame, before decoding it. Images uses it for Scan.Began, so that the
// read stage covers the image's decoding too; from any other source a
// frame begins when Next returns it. DirFrames is one.
type StampedFrameSource interface {
	FrameSource
	// NextStamped is Next, with found: the time, on now, at which the
	// frame was found (before it was read and decoded).
	NextStamped(ctx context.Context, now func() time.Time) (img image.Image, name string, found time.Time, err error)
}

// ImageOptions are an image scanner's settings and collaborators.
type ImageOptions struct {
	Logger       *slog.Logger     // nil: discard
	Now          func() time.Time // the clock for the repeat window, Scan.At and Scan.Began; nil: time.Now
	RepeatWindow time.Duration    // 0 disables; see Dedup
	MaxText      int              // the longest text delivered, in bytes; default 512 (longer: an error)
}

// ImageStats are an image scanner's counters.
type ImageStats struct {
	Frames     uint64 // frames read
	Decoded    uint64 // frames a text was read from (delivered or suppressed)
	NoCode     uint64 // frames with no readable code
	Suppressed uint64 // repeats suppressed
	Errors     uint64 // frames refused (unreadable, too large, not an image) or with a text too long
	LastError  string // the last error, for diag
}

// Images decodes QR codes from frames and sends their texts as scans, with
// the same repeat window as the serial scanner. Frames with no code are
// counted, not errors.
type Images struct {
	src     FrameSource
	log     *slog.Logger
	now     func() time.Time
	maxText int
	dedup   *Dedup
	running atomic.Bool

	mu    sync.Mutex
	stats ImageStats
}

// NewImages returns an image scanner reading frames from src.
func NewImages(src FrameSource, opts ImageOptions) *Images {
	im := &Images{src: src, log: opts.Logger, now: opts.Now, maxText: opts.MaxText, dedup: NewDedup(opts.RepeatWindow)}
	if im.log == nil {
		im.log = slog.New(slog.DiscardHandler)
	}
	if im.now == nil {
		im.now = time.Now
	}
	if im.maxText <= 0 {
		im.maxText = DefaultMaxLine
	}
	return im
}

// Stats returns the counters. It is safe to call concurrently with Run.
func (im *Images) Stats() ImageStats {
	im.mu.Lock()
	defer im.mu.Unlock()
	return im.stats
}

func (im *Images) update(f func(*ImageStats)) {
	im.mu.Lock()
	f(&im.stats)
	im.mu.Unlock()
}

func (im *Images) fail(name string, err error) {
	msg := err.Error()
	im.update(func(st *ImageStats) { st.Errors++; st.LastError = msg })
	im.log.Warn("scanner frame refused", "frame", name, "err", err)
}

// Run reads frames and sends the text of each QR code found on out until
// the source ends (then it returns nil) or ctx ends (then ctx.Err()).
// Sending blocks until the consumer takes the scan or ctx ends. The text
// of a scan is never logged. Run must not be called again while it runs.
func (im *Images) Run(ctx context.Context, out chan<- gate.Scan) error {
	switch {
	case im.src == nil:
		return errors.New("scanner: image scanner has no frame source")
	case out == nil:
		return errors.New("scanner: Run needs a channel for the scans")
	case !im.running.CompareAndSwap(false, true):
		return errors.New("scanner: Run is already running for this image scanner")
	}
	defer im.running.Store(false)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		img, name, began, err := im.next(ctx)
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return ctxErr
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			im.fail(name, err)
			continue
		}
		im.update(func(st *ImageStats) { st.Frames++ })
		text, err := qrcode.Decode(img)
		at := im.now() // the text is complete: the scan's At
		switch {
		case errors.Is(err, qrcode.ErrNotFound) || err == nil && text == "":
			im.update(func(st *ImageStats) { st.NoCode++ })
			im.log.Debug("scanner frame without a code", "frame", name)
			continue
		case err != nil:
			im.fail(name, fmt.Errorf("scanner: frame %s: %w", name, err))
			continue
		case len(text) > im.maxText:
			im.fail(name, fmt.Errorf("scanner: frame %s: the code holds %d bytes, more than the %d-byte limit", name, len(text), im.maxText))
			continue
		}
		im.update(func(st *ImageStats) { st.Decoded++ })
		if im.dedup.Seen([]byte(text), at) {
			im.update(func(st *ImageStats) { st.Suppressed++ })
			im.log.Debug("scanner repeat suppressed", "frame", name, "length", len(text))
			continue
		}
		select {
		case out <- gate.Scan{Text: []byte(text), At: at, Began: began, Source: name}:
			im.log.Debug("scanner code", "frame", name, "length", len(text))
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// next returns the source's next frame and when it began: when a
// StampedFrameSource found it, or else when Next returned it.
func (im *Images) next(ctx context.Context) (image.Image, string, time.Time, error) {
	if ss, ok := im.src.(StampedFrameSource); ok {
		return ss.NextStamped(ctx, im.now)
	}
	img, name, err := im.src.Next(ctx)
	return img, name, im.now(), err
}

// Limits and defaults of DirFrames.
const (
	DefaultPoll          = 100 * time.Millisecond
	DefaultFrameMaxBytes = 8 << 20
	MaxFrameSide         = 4096 // the widest and tallest image decoded, in pixels
	maxQueue             = 1024 // names taken from one directory listing
	maxStuck             = 1024 // names remembered as impossible to remove
)

// DirFrames is a FrameSource for a spool directory a camera writes PNG or
// JPEG files into.
//
// It polls the directory every Poll, takes the files in name order, and
// removes each file once read, whatever its contents. It refuses, without
// decoding them, files larger than MaxBytes and images wider or taller than
// MaxFrameSide pixels (checked with image.DecodeConfig first); such files,
// non-image files and anything that is not a regular file are removed and
// reported as errors. Names starting with "." and ending in ".tmp" or
// ".part" are left alone: a camera should write each frame under such a
// name and rename it into place when complete, or a frame may be taken
// half written.
//
// Next never returns io.EOF. A directory that cannot be read is reported
// as an error every Poll. DirFrames is not safe for concurrent use.
type DirFrames struct {
	Dir      string
	Poll     time.Duration // default 100ms
	MaxBytes int64         // default 8 MiB

	queue []string
	stuck map[string]bool
}

// Next returns the next frame in the directory, waiting for one.
func (d *DirFrames) Next(ctx context.Context) (image.Image, string, error) {
	img, name, _, err := d.NextStamped(ctx, time.Now)
	return img, name, err
}

// NextStamped is Next, with found: the time on now at which the frame's
// file was taken from the directory, before it was read and decoded (a
// file listed while others were ahead of it is found when its turn
// comes).
func (d *DirFrames) NextStamped(ctx context.Context, now func() time.Time) (img image.Image, name string, found time.Time, err error) {
	if now == nil {
		now = time.Now
	}
	poll := d.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, "", time.Time{}, err
		}
		if len(d.queue) == 0 {
			names, err := d.list()
			if err != nil {
				if wait.Sleep(ctx, poll) != nil {
					return nil, "", time.Time{}, ctx.Err()
				}
				return nil, "", time.Time{}, err
			}
			if len(names) == 0 {
				if wait.Sleep(ctx, poll) != nil {
					return nil, "", time.Time{}, ctx.Err()
				}
				continue
			}
			d.queue = names
		}
		name := d.queue[0]
		d.queue = d.queue[1:]
		found := now()
		img, ok, err := d.take(name)
		if ok {
			return img, name, found, err
		}
	}
}

// list returns the names of the candidate files, in order.
func (d *DirFrames) list() ([]string, error) {
	entries, err := os.ReadDir(d.Dir)
	if err != nil {
		return nil, fmt.Errorf("scanner: read the frame directory: %w: check scanner.image_dir and that the agent may read and write it", err)
	}
	var names []string
	for _, e := range entries { // sorted by name
		n := e.Name()
		if e.IsDir() || strings.HasPrefix(n, ".") || strings.HasSuffix(n, ".tmp") || strings.HasSuffix(n, ".part") || d.stuck[n] {
			continue
		}
		names = append(names, n)
		if len(names) == maxQueue {
			break
		}
	}
	return names, nil
}

// take reads, removes and decodes one file; ok is false if it is gone.
func (d *DirFrames) take(name string) (img image.Image, ok bool, err error) {
	limit := d.MaxBytes
	if limit <= 0 {
		limit = DefaultFrameMaxBytes
	}
	path := filepath.Join(d.Dir, name)
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	data, readErr := func() ([]byte, error) {
		switch {
		case err != nil:
			return nil, err
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
		case fi.Size() > limit:
			return nil, fmt.Errorf("%d bytes, larger than the %d-byte limit", fi.Size(), limit)
		}
		// O_NONBLOCK: should a FIFO replace the file, opening it must not block.
		f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		if fi, err := f.Stat(); err != nil {
			return nil, err
		} else if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
		}
		// Read through a limit too, in case the file grows meanwhile.
		data, err := io.ReadAll(io.LimitReader(f, limit+1))
		if err != nil {
			return nil, err
		}
		if int64(len(data)) > limit {
			return nil, fmt.Errorf("larger than the %d-byte limit", limit)
		}
		return data, nil
	}()
	// Remove it before decoding, so that a file that upsets the decoder
	// cannot be taken again and again.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		if d.stuck == nil || len(d.stuck) >= maxStuck {
			d.stuck = make(map[string]bool)
		}
		d.stuck[name] = true
		return nil, true, fmt.Errorf("scanner: remove frame %s: %w: the agent needs write access to scanner.image_dir", name, err)
	}
	if readErr != nil {
		return nil, true, fmt.Errorf("scanner: frame %s: %w (removed)", name, readErr)
	}
	img, err = decodeFrame(data)
	if err != nil {
		return nil, true, fmt.Errorf("scanner: frame %s: %w (removed)", name, err)
	}
	return img, true, nil
}

// decodeFrame decodes a PNG or JPEG image after checking its declared
// dimensions.
func decodeFrame(data []byte) (img image.Image, err error) {
	defer func() {
		if r := recover(); r != nil {
			img, err = nil, fmt.Errorf("corrupt image: the decoder panicked: %v", r)
		}
	}()
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	switch {
	case errors.Is(err, image.ErrFormat) || err == nil && format != "png" && format != "jpeg":
		return nil, errors.New("not a PNG or JPEG image")
	case err != nil:
		return nil, fmt.Errorf("corrupt or truncated image header: %w", err)
	case cfg.Width <= 0 || cfg.Height <= 0:
		return nil, fmt.Errorf("%s image declares an empty size %dx%d", format, cfg.Width, cfg.Height)
	case cfg.Width > MaxFrameSide || cfg.Height > MaxFrameSide:
		return nil, fmt.Errorf("%s image is %dx%d pixels, larger than the %dx%d limit: not decoded", format, cfg.Width, cfg.Height, MaxFrameSide, MaxFrameSide)
	}
	if format == "png" {
		img, err = png.Decode(bytes.NewReader(data))
	} else {
		img, err = jpeg.Decode(bytes.NewReader(data))
	}
	if err != nil {
		return nil, fmt.Errorf("corrupt or truncated %s image: %w", format, err)
	}
	return img, nil
}
