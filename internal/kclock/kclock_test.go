package kclock

import (
	"errors"
	"testing"
	"time"
)

func TestFromTimex(t *testing.T) {
	cases := []struct {
		maxUS  int64
		unsync bool
		synced bool
	}{
		{5_000, false, true},
		{15_999_999, false, true},
		{16_000_000, true, false}, // the kernel's cap: unsynchronised
		{16_000_000, false, false},
		{20_000, true, true}, // as timedatectl: the error bound decides, not the bit
	}
	for _, c := range cases {
		s := fromTimex(c.maxUS, 100, c.unsync)
		if s.Synced != c.synced || s.Unsync != c.unsync || s.MaxError != time.Duration(c.maxUS)*time.Microsecond || s.EstError != 100*time.Microsecond {
			t.Errorf("fromTimex(%d, %v) = %+v, want synced %v", c.maxUS, c.unsync, s, c.synced)
		}
	}
}

// TestRead asks this machine's kernel: whatever it answers, the answer is
// consistent (the error bound decides).
func TestRead(t *testing.T) {
	s, err := Read()
	if errors.Is(err, ErrUnsupported) {
		t.Skip("no adjtimex on this platform")
	}
	if err != nil {
		t.Fatal(err)
	}
	if s.MaxError < 0 || s.Synced != (s.MaxError < MaxSyncedError) {
		t.Fatalf("state %+v", s)
	}
	t.Logf("this machine's clock: %+v", s)
}
