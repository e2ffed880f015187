package cache

import (
	"fmt"
	"runtime/debug"
)

// safely runs fn and turns what a damaged file can do to a reader into a
// *CorruptError for path:
//
//   - bbolt panics when it meets a page that is not what it wrote;
//   - a read through the memory map at an address the file does not back
//     (a page number pointing past its end, a disk that fails to read)
//     raises SIGBUS or SIGSEGV, which the runtime turns into a fatal
//     "fault" that no recover catches, unless the goroutine has asked for
//     a panic instead.
//
// So fn runs with debug.SetPanicOnFault(true), restored before safely
// returns: the setting belongs to the calling goroutine, and fn must not
// hand the map to another (bbolt's own tx.Check does, which is why the
// cache checks its files itself). Every read and write of a file goes
// through here.
func safely(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if p := recover(); p != nil {
			err = &CorruptError{Path: path, Kind: Damaged, Detail: describePanic(p), Problems: 1}
		}
	}()
	return fn()
}

// describePanic says what a recovered panic was: a memory fault names its
// address, bbolt's assertions say themselves.
func describePanic(p any) string {
	if f, ok := p.(interface{ Addr() uintptr }); ok {
		return fmt.Sprintf("memory fault reading the file at address %#x", f.Addr())
	}
	s := fmt.Sprint(p)
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return "bbolt: " + s
}
