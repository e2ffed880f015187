package seglog_test

import (
	"gateagent/internal/seglog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// BenchmarkAppend: one record of one block (a grant's event, a passage),
// written and synced, on the file system of the test's temporary
// directory, beside BenchmarkAppendFloor, the same block written with
// pwrite and fdatasync at the next offset of a file made beforehand.
// What a record costs above the floor is its header, its CRC and the
// segments' rotation.
func BenchmarkAppend(b *testing.B) {
	l, _, err := openAll(b.TempDir(), &seglog.Options{SegmentSize: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	payload := make([]byte, 200)
	b.SetBytes(seglog.BlockSize)
	for b.Loop() {
		if _, err := l.Append(1, payload); err != nil {
			b.Fatal(err)
		}
	}
	s := l.Stats()
	b.ReportMetric(float64(s.Syncs)/float64(b.N), "syncs/op")
}

func BenchmarkAppendFloor(b *testing.B) {
	const size = 1 << 20
	f, err := os.Create(filepath.Join(b.TempDir(), "floor"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(make([]byte, size), 0); err != nil {
		b.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		b.Fatal(err)
	}
	block := make([]byte, seglog.BlockSize)
	var off int64
	b.SetBytes(seglog.BlockSize)
	for b.Loop() {
		if _, err := f.WriteAt(block, off); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
		off = (off + seglog.BlockSize) % size
	}
}
