// Package lowprio runs a goroutine's work below the gate's in the
// kernel's scheduling: the key feed's batches, the cache's maintenance,
// the wear report's count. On a two-core board they would otherwise take
// a core from the serial read and the controller just as a passenger
// scans (BenchmarkScanToRelayUnderChurn).
package lowprio

import (
	"fmt"
	"runtime"
	"syscall"
)

// Nice is the niceness of a lowered thread: the kernel gives it about a
// tenth of a core that a thread of the default niceness wants, and
// preempts it when one wakes. With the BFQ I/O scheduler its I/O class
// follows (best effort, level 6 of 7).
const Nice = 10

// Lower locks the calling goroutine to its OS thread and lowers that
// thread's priority to Nice (a thread already lower stays so). Call it first thing in a goroutine of its
// own, which then never unlocks: when the goroutine ends, Go ends the
// thread with it, so the priority reaches no other goroutine. An error
// (a kernel that refuses) leaves the goroutine as it was, unlocked; the
// caller goes on at the default priority.
func Lower() error {
	runtime.LockOSThread()
	// On Linux a thread ID names one thread to setpriority(2), not the
	// process; the raw getpriority returns 20 - nice. A thread already
	// as low (the gate started under nice 19) stays as it is: going back
	// up would need a privilege.
	tid := syscall.Gettid()
	if p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid); err == nil && 20-p >= Nice {
		return nil
	}
	if err := syscall.Setpriority(syscall.PRIO_PROCESS, tid, Nice); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("lower the priority of a background thread: %w", err)
	}
	return nil
}

// Follow returns a function that puts the goroutine that calls it at the
// priority of the thread that called Follow: a goroutine that a lowered
// one starts for part of its work (the cache sealing a run beside its
// commits) is no higher than it. Call Follow in the starting goroutine
// and the function first thing in the new one, which then never unlocks.
// From a goroutine at the default priority it returns a function that
// does nothing.
func Follow() (apply func()) {
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Gettid())
	nice := 20 - p // the raw getpriority: see Lower
	if err != nil || nice <= 0 {
		return func() {}
	}
	return func() {
		runtime.LockOSThread()
		tid := syscall.Gettid()
		if p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid); err == nil && 20-p >= nice {
			return
		}
		if syscall.Setpriority(syscall.PRIO_PROCESS, tid, nice) != nil {
			runtime.UnlockOSThread() // as Lower: goes on at the default
		}
	}
}
