// Package kclock reads whether the kernel's clock is synchronised, as
// timedatectl's "System clock synchronized:" does: the kernel's maximum
// error, kept by the NTP discipline (systemd-timesyncd, chrony, ntpd), is
// under 16 s. No time daemon, or one that has lost its servers for long
// enough, lets it grow past that, and the kernel then sets STA_UNSYNC.
package kclock

import (
	"errors"
	"time"
)

// State is the kernel clock's synchronisation state.
type State struct {
	// Synced: the maximum error is below MaxSyncedError.
	Synced bool `json:"synced"`
	// Unsync: the kernel's STA_UNSYNC status bit (no time daemon has
	// declared the clock synchronised, or it lapsed).
	Unsync bool `json:"sta_unsync"`
	// MaxError and EstError are the kernel's maximum and estimated error.
	MaxError time.Duration `json:"max_error"`
	EstError time.Duration `json:"est_error"`
}

// MaxSyncedError is the kernel's NTP_PHASE_LIMIT: a maximum error at or
// above it means unsynchronised (systemd's ntp_synced()).
const MaxSyncedError = 16 * time.Second

// ErrUnsupported: this platform has no adjtimex.
var ErrUnsupported = errors.New("kclock: the kernel clock's state is not readable on this platform")

// Reader reads the kernel clock's state: Read, or a test's answer.
type Reader func() (State, error)

func fromTimex(maxErrorUS, estErrorUS int64, unsync bool) State {
	s := State{Unsync: unsync, MaxError: time.Duration(maxErrorUS) * time.Microsecond, EstError: time.Duration(estErrorUS) * time.Microsecond}
	s.Synced = s.MaxError < MaxSyncedError
	return s
}
