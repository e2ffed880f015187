//go:build !linux

package kclock

// Read is not supported here: the agent runs on Linux.
func Read() (State, error) { return State{}, ErrUnsupported }
