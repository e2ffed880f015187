// Package logging is the agent's log/slog setup: a handler that writes
// each attribute key once, and under systemd writes journald's priority
// prefixes instead of a timestamp of its own; and Repeats, which turns a
// run of the same line into one line and a count per interval.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
)

// Options say how the handler writes.
type Options struct {
	// Level is the lowest level written; nil: info.
	Level slog.Leveler
	// JSON writes one JSON object per line instead of key=value text.
	JSON bool
	// Journal writes each line for systemd's journal: it starts with the
	// syslog priority of its level ("<3>" error, "<4>" warning, "<6>" info,
	// "<7>" debug, which journald reads and strips, so that
	// `journalctl -p err` finds the errors) and carries no timestamp of
	// its own (the journal stamps every line).
	Journal bool
}

// New returns a logger writing to w as o says.
func New(w io.Writer, o Options) *slog.Logger { return slog.New(NewHandler(w, o)) }

// NewHandler returns a handler writing to w as o says. A key given again,
// by a later With or by the record itself, replaces the earlier value in
// place (slog's own handlers would write both: "part=gate part=scanner").
// Keys in different groups are different keys.
func NewHandler(w io.Writer, o Options) slog.Handler {
	out := &output{w: w, journal: o.Journal}
	ho := &slog.HandlerOptions{Level: o.Level}
	if o.Journal {
		ho.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	var inner slog.Handler
	if o.JSON {
		inner = slog.NewJSONHandler(out, ho)
	} else {
		inner = slog.NewTextHandler(out, ho)
	}
	return &handler{out: out, inner: inner}
}

// Priority is the syslog priority journald reads for a level: 3 (err) for
// errors, 4 (warning), 6 (info), 7 (debug).
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// output is the destination shared by a handler and every handler derived
// from it. With journal set, Handle holds mu across the inner handler's
// one Write of the record, so that Write knows the record's priority.
type output struct {
	w       io.Writer
	journal bool

	mu     sync.Mutex
	prefix []byte
}

func (o *output) Write(p []byte) (int, error) {
	if !o.journal {
		return o.w.Write(p)
	}
	line := make([]byte, 0, len(o.prefix)+len(p))
	line = append(append(line, o.prefix...), p...)
	if _, err := o.w.Write(line); err != nil {
		return 0, err
	}
	return len(p), nil
}

var prefixes = map[int][]byte{3: []byte("<3>"), 4: []byte("<4>"), 6: []byte("<6>"), 7: []byte("<7>")}

// handler keeps the attributes of the group still open (those given by
// With since the last WithGroup) and merges them with each record's, so
// that every key appears once; groups already closed live in inner.
type handler struct {
	out   *output
	inner slog.Handler
	attrs []slog.Attr
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	if len(as) == 0 {
		return h
	}
	return &handler{out: h.out, inner: h.inner, attrs: merge(slices.Clone(h.attrs), as)}
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	inner := h.inner
	if len(h.attrs) > 0 {
		inner = inner.WithAttrs(h.attrs)
	}
	return &handler{out: h.out, inner: inner.WithGroup(name)}
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	attrs := slices.Clone(h.attrs)
	var own []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		own = append(own, a)
		return true
	})
	attrs = merge(attrs, own)
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	nr.AddAttrs(attrs...)
	if !h.out.journal {
		return h.inner.Handle(ctx, nr)
	}
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.prefix = prefixes[Priority(r.Level)]
	return h.inner.Handle(ctx, nr)
}

// merge adds as to dst, an attribute whose key dst already has replacing
// that one in place. Attributes without a key (slog drops them, or
// inlines a group) are kept as they are.
func merge(dst, as []slog.Attr) []slog.Attr {
	for _, a := range as {
		i := -1
		if a.Key != "" {
			i = slices.IndexFunc(dst, func(b slog.Attr) bool { return b.Key == a.Key })
		}
		if i >= 0 {
			dst[i] = a
		} else {
			dst = append(dst, a)
		}
	}
	return dst
}

// JournalStream reports whether w is the stream systemd connected to its
// journal: systemd sets JOURNAL_STREAM to "DEVICE:INODE" of the stdout or
// stderr it gives a service, and a program should write journal-style
// lines only when its own stream is that one (and not, say, a pipe a
// technician ran it into).
func JournalStream(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	env := os.Getenv("JOURNAL_STREAM")
	if env == "" {
		return false
	}
	id, ok := StreamID(f)
	return ok && env == id
}

// StreamID is f's device and inode number as JOURNAL_STREAM spells them
// ("DEVICE:INODE"); false when they cannot be read.
func StreamID(f *os.File) (string, bool) {
	dev, ino, ok := fileID(f)
	if !ok {
		return "", false
	}
	return formatID(dev, ino), true
}
