// Package eventually is the one real-time wait of the tests: for what
// happens in another process or on a real device (a socat pty, a child
// agent, a program under qemu), where a fake clock cannot reach. Code on
// the time package is tested with testing/synctest instead, and nothing
// waits a fixed time to show that something did not happen: assert on a
// barrier (a counter, a journal) instead.
package eventually

import (
	"testing"
	"time"
)

// Poll is how often a condition is tried.
const Poll = 2 * time.Millisecond

// True waits until cond holds, trying it every Poll, and fails the test
// naming what it waited for when it has not within timeout.
func True(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Within(timeout, cond) {
		t.Fatalf("%s: not within %v", what, timeout)
	}
}

// Within waits until cond holds, trying it every Poll, and reports whether
// it did within timeout: for a caller whose failure says what it saw last
// (a test helper that reports the other process's output).
func Within(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(Poll)
	}
	return true
}
