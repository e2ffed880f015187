// Package regfile opens the files the agent reads whole (its config, key
// files, TLS files, a cache to check) so that what is not a regular file
// is refused at once: a FIFO in a file's place would block open(2) until
// a writer came, /dev/zero or a directory would never read to an end.
// The file is opened without blocking (O_NONBLOCK, which changes nothing
// for a regular file) and checked with fstat before a byte is read.
package regfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegular: the path names a directory, a FIFO, a device or a socket.
var ErrNotRegular = errors.New("not a regular file")

// ErrTooLarge: the file is larger than its reader allows.
var ErrTooLarge = errors.New("file too large")

// Open opens path for reading when it is a regular file (following
// symbolic links). Any other kind is an *fs.PathError wrapping
// ErrNotRegular that names the kind found, and opening it never blocks.
func Open(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, &fs.PathError{Op: "open", Path: path, Err: &kindError{mode: fi.Mode()}}
	}
	return f, fi, nil
}

// ReadFile reads the regular file at path, at most max bytes; a larger
// one is an *fs.PathError wrapping ErrTooLarge.
func ReadFile(path string, max int64) ([]byte, error) {
	f, _, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		clear(b)
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)}
	}
	return b, nil
}

// kindError is ErrNotRegular naming the kind of file found.
type kindError struct{ mode fs.FileMode }

func (e *kindError) Error() string { return ErrNotRegular.Error() + ": " + Kind(e.mode) }

func (e *kindError) Is(target error) bool { return target == ErrNotRegular }

// Kind names the type of file m describes, as a person would.
func Kind(m fs.FileMode) string {
	switch t := m.Type(); {
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case t&fs.ModeSocket != 0:
		return "a socket"
	case t&fs.ModeCharDevice != 0:
		return "a character device"
	case t&fs.ModeDevice != 0:
		return "a block device"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	case t == 0:
		return "a regular file"
	}
	return "a special file"
}
