package sdnotify

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"
)

// wait bounds every blocking step of these tests: generous, because they
// also run under -race and under qemu-user.
const wait = 5 * time.Second

// env is a getenv func over a fixed map.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

// listen makes a unixgram socket standing in for systemd's and returns its
// address as NOTIFY_SOCKET would name it.
func listen(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, path
}

func TestNoSocketIsNoop(t *testing.T) {
	t.Parallel()
	for name, n := range map[string]*Notifier{
		"empty env":      mustFromEnv(t, env()),
		"watchdog only":  mustFromEnv(t, env("WATCHDOG_USEC", "40000")),
		"malformed usec": mustFromEnv(t, env("WATCHDOG_USEC", "soon")), // ignored without a socket
		"nil Notifier":   nil,
	} {
		t.Run(name, func(t *testing.T) {
			if n.Enabled() {
				t.Error("Enabled() = true")
			}
			for what, err := range map[string]error{
				"Notify":   n.Notify("READY=1"),
				"Ready":    n.Ready("up"),
				"Stopping": n.Stopping(),
				"Status":   n.Status("fine"),
			} {
				if err != nil {
					t.Errorf("%s: %v", what, err)
				}
			}
			if d := n.WatchdogInterval(); d != 0 {
				t.Errorf("WatchdogInterval() = %v, want 0", d)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- n.Watchdog(ctx, func() error { t.Error("healthy called"); return nil }) }()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Watchdog: %v", err)
				}
			case <-time.After(wait):
				t.Fatal("Watchdog did not return when its context ended")
			}
		})
	}
}

func TestFromEnvDefaultsToOSGetenv(t *testing.T) {
	_, path := listen(t)
	t.Setenv("NOTIFY_SOCKET", path)
	t.Setenv("WATCHDOG_USEC", "3000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n := mustFromEnv(t, nil)
	if !n.Enabled() {
		t.Error("Enabled() = false with NOTIFY_SOCKET set")
	}
	if d := n.WatchdogInterval(); d != 1500*time.Millisecond {
		t.Errorf("WatchdogInterval() = %v, want 1.5s", d)
	}
}

func TestMalformedWatchdogUsec(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"soon", "-1", "1.5", "30s", "0x10", "99999999999999999999", "18446744073709551"} {
		n, err := FromEnv(env("NOTIFY_SOCKET", "/run/systemd/notify", "WATCHDOG_USEC", v))
		if err == nil {
			t.Errorf("WATCHDOG_USEC=%q: no error (interval %v)", v, n.WatchdogInterval())
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "WATCHDOG_USEC") || !strings.Contains(msg, strconv.Quote(v)) {
			t.Errorf("WATCHDOG_USEC=%q: unclear error %q", v, msg)
		}
	}
	// A zero means no watchdog, not a malformed value.
	n := mustFromEnv(t, env("NOTIFY_SOCKET", "/run/systemd/notify", "WATCHDOG_USEC", "0"))
	if d := n.WatchdogInterval(); d != 0 {
		t.Errorf("WATCHDOG_USEC=0: WatchdogInterval() = %v, want 0", d)
	}
}

func TestMessages(t *testing.T) {
	t.Parallel()
	conn, path := listen(t)
	n := mustFromEnv(t, env("NOTIFY_SOCKET", path))
	if !n.Enabled() {
		t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
	}
	if d := n.WatchdogInterval(); d != 0 {
		t.Errorf("WatchdogInterval() = %v without WATCHDOG_USEC, want 0", d)
	}
	for _, tc := range []struct {
		name string
		send func() error
		want string
	}{
		{"Ready", func() error { return n.Ready("gate in service") }, "READY=1\nSTATUS=gate in service"},
		{"Ready without status", func() error { return n.Ready("") }, "READY=1"},
		{"Status", func() error { return n.Status("feed 3 s old") }, "STATUS=feed 3 s old"},
		{"Status keeps to one line", func() error { return n.Status("a\nREADY=1\r\nb\x00c") }, "STATUS=a READY=1 b c"},
		{"Notify", func() error { return n.Notify("RELOADING=1\nSTATUS=reloading") }, "RELOADING=1\nSTATUS=reloading"},
		{"Stopping", n.Stopping, "STOPPING=1"},
	} {
		if err := tc.send(); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		// A datagram is queued on the socket when its send returns.
		if got := queued(t, conn); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s sent %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestSendErrorWithoutListener(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nobody.sock")
	n := mustFromEnv(t, env("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "40000"))
	err := n.Ready("up")
	if err == nil || !strings.HasPrefix(err.Error(), "sdnotify: ") {
		t.Errorf("Ready to a missing socket: err = %v, want an sdnotify error", err)
	}
	// The watchdog keeps trying and reports the failure when it ends.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := n.Watchdog(ctx, nil); err == nil || !strings.HasPrefix(err.Error(), "sdnotify: watchdog: ") {
		t.Errorf("Watchdog to a missing socket: err = %v, want an sdnotify watchdog error", err)
	}
}

// TestWatchdogPets runs the watchdog in a synctest bubble: its ticker runs
// on the bubble's clock, so each interval brings exactly one pet, and once
// Watchdog has returned no interval brings another.
func TestWatchdogPets(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		conn, path := listen(t)
		n := mustFromEnv(t, env("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "40000"))
		const every = 20 * time.Millisecond
		if d := n.WatchdogInterval(); d != every {
			t.Fatalf("WatchdogInterval() = %v, want %v", d, every)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- n.Watchdog(ctx, func() error { return nil }) }()

		synctest.Wait()
		if got := queued(t, conn); len(got) != 0 {
			t.Fatalf("pets before the first interval: %q", got)
		}
		for i := range 5 {
			time.Sleep(every)
			synctest.Wait()
			if got := queued(t, conn); len(got) != 1 || got[0] != "WATCHDOG=1" {
				t.Fatalf("interval %d brought %q, want one WATCHDOG=1", i+1, got)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watchdog: %v", err)
		}
		time.Sleep(3 * every)
		synctest.Wait()
		if extra := queued(t, conn); len(extra) > 0 {
			t.Errorf("pets after Watchdog returned: %q", extra)
		}
	})
}

// queued returns the datagrams waiting on conn, without waiting for more:
// in a synctest bubble, once every goroutine is idle, that is all that was
// sent.
func queued(t *testing.T, conn *net.UnixConn) []string {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		buf := make([]byte, 4096)
		var n int
		var rerr error
		if err := raw.Read(func(fd uintptr) bool {
			n, _, rerr = syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if errors.Is(rerr, syscall.EAGAIN) {
			return got
		}
		if rerr != nil {
			t.Fatal(rerr)
		}
		got = append(got, string(buf[:n]))
	}
}

// health is a healthy func whose answer the test switches.
type health struct {
	mu  sync.Mutex
	err error
}

func (h *health) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *health) set(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = err
}

// TestWatchdogWithholdsPetsWhileUnhealthy runs in a synctest bubble, one
// interval at a time: each tick's datagrams are exactly what that tick
// sent.
func TestWatchdogWithholdsPetsWhileUnhealthy(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		conn, path := listen(t)
		n := mustFromEnv(t, env("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "40000"))
		every := n.WatchdogInterval()
		if err := n.Ready("gate in service"); err != nil {
			t.Fatal(err)
		}
		if got := queued(t, conn); !reflect.DeepEqual(got, []string{"READY=1\nSTATUS=gate in service"}) {
			t.Fatalf("Ready sent %q", got)
		}

		h := &health{err: errors.New("gate controller not answering")}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- n.Watchdog(ctx, h.check) }()
		tick := func(what string, want ...string) {
			t.Helper()
			time.Sleep(every)
			synctest.Wait()
			if got := queued(t, conn); !reflect.DeepEqual(got, want) && (len(got) > 0 || len(want) > 0) {
				t.Fatalf("%s: the tick sent %q, want %q", what, got, want)
			}
		}

		// Failing: one STATUS with the error's text, however many ticks
		// pass, and no WATCHDOG=1.
		tick("unhealthy", "STATUS=gate controller not answering")
		for range 5 {
			tick("still unhealthy")
		}
		// A different failure is reported once too.
		h.set(errors.New("gate controller: lock\njammed"))
		tick("the failure changed", "STATUS=gate controller: lock jammed")
		tick("still that failure")
		// Healthy again: the status set by Ready comes back, then pets
		// resume.
		h.set(nil)
		tick("recovered", "STATUS=gate in service", "WATCHDOG=1")
		tick("healthy", "WATCHDOG=1")
		// Failing again with the first text reports it again: it is a
		// change.
		h.set(errors.New("gate controller not answering"))
		tick("failing again", "STATUS=gate controller not answering")
		tick("still failing")

		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watchdog: %v", err)
		}
	})
}

func TestWatchdogPID(t *testing.T) {
	t.Parallel()
	me := strconv.Itoa(os.Getpid())
	other := strconv.Itoa(os.Getpid() + 1)
	for _, tc := range []struct {
		pid  string
		want time.Duration
	}{
		{"", 20 * time.Millisecond},
		{me, 20 * time.Millisecond},
		{other, 0},
		{"systemd", 0},
	} {
		n := mustFromEnv(t, env("NOTIFY_SOCKET", "/run/systemd/notify", "WATCHDOG_USEC", "40000", "WATCHDOG_PID", tc.pid))
		if d := n.WatchdogInterval(); d != tc.want {
			t.Errorf("WATCHDOG_PID=%q (we are %s): WatchdogInterval() = %v, want %v", tc.pid, me, d, tc.want)
		}
	}

	// Another process's watchdog: Watchdog sends nothing and checks
	// nothing for 150 ms (on a bubble's clock), while the other messages
	// still go out.
	synctest.Test(t, func(t *testing.T) {
		conn, path := listen(t)
		n := mustFromEnv(t, env("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "40000", "WATCHDOG_PID", other))
		ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
		defer cancel()
		if err := n.Watchdog(ctx, func() error { t.Error("healthy called"); return nil }); err != nil {
			t.Errorf("Watchdog: %v", err)
		}
		if got := queued(t, conn); len(got) > 0 {
			t.Errorf("Watchdog for another pid sent %q", got)
		}
		if err := n.Stopping(); err != nil {
			t.Fatal(err)
		}
		if got := queued(t, conn); !reflect.DeepEqual(got, []string{"STOPPING=1"}) {
			t.Errorf("Stopping sent %q", got)
		}
	})
}

func mustFromEnv(t *testing.T, getenv func(string) string) *Notifier {
	t.Helper()
	n, err := FromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
