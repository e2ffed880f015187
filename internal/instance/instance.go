// Package instance keeps one agent per gate: an exclusive flock(2) on a
// lock file in the gate's state directory, taken before anything touches
// the board, the scanner port or the cache. A second agent on the same
// config finds the lock held, says which process holds it, and touches
// nothing.
//
// The kernel drops the lock when its holder dies, however it dies (SIGKILL,
// power), so there is never a stale lock to clean up. The file holds the
// holder's process ID, for the message of the process that is turned away.
package instance

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// FileName is the lock file's name in the gate's state directory.
const FileName = "gateagent.lock"

// PathFor is the lock file of the gate whose cache file is cachePath: its
// state directory holds both.
func PathFor(cachePath string) string {
	return filepath.Join(filepath.Dir(cachePath), FileName)
}

// ErrHeld: another process holds the lock. Errors of this package that say
// so are *HeldError values, which match ErrHeld with errors.Is.
var ErrHeld = errors.New("another process runs this gate")

// HeldError says who holds the lock.
type HeldError struct {
	Path string
	// PID is the holder's process ID, 0 when the file does not say.
	PID int
}

func (e *HeldError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("another gateagent (pid %d) runs this gate (lock %s)", e.PID, e.Path)
	}
	return fmt.Sprintf("another process holds this gate's lock %s (an agent, or gateagent diag working on its own)", e.Path)
}

// Is makes errors.Is(err, ErrHeld) true.
func (e *HeldError) Is(target error) bool { return target == ErrHeld }

// Lock is a held lock.
type Lock struct {
	f *os.File
}

// Acquire takes the lock at path without waiting, creating the file when
// absent, and writes this process's ID into it. It fails with a *HeldError
// when another process holds it.
func Acquire(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	writable := err == nil
	if errors.Is(err, fs.ErrPermission) {
		// A lock file another user made (root, running the agent by
		// hand once): flock works on a read-only descriptor too; only
		// the process ID cannot be written.
		if ro, rerr := os.Open(path); rerr == nil {
			f, err = ro, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("instance: lock: %w", err)
	}
	if err := flock(f, syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	if writable {
		// Best effort: the lock holds without it.
		if f.Truncate(0) == nil {
			f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
		}
	}
	return &Lock{f: f}, nil
}

// Share takes the lock at path shared with other sharers but never with an
// agent, without creating the file (a gate whose lock file does not exist
// has never had an agent running): how a tool that must not work beside a
// running agent (diag on its own, run --check) makes sure of that. It
// returns a *HeldError when an agent holds the lock. Release the returned
// lock when done.
func Share(path string) (*Lock, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &Lock{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("instance: lock: %w", err)
	}
	if err := flock(f, syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, err
	}
	return &Lock{f: f}, nil
}

func flock(f *os.File, how int) error {
	err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return &HeldError{Path: f.Name(), PID: pidIn(f)}
	}
	if err != nil {
		return fmt.Errorf("instance: lock %s: %w", f.Name(), err)
	}
	return nil
}

// pidIn reads the process ID the holder wrote; 0 when there is none, or
// when that process is gone (the lock is then held by a probe, and the ID
// is the last agent's).
func pidIn(f *os.File) int {
	var b [32]byte
	n, _ := f.ReadAt(b[:], 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return 0
	}
	return pid
}

// Release lets another agent take the gate. The process ID stays in the
// file: it is read only while the lock is held.
func (l *Lock) Release() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the last descriptor drops the flock
	l.f = nil
	return err
}
