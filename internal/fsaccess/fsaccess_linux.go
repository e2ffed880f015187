//go:build linux

package fsaccess

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Check reports whether u may access path with mode, and how that was
// judged. A nil error means it may; a refusal is a *Denied.
func Check(path string, mode Mode, u User) (Method, error) {
	deny := func(err error) error { return &Denied{Path: path, Mode: mode, User: u, Err: err} }
	switch {
	case os.Getuid() == u.UID && os.Getgid() == u.GID && os.Geteuid() == u.UID:
		// access(2) checks with the real IDs: ours are the user's.
		if err := unix.Faccessat(unix.AT_FDCWD, path, uint32(mode), 0); err != nil {
			return Kernel, deny(err)
		}
		return Kernel, nil
	case os.Geteuid() == 0:
		if err := accessAs(path, mode, u); err != nil {
			return Kernel, deny(err)
		}
		return Kernel, nil
	}
	if err := modeBits(path, mode, u); err != nil {
		return ModeBits, deny(err)
	}
	return ModeBits, nil
}

// accessAs calls access(2) on a thread that has taken u's IDs and groups.
// The thread is locked to its goroutine and never unlocked: the runtime
// ends it with the goroutine, so no other goroutine ever runs with the
// user's credentials (and while it is locked, the runtime starts new
// threads from a clean template thread, not from this one).
func accessAs(path string, mode Mode, u User) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := setThreadIDs(u); err != nil {
			done <- fmt.Errorf("fsaccess: take the IDs of %s: %w", u, err)
			return
		}
		done <- unix.Faccessat(unix.AT_FDCWD, path, uint32(mode), 0)
	}()
	return <-done
}

// setThreadIDs sets this thread's groups, then its group and user IDs
// (real, effective and saved): the raw system calls change only the
// calling thread, unlike syscall.Setuid, which changes every thread.
func setThreadIDs(u User) error {
	groups := make([]uint32, 0, len(u.Groups)+1)
	groups = append(groups, uint32(u.GID))
	for _, g := range u.Groups {
		groups = append(groups, uint32(g))
	}
	if _, _, e := unix.RawSyscall(sysSetgroups, uintptr(len(groups)), uintptr(unsafe.Pointer(&groups[0])), 0); e != 0 {
		return e
	}
	if _, _, e := unix.RawSyscall(sysSetresgid, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return e
	}
	if _, _, e := unix.RawSyscall(sysSetresuid, uintptr(u.UID), uintptr(u.UID), uintptr(u.UID)); e != 0 {
		return e
	}
	return nil
}

// modeBits judges from ownership and permission bits alone: every
// directory on the way must be searchable, the path must grant mode to
// u's class (owner, group or other), and a write needs a writable mount.
func modeBits(path string, mode Mode, u User) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		if err := allows(dir, Search, u); err != nil {
			return err
		}
		if dir == filepath.Dir(dir) {
			break
		}
	}
	if err := allows(abs, mode, u); err != nil {
		return err
	}
	if mode&Write != 0 {
		if ro, err := ReadOnly(abs); err == nil && ro {
			return unix.EROFS
		}
	}
	return nil
}

func allows(path string, mode Mode, u User) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return err
	}
	perm := Mode(st.Mode & 0o7)
	switch {
	case u.UID == 0:
		if mode&Search == 0 || st.Mode&0o111 != 0 {
			return nil
		}
		return unix.EACCES
	case int(st.Uid) == u.UID:
		perm = Mode(st.Mode>>6) & 0o7
	case int(st.Gid) == u.GID || slices.Contains(u.Groups, int(st.Gid)):
		perm = Mode(st.Mode>>3) & 0o7
	}
	if perm&mode != mode {
		return unix.EACCES
	}
	return nil
}

// ReadOnly reports whether the file system holding path is mounted
// read-only: then no write can succeed, whoever asks, even through a file
// already open for writing.
func ReadOnly(path string) (bool, error) {
	var s unix.Statfs_t
	if err := unix.Statfs(path, &s); err != nil {
		return false, &os.PathError{Op: "statfs", Path: path, Err: err}
	}
	return s.Flags&unix.ST_RDONLY != 0, nil
}
