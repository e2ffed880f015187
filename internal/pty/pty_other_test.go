//go:build !linux

package pty

import (
	"runtime"
	"testing"
)

func TestOpenUnsupported(t *testing.T) {
	p, err := Open()
	if p != nil || err == nil || err.Error() != "pty: not supported on "+runtime.GOOS {
		t.Errorf("Open() = %v, %v; want nil, \"pty: not supported on %s\"", p, err, runtime.GOOS)
	}
}
