//go:build !linux

package pty

import (
	"fmt"
	"runtime"
)

// Open returns an error: pseudo-terminals are only opened on Linux.
func Open() (*Pair, error) {
	return nil, fmt.Errorf("pty: not supported on %s", runtime.GOOS)
}
