package scanner

import (
	"fmt"
	"testing"
	"time"
)

func TestDedup(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	d := NewDedup(2 * time.Second)
	steps := []struct {
		text string
		ms   int
		want bool // suppressed
	}{
		{"TR1:A", 0, false},
		{"TR1:A", 100, true},   // the scanner repeats it
		{"TR1:B", 200, false},  // another code
		{"TR1:A", 1900, true},  // still in view
		{"TR1:A", 3800, true},  // 1.9 s after its LAST read: held in view, still suppressed
		{"TR1:A", 5801, false}, // a pause of 2 s or more: a new scan
		{"TR1:B", 5900, false}, // B's last read was long ago
		{"TR1:A ", 5950, false},
		{"TR1:A", 7800, true}, // 1999 ms after 5801
		{"TR1:A", 9800, false},
	}
	for _, s := range steps {
		if got := d.Seen([]byte(s.text), at(s.ms)); got != s.want {
			t.Errorf("Seen(%q) at %d ms = %v, want %v", s.text, s.ms, got, s.want)
		}
	}
}

func TestDedupOff(t *testing.T) {
	for _, w := range []time.Duration{0, -time.Second} {
		d := NewDedup(w)
		now := time.Now()
		for range 3 {
			if d.Seen([]byte("TR1:A"), now) {
				t.Fatalf("window %v suppressed a repeat", w)
			}
		}
	}
	var nilDedup *Dedup
	if nilDedup.Seen([]byte("x"), time.Now()) {
		t.Fatal("a nil Dedup suppressed a text")
	}
}

// TestDedupBounded: a Dedup remembers the DedupSize most recent texts, and
// forgets the least recently read one first.
func TestDedupBounded(t *testing.T) {
	t0 := time.Now()
	d := NewDedup(time.Minute)
	text := func(i int) []byte { return fmt.Appendf(nil, "TR1:%03d", i) }
	for i := range DedupSize {
		if d.Seen(text(i), t0) {
			t.Fatalf("text %d suppressed on its first read", i)
		}
	}
	// Read text 0 again: it becomes the most recent; text 1 is now the
	// least recently read.
	if !d.Seen(text(0), t0.Add(time.Second)) {
		t.Fatal("text 0 not suppressed")
	}
	// A new text evicts text 1 only.
	if d.Seen(text(100), t0.Add(2*time.Second)) {
		t.Fatal("a new text suppressed")
	}
	if !d.Seen(text(0), t0.Add(3*time.Second)) {
		t.Fatal("text 0 forgotten though read recently")
	}
	if d.Seen(text(1), t0.Add(4*time.Second)) {
		t.Fatal("text 1 still remembered: the least recently read should have been evicted")
	}
	// Many texts in turn: the last DedupSize are remembered, no more.
	for i := range 1000 {
		d.Seen(text(1000+i), t0.Add(5*time.Second+time.Duration(i)*time.Millisecond))
	}
	later := t0.Add(6 * time.Second)
	if !d.Seen(text(1999), later) || !d.Seen(text(1999-DedupSize+1), later) {
		t.Fatal("one of the last DedupSize texts was forgotten")
	}
	if d.Seen(text(1999-DedupSize), later) {
		t.Fatal("more than DedupSize texts remembered")
	}
}
