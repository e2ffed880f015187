package station

import (
	"context"
	"log/slog"
	"strings"
	"sync"
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
// slog records at their level.
type logWriter struct{ log *slog.Logger }

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
	w.log.Log(context.Background(), level, s)
	return len(p), nil
}
