//go:build linux

package kclock

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Read asks the kernel (adjtimex with no change requested; any user may).
func Read() (State, error) {
	var tx unix.Timex
	if _, err := unix.Adjtimex(&tx); err != nil {
		return State{}, fmt.Errorf("kclock: adjtimex: %w", err)
	}
	return fromTimex(int64(tx.Maxerror), int64(tx.Esterror), tx.Status&unix.STA_UNSYNC != 0), nil
}
