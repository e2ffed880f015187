package station

import (
	"errors"
	"fmt"
)

// The errors of this package. Each is wrapped with its context; match them
// with errors.Is.
var (
	// ErrConfig: the station config cannot be used.
	ErrConfig = errors.New("station: bad config")
	// ErrMalformed: a peer's message or state is not in the wire format.
	ErrMalformed = errors.New("station: malformed peer data")
	// ErrKeyMode: a key file may be read by others than its owner.
	ErrKeyMode = errors.New("readable by others than its owner")
	// ErrKeyFormat: a key file does not hold a key.
	ErrKeyFormat = errors.New("not a station key")
	// ErrClosed: the node was closed.
	ErrClosed = errors.New("station: closed")
)

// KeyFileError is a station key file that cannot be used.
type KeyFileError struct {
	Path string
	Err  error // ErrKeyMode, ErrKeyFormat, or the file system's error
}

func (e *KeyFileError) Error() string { return fmt.Sprintf("station key %s: %v", e.Path, e.Err) }

func (e *KeyFileError) Unwrap() error { return e.Err }
