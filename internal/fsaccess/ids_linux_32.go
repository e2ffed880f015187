//go:build linux && (arm || 386)

package fsaccess

import "golang.org/x/sys/unix"

// On 32-bit arm and 386 the plain calls take 16-bit IDs; the 32 variants
// take the full ones.
const (
	sysSetgroups = unix.SYS_SETGROUPS32
	sysSetresgid = unix.SYS_SETRESGID32
	sysSetresuid = unix.SYS_SETRESUID32
)
