package lowprio

import (
	"os"
	"runtime"
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
	// The test's own thread, at the default priority (the process's main
	// thread may be one a lowered goroutine ended on, kept as it was).
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	base := niceOf(t, syscall.Gettid())
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

// TestFollow: a goroutine started by a lowered one, which calls what
// Follow returned, runs at the lowered one's priority; one started by a
// goroutine at the default priority stays at it.
func TestFollow(t *testing.T) {
	type nices struct{ starter, helper int }
	got := make(chan nices)
	done := make(chan struct{})
	defer close(done)
	start := func(lower bool) nices {
		go func() {
			runtime.LockOSThread() // its thread's niceness is its own to read
			if lower {
				if err := Lower(); err != nil {
					t.Error(err)
				}
			}
			starter := niceOf(t, syscall.Gettid())
			apply := Follow()
			go func() {
				apply()
				got <- nices{starter, niceOf(t, syscall.Gettid())}
				<-done
			}()
			<-done
		}()
		return <-got
	}
	def := start(false)
	if def.helper != def.starter {
		t.Errorf("helper of a goroutine at the default priority: nice %d, want %d", def.helper, def.starter)
	}
	low := start(true)
	if low.starter != max(Nice, def.starter) || low.helper != low.starter {
		t.Errorf("helper of a lowered goroutine (nice %d): nice %d, want %d", low.starter, low.helper, max(Nice, def.starter))
	}
}
