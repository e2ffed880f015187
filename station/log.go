package station

import (
	"context"
	"gateagent/internal/logging"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// closingHandler passes records to inner until close, then drops them.
type closingHandler struct {
	inner  slog.Handler
	mu     *sync.RWMutex
	closed *bool
}

func (h *closingHandler) init() {
	if h.mu == nil {
		h.mu, h.closed = new(sync.RWMutex), new(bool)
	}
}

func (h *closingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *closingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if *h.closed {
		return nil
	}
	return h.inner.Handle(ctx, r)
}

func (h *closingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &closingHandler{inner: h.inner.WithAttrs(as), mu: h.mu, closed: h.closed}
}

func (h *closingHandler) WithGroup(name string) slog.Handler {
	return &closingHandler{inner: h.inner.WithGroup(name), mu: h.mu, closed: h.closed}
}

func (h *closingHandler) close() {
	h.mu.Lock()
	*h.closed = true
	h.mu.Unlock()
}

// logWriter turns memberlist's log lines ("[WARN] memberlist: ...") into
// slog records at their level. memberlist writes a line per bad packet
// (an empty datagram, one it cannot decode), so anyone on the station
// network could fill the journal: lines of one shape (the same text but
// for its numbers: addresses, ports, sizes) are written once, then
// counted, one line per LogRepeatEvery.
type logWriter struct{ rep *logging.Repeats }

// LogRepeatEvery is the interval over which memberlist's lines of one
// shape are counted instead of written.
const LogRepeatEvery = time.Minute

// maxShape bounds a shape's length, and so the kinds of line counted.
const maxShape = 96

func (w *logWriter) Write(p []byte) (int, error) {
	s := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, l := range []struct {
		tag   string
		level slog.Level
	}{{"[DEBUG]", slog.LevelDebug}, {"[INFO]", slog.LevelInfo}, {"[WARN]", slog.LevelWarn}, {"[ERR]", slog.LevelWarn}, {"[ERROR]", slog.LevelWarn}} {
		if rest, ok := strings.CutPrefix(s, l.tag); ok {
			s, level = strings.TrimSpace(rest), l.level
			break
		}
	}
	w.rep.Log(level, level.String()+" "+shape(s), s)
	return len(p), nil
}

// shape is s with each run of digits as one '#', cut to maxShape bytes.
func shape(s string) string {
	b := make([]byte, 0, min(len(s), maxShape))
	for i := 0; i < len(s) && len(b) < maxShape; i++ {
		c := s[i]
		if '0' <= c && c <= '9' {
			if len(b) > 0 && b[len(b)-1] == '#' {
				continue
			}
			c = '#'
		}
		b = append(b, c)
	}
	return string(b)
}
