package lowprio

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// niceOf reads a thread's niceness from /proc (field 19 of its stat).
func niceOf(t *testing.T, tid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/task/" + strconv.Itoa(tid) + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	n, err := strconv.Atoi(f[16]) // fields after the name start at 3
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLower: the goroutine's thread runs at Nice; other threads keep
// theirs, and the thread goes with the goroutine.
func TestLower(t *testing.T) {
	base := niceOf(t, syscall.Getpid())
	tids := make(chan int)
	done := make(chan struct{})
	go func() {
		if err := Lower(); err != nil {
			t.Error(err)
		}
		tids <- syscall.Gettid()
		<-done
	}()
	tid := <-tids
	if got := niceOf(t, tid); got != max(Nice, base) {
		t.Errorf("lowered thread %d: nice %d, want %d", tid, got, max(Nice, base))
	}
	if got := niceOf(t, syscall.Gettid()); got != base {
		t.Errorf("the test's own thread: nice %d, want %d as before", got, base)
	}
	close(done)
}
