//go:build !linux

package fsaccess

// Check is not supported here: the agent runs on Linux.
func Check(path string, mode Mode, u User) (Method, error) { return "", ErrUnsupported }

// ReadOnly is not supported here.
func ReadOnly(path string) (bool, error) { return false, ErrUnsupported }
