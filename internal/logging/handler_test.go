package logging

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"
)

// TestOneKeyPerAttribute: a key given again, by a later With or by the
// record, is written once, with the latest value, in the first one's place.
func TestOneKeyPerAttribute(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Options{})
	log.With("part", "gate", "gate", "E07").With("part", "scanner").Info("scanner port open", "port", "/dev/x", "gate", "E08")
	line := buf.String()
	if strings.Count(line, "part=") != 1 || !strings.Contains(line, "part=scanner gate=E08 port=/dev/x") {
		t.Fatalf("line %q: want part=scanner gate=E08 port=/dev/x, each key once", line)
	}
	if !strings.HasPrefix(line, "time=") {
		t.Fatalf("line %q: outside the journal a line carries its time", line)
	}
}

// TestKeysInGroups: the same key in two groups is two keys; in the same
// group, one.
func TestKeysInGroups(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Options{JSON: true})
	log.With("a", 1).WithGroup("g").With("a", 2).With("a", 3).Info("m", "a", 4, "b", 5)
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("not one JSON object: %q: %v", buf.String(), err)
	}
	g, _ := got["g"].(map[string]any)
	if got["a"] != 1.0 || g["a"] != 4.0 || g["b"] != 5.0 || len(g) != 2 {
		t.Fatalf("got %s, want a=1 and g{a=4, b=5}", buf.String())
	}
	// Text: each key once (slog's own handler writes g.a three times).
	buf.Reset()
	New(&buf, Options{}).WithGroup("g").With("a", 2).Info("m", "a", 4)
	if line := buf.String(); strings.Count(line, "g.a=") != 1 || !strings.Contains(line, "g.a=4") {
		t.Fatalf("line %q: want g.a=4 once", line)
	}
}

func TestPriority(t *testing.T) {
	for l, want := range map[slog.Level]int{slog.LevelError: 3, slog.LevelError + 4: 3, slog.LevelWarn: 4,
		slog.LevelInfo: 6, slog.LevelInfo + 1: 6, slog.LevelDebug: 7, slog.LevelDebug - 4: 7} {
		if got := Priority(l); got != want {
			t.Errorf("Priority(%v) = %d, want %d", l, got, want)
		}
	}
}

// TestJournalLines: under the journal each line starts with its syslog
// priority, which journald strips and files the line under (so that
// journalctl -p err finds the errors), and has no time of its own.
func TestJournalLines(t *testing.T) {
	for _, jsonOut := range []bool{false, true} {
		var buf bytes.Buffer
		log := New(&buf, Options{Journal: true, JSON: jsonOut, Level: slog.LevelDebug})
		log.Error("e", "err", "boom")
		log.Warn("w")
		log.Info("i")
		log.With("part", "gate").Debug("d")
		want := []string{"<3>", "<4>", "<6>", "<7>"}
		sc := bufio.NewScanner(&buf)
		for i := 0; sc.Scan(); i++ {
			line := sc.Text()
			if i >= len(want) || !strings.HasPrefix(line, want[i]) {
				t.Fatalf("json %v: line %d %q, want prefix %v", jsonOut, i, line, want)
			}
			if strings.Contains(line, "time") {
				t.Errorf("json %v: line %q carries a time: the journal stamps lines itself", jsonOut, line)
			}
			rest := line[3:]
			if jsonOut && !json.Valid([]byte(rest)) {
				t.Errorf("after the prefix, not JSON: %q", rest)
			}
		}
	}
}

// TestJournalStream: journal lines only when JOURNAL_STREAM names the very
// file written to, as systemd sets it for a service's stderr.
func TestJournalStream(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	id, ok := StreamID(w)
	if !ok {
		t.Fatal("StreamID of a pipe failed")
	}
	other, _, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	t.Setenv("JOURNAL_STREAM", id)
	if !JournalStream(w) {
		t.Fatalf("JOURNAL_STREAM=%s and the stream is that pipe: not recognised", id)
	}
	if JournalStream(other) {
		t.Fatal("another pipe taken for the journal's stream")
	}
	if JournalStream(&bytes.Buffer{}) {
		t.Fatal("a buffer taken for the journal's stream")
	}
	t.Setenv("JOURNAL_STREAM", "")
	if JournalStream(w) {
		t.Fatal("no JOURNAL_STREAM, yet journal lines")
	}
	t.Setenv("JOURNAL_STREAM", "garbage")
	if JournalStream(w) {
		t.Fatal("a malformed JOURNAL_STREAM taken as a match")
	}
}

// BenchmarkHandler: one info line with three attributes given by With and
// two by the record, through slog's text handler and through this one.
func BenchmarkHandler(b *testing.B) {
	for _, h := range []struct {
		name string
		log  *slog.Logger
	}{
		{"slog_text", slog.New(slog.NewTextHandler(io.Discard, nil))},
		{"logging_text", New(io.Discard, Options{})},
		{"logging_journal", New(io.Discard, Options{Journal: true})},
	} {
		b.Run(h.name, func(b *testing.B) {
			log := h.log.With("part", "gate").With("gate", "E07", "part", "scanner")
			b.ReportAllocs()
			for b.Loop() {
				log.Info("denied", "reason", "MALFORMED", "length", 7)
			}
		})
	}
}
