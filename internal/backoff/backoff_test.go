package backoff

import (
	"testing"
	"time"
)

func TestCeil(t *testing.T) {
	p := Policy{Min: time.Second, Max: 16 * time.Second}
	for n, want := range map[int]time.Duration{-1: time.Second, 0: time.Second, 1: time.Second, 2: 2 * time.Second,
		3: 4 * time.Second, 5: 16 * time.Second, 6: 16 * time.Second, 1000: 16 * time.Second} {
		if got := p.Ceil(n); got != want {
			t.Errorf("Ceil(%d) = %v, want %v", n, got, want)
		}
	}
	// A Max below Min, or zeros, never give a wait below Min nor a loop
	// that does not end.
	if got := (Policy{Min: time.Second, Max: time.Millisecond}).Ceil(10); got != time.Second {
		t.Errorf("Max below Min: Ceil = %v, want Min", got)
	}
	if got := (Policy{}).Ceil(1 << 30); got != 0 {
		t.Errorf("zero policy: Ceil = %v, want 0", got)
	}
}

// TestDelayBounds: each wait lies in [Min, Ceil(n)], and the random source
// decides where: its lowest draw gives Min, its highest Ceil(n).
func TestDelayBounds(t *testing.T) {
	p := Policy{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	lowest := func(int64) int64 { return 0 }
	highest := func(k int64) int64 { return k - 1 }
	for n := 1; n <= 10; n++ {
		if got := p.delay(n, lowest); got != p.Min {
			t.Errorf("n=%d lowest draw: %v, want %v", n, got, p.Min)
		}
		if got := p.delay(n, highest); got != p.Ceil(n) {
			t.Errorf("n=%d highest draw: %v, want %v", n, got, p.Ceil(n))
		}
		for range 200 {
			if d := p.Delay(n); d < p.Min || d > p.Ceil(n) {
				t.Fatalf("n=%d: Delay %v outside [%v, %v]", n, d, p.Min, p.Ceil(n))
			}
		}
	}
}

// TestDelayJitters: the waits after many failures spread over their range
// (two gates that failed together do not retry together).
func TestDelayJitters(t *testing.T) {
	p := Policy{Min: time.Second, Max: 5 * time.Minute}
	var below, above int
	mid := (p.Min + p.Max) / 2
	for range 1000 {
		if p.Delay(20) < mid {
			below++
		} else {
			above++
		}
	}
	// Uniform: about 500 each; 350 is far outside chance (p < 1e-20).
	if below < 350 || above < 350 {
		t.Fatalf("1000 waits: %d below %v, %d above: not spread over [%v, %v]", below, mid, above, p.Min, p.Max)
	}
}

func TestBackoff(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	if d := b.Fail(); d != 100*time.Millisecond {
		t.Fatalf("first failure waits %v, want Min", d)
	}
	for range 5 {
		b.Fail()
	}
	if b.Failures() != 6 {
		t.Fatalf("Failures = %d, want 6", b.Failures())
	}
	if d := b.Fail(); d < 100*time.Millisecond || d > time.Second {
		t.Fatalf("wait %v outside [Min, Max]", d)
	}
	b.Reset()
	if b.Failures() != 0 || b.Fail() != 100*time.Millisecond {
		t.Fatal("after Reset the next failure does not wait Min")
	}
}

func TestCeilNoOverflow(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Duration(1<<63 - 1)}
	if got := p.Ceil(200); got != p.Max {
		t.Fatalf("Ceil(200) = %v, want Max", got)
	}
}
