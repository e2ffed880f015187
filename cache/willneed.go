package cache

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// willNeed asks the kernel to read b, a part of the file's memory map,
// ahead of its use. bbolt maps the file for random access (no read-ahead
// on a fault), right for a lookup's few pages; a run's filter is read
// whole at open, and page by page from a cold flash it would cost a fault
// each (about 130 ms for a 5M run's 7.5 MB, against 15 ms read ahead).
// A small value (a small run's filter, or one bbolt copied) is left
// alone. The range is passed as numbers, never made a pointer again, so
// no pointer points outside its allocation (checkptr).
func willNeed(b []byte) {
	if len(b) < 64<<10 {
		return
	}
	ps := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(&b[0]))
	aligned := start &^ (ps - 1)
	unix.Syscall(unix.SYS_MADVISE, aligned, start-aligned+uintptr(len(b)), unix.MADV_WILLNEED)
	runtime.KeepAlive(b)
}
