package logging

import (
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"gateagent/internal/syncbuf"
)

func lines(buf *syncbuf.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestRepeatsSpew: 10,000 lines of a kind in under a second write one
// line, and the timer alone writes their count when the interval ends; an
// interval with none ends the run, and the next line is written at once.
func TestRepeatsSpew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncbuf.Buffer
		r := NewTimedRepeats(New(&buf, Options{Journal: true}), 10*time.Second)
		defer r.Close()
		for i := range 10000 {
			r.Log(slog.LevelInfo, "malformed", "denied", "reason", "MALFORMED", "length", i%7)
			if i%100 == 0 {
				time.Sleep(5 * time.Millisecond) // 10,000 lines over 0.5 s
			}
		}
		if got := lines(&buf); len(got) != 1 || !strings.HasPrefix(got[0], "<6>") || strings.Contains(got[0], "repeated") {
			t.Fatalf("during the spew: %q, want the first line alone", got)
		}
		time.Sleep(10 * time.Second) // the interval ends: nothing else happens but the timer
		synctest.Wait()
		got := lines(&buf)
		if len(got) != 2 || !strings.Contains(got[1], `msg=denied reason=MALFORMED length=3 repeated=9999 over=10s`) {
			t.Fatalf("after the interval: %q, want the count of the 9999 held back", got)
		}
		time.Sleep(time.Minute) // quiet: the run ends, nothing more is written
		synctest.Wait()
		if got := lines(&buf); len(got) != 2 {
			t.Fatalf("a quiet interval wrote %q", got[2:])
		}
		r.Log(slog.LevelInfo, "malformed", "denied", "reason", "MALFORMED")
		if got := lines(&buf); len(got) != 3 || strings.Contains(got[2], "repeated") {
			t.Fatalf("after the run ended, a new line: %q, want it written at once", got[2:])
		}
	})
}

// TestRepeatsSustained: a spew that goes on writes one count per interval.
func TestRepeatsSustained(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf syncbuf.Buffer
		r := NewTimedRepeats(New(&buf, Options{}), time.Second)
		defer r.Close()
		for range 10 * 100 { // 10 s at 100 lines a second
			r.Log(slog.LevelWarn, "k", "scanner line too long, dropped")
			time.Sleep(10 * time.Millisecond)
		}
		got := lines(&buf)
		if len(got) < 9 || len(got) > 11 {
			t.Fatalf("10 s of 100 lines a second wrote %d lines, want about one a second:\n%s", len(got), buf.String())
		}
		r.Close() // writes the count of the last interval
		total := 0
		for _, l := range lines(&buf) {
			total += repeated(l)
		}
		if total != 1000 {
			t.Fatalf("the lines count %d in all, want 1000:\n%s", total, buf.String())
		}
	})
}

// repeated is how many lines one written line stands for.
func repeated(line string) int {
	i := strings.Index(line, "repeated=")
	if i < 0 {
		return 1
	}
	n, _ := strconv.Atoi(strings.Fields(line[i+len("repeated="):])[0])
	return n
}

// TestRepeatsKinds: kinds are counted apart; End writes a kind's count at
// once and ends its run; Close writes what is pending.
func TestRepeatsKinds(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	var buf syncbuf.Buffer
	r := NewRepeats(New(&buf, Options{}), time.Minute, func() time.Time { return now })
	r.Log(slog.LevelWarn, "enoent", "scanner port not available", "err", "no such file")
	r.Log(slog.LevelWarn, "enoent", "scanner port not available", "err", "no such file")
	r.Log(slog.LevelWarn, "eacces", "scanner port not available", "err", "permission denied")
	if got := lines(&buf); len(got) != 2 {
		t.Fatalf("two kinds wrote %q, want each kind's first line", got)
	}
	if next := r.Next(); !next.Equal(now.Add(time.Minute)) {
		t.Fatalf("Next = %v, want the interval's end", next)
	}
	if next := r.Flush(); len(lines(&buf)) != 2 || !next.Equal(now.Add(time.Minute)) {
		t.Fatalf("Flush before the interval ends wrote %q", lines(&buf))
	}
	r.End("enoent")
	got := lines(&buf)
	if len(got) != 3 || !strings.Contains(got[2], `err="no such file" repeated=1 over=1m0s`) {
		t.Fatalf("End: %q, want the count of enoent", got)
	}
	r.Log(slog.LevelWarn, "enoent", "scanner port not available", "err", "no such file")
	if got := lines(&buf); len(got) != 4 || strings.Contains(got[3], "repeated") {
		t.Fatalf("after End the next line is not written at once: %q", got)
	}
	r.Log(slog.LevelWarn, "eacces", "scanner port not available", "err", "permission denied")
	r.Close()
	if got := lines(&buf); len(got) != 5 || !strings.Contains(got[4], "permission denied\" repeated=1") {
		t.Fatalf("Close: %q, want the pending count of eacces", got)
	}
	// Closed: nothing is held back any more.
	r.Log(slog.LevelWarn, "eacces", "scanner port not available", "err", "permission denied")
	r.Log(slog.LevelWarn, "eacces", "scanner port not available", "err", "permission denied")
	if got := lines(&buf); len(got) != 7 {
		t.Fatalf("after Close: %q, want each line written", got[5:])
	}
}
