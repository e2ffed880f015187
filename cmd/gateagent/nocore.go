package main

import (
	"fmt"
	"syscall"
)

// forbidCoreDumps sets the process's core file size limit to 0, soft and
// hard (the hard limit cannot be raised again without privileges): a
// gateagent process holds the cache key, the fleet keys and certificate
// keys in its memory, and a core dump (a crash under GOTRACEBACK=crash,
// say) would write them to the disk. The kernel then writes no core file,
// and systemd-coredump stores none ("Resource limits disable core
// dumping"). The unit's LimitCORE=0 says the same before the process
// starts.
//
// It does not use prctl(PR_SET_DUMPABLE, 0), which would also keep the
// process from reading its own /proc/self/io (the wear meter).
func forbidCoreDumps() error {
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &syscall.Rlimit{}); err != nil {
		return fmt.Errorf("set the core file size limit to 0: %w", err)
	}
	return nil
}
