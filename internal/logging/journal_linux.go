package logging

import (
	"os"
	"strconv"
	"syscall"
)

// fileID is the device and inode number of f, as systemd writes them in
// JOURNAL_STREAM.
func fileID(f *os.File) (dev, ino uint64, ok bool) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), uint64(st.Ino), true
}

// formatID writes a device and inode number as JOURNAL_STREAM does.
func formatID(dev, ino uint64) string {
	return strconv.FormatUint(dev, 10) + ":" + strconv.FormatUint(ino, 10)
}
