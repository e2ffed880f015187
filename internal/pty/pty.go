// Package pty opens a pseudo-terminal pair in pure Go, so that the demo can
// feed its scanner through a real serial device (opened by go.bug.st/serial
// like any /dev/ttyUSB0) on a machine that has nothing but this repository:
// no socat, no cgo.
//
// Only Linux is supported; elsewhere Open returns an error.
package pty

import (
	"errors"
	"os"
	"sync"
)

// Pair is an open pty: write to Master what a scanner would send; a serial
// library opens SlavePath.
type Pair struct {
	Master    *os.File
	SlavePath string // e.g. /dev/pts/3

	slave     *os.File // held open until Close; see Open
	closeOnce sync.Once
	closeErr  error
}

// Close closes both ends held by the Pair. Whoever opened SlavePath keeps
// its own descriptor (reads on it then fail or see end of file). Calling
// Close again returns the first call's result.
func (p *Pair) Close() error {
	p.closeOnce.Do(func() {
		var errs []error
		if p.slave != nil {
			errs = append(errs, p.slave.Close())
		}
		if p.Master != nil {
			errs = append(errs, p.Master.Close())
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}
