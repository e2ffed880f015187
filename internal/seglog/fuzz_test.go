package seglog_test

import (
	"errors"
	"fmt"
	"gateagent/internal/seglog"
	"gateagent/internal/seglog/seglogtest"
	"testing"
)

// FuzzOpen: whatever bytes the segment files hold, seglog.Open neither panics
// nor hangs; it reads consecutive records or reports damage, and a log it
// opens for writing takes a record that the next open reads back after
// the others.
func FuzzOpen(f *testing.F) {
	// Seeds: a real log of three segments, whole and with bytes changed.
	seed := seglogtest.NewCrashFS()
	o := &seglog.Options{SegmentSize: 2 * seglog.BlockSize, FS: seed}
	l, _, err := openAll("/d", o)
	if err != nil {
		f.Fatal(err)
	}
	for i := range 5 {
		if _, err := l.Append(byte(i), fmt.Appendf(nil, "record %d", i)); err != nil {
			f.Fatal(err)
		}
	}
	l.Close()
	var whole []byte
	names, _ := seed.ReadDir("/d")
	for _, n := range names {
		b, _ := seed.ReadFile("/d/" + n)
		whole = append(whole, b...)
	}
	f.Add(whole, uint8(2))
	f.Add(whole[:3*seglog.BlockSize], uint8(1))
	damaged := append([]byte(nil), whole...)
	damaged[headerLen+2] ^= 1
	f.Add(damaged, uint8(2))
	f.Add([]byte("GLG1"), uint8(0))
	f.Fuzz(func(t *testing.T, data []byte, blocks uint8) {
		if len(data) > 64*seglog.BlockSize {
			return
		}
		fs := seglogtest.NewCrashFS()
		// Segments of blocks+1 blocks (the last one what is left), named
		// as generations 1, 2, 3...
		size := (int(blocks%4) + 1) * seglog.BlockSize
		for gen := 1; len(data) > 0; gen++ {
			n := min(size, len(data))
			name := fmt.Sprintf("/d/t.%020d.log", gen)
			fs.WriteFile(name, data[:n])
			data = data[n:]
		}
		o := &seglog.Options{SegmentSize: 2 * seglog.BlockSize, FS: fs}
		l, got, err := openAll("/d", o)
		if err != nil {
			if !errors.Is(err, seglog.ErrDamaged) {
				t.Fatalf("open: %v, want damage", err)
			}
			return
		}
		for i := 1; i < len(got); i++ {
			if got[i].lsn != got[i-1].lsn+1 {
				t.Fatalf("records %d then %d", got[i-1].lsn, got[i].lsn)
			}
		}
		lsn, err := l.Append(9, []byte("appended"))
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		l.Close()
		_, again, err := openAll("/d", o)
		if err != nil {
			t.Fatalf("reopen after an append: %v", err)
		}
		if len(again) == 0 || again[len(again)-1] != (rec{lsn, 9, "appended"}) {
			t.Fatalf("reopen: the appended record %d is not the last of %d", lsn, len(again))
		}
	})
}
