package churn

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// procIO is this process's write counters from /proc/self/io:
//
//   - wchar: bytes handed to write(2) and its kin (pwrite, …), whatever
//     happens to them after;
//   - write_bytes: bytes this process caused to be sent to the storage
//     layer, counted when a page of the page cache turns dirty: a page at
//     a time, so 100 bytes written into a clean page count 4096, and a
//     page written twice before it reaches the disk counts once. With an
//     fsync after each commit, every commit's pages count whole.
//
// Neither counts the file system's own writes (its journal, inode
// tables): the kernel's journal thread makes those; a loop device of the
// run's own (Run.Dev) counts them, and counts what reached the device.
//
// On kernels whose page cache keeps a file in large folios (ext4 since
// 6.16 or so), write_bytes counts the whole folio a write dirties: one
// 4096-byte pwrite into a file written in 1 MB writes counted 1,048,576
// bytes on the 6.18 kernel of the build machine, while the device saw
// 4096 (docs/flash.md). It is reported, but not judged on.
type counters struct{ wchar, writeBytes, dev int64 }

// readIO reads the process's counters and, when dev is set, the device's.
func readIO(dev string) (counters, error) {
	raw, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return counters{}, err
	}
	var p counters
	for line := range strings.SplitSeq(string(raw), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(v, 10, 64)
		switch k {
		case "wchar":
			p.wchar = n
		case "write_bytes":
			p.writeBytes = n
		}
	}
	p.dev, err = devWritten(dev)
	return p, err
}

func (a counters) sub(b counters) counters {
	return counters{a.wchar - b.wchar, a.writeBytes - b.writeBytes, a.dev - b.dev}
}

// devWritten is the bytes written to block device dev (sectors written,
// the seventh field of /sys/block/DEV/stat, × 512); 0 when dev is "".
func devWritten(dev string) (int64, error) {
	if dev == "" {
		return 0, nil
	}
	raw, err := os.ReadFile("/sys/block/" + dev + "/stat")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(raw)
	if len(f) < 7 {
		return 0, fmt.Errorf("/sys/block/%s/stat: %d fields", dev, len(f))
	}
	n, err := strconv.ParseInt(string(f[6]), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/sys/block/%s/stat: %w", dev, err)
	}
	return n * 512, nil
}
