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
	"testing"
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

// recv reads one datagram, failing the test if none comes within d.
func recv(t *testing.T, conn *net.UnixConn, d time.Duration) string {
	t.Helper()
	msg, ok := tryRecv(t, conn, d)
	if !ok {
		t.Fatalf("no datagram within %v", d)
	}
	return msg
}

// tryRecv reads one datagram if one comes within d.
func tryRecv(t *testing.T, conn *net.UnixConn, d time.Duration) (string, bool) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return "", false
		}
		t.Fatal(err)
	}
	return string(buf[:n]), true
}

// drain returns the datagrams already queued: it reads until none comes
// within d, and fails the test if datagrams keep coming for longer than wait.
func drain(t *testing.T, conn *net.UnixConn, d time.Duration) []string {
	t.Helper()
	var got []string
	deadline := time.Now().Add(wait)
	for {
		msg, ok := tryRecv(t, conn, d)
		if !ok {
			return got
		}
		got = append(got, msg)
		if time.Now().After(deadline) {
			t.Fatalf("datagrams still coming after %v: %q", wait, got)
		}
	}
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
		if got := recv(t, conn, wait); got != tc.want {
			t.Errorf("%s sent %q, want %q", tc.name, got, tc.want)
		}
	}
	if extra := drain(t, conn, 20*time.Millisecond); len(extra) > 0 {
		t.Errorf("unexpected datagrams %q", extra)
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

func TestWatchdogPets(t *testing.T) {
	t.Parallel()
	conn, path := listen(t)
	n := mustFromEnv(t, env("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "40000"))
	const every = 20 * time.Millisecond
	if d := n.WatchdogInterval(); d != every {
		t.Fatalf("WatchdogInterval() = %v, want %v", d, every)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- n.Watchdog(ctx, func() error { return nil }) }()

	const pets = 5
	for i := range pets {
		if got := recv(t, conn, wait); got != "WATCHDOG=1" {
			t.Fatalf("datagram %d = %q, want WATCHDOG=1", i, got)
		}
	}
	// A ticker never fires early, so five pets take at least five
	// intervals; an upper bound would only measure the machine's load.
	if el := time.Since(start); el < pets*every {
		t.Errorf("%d pets in %v: faster than every %v", pets, el, every)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watchdog: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Watchdog did not return when its context ended")
	}
	// Nothing after it returned (beyond a pet already in flight).
	time.Sleep(3 * every)
	for _, m := range drain(t, conn, 10*time.Millisecond) {
		if m != "WATCHDOG=1" {
			t.Errorf("unexpected datagram %q", m)
		}
	}
	if extra := drain(t, conn, 3*every); len(extra) > 0 {
		t.Errorf("pets after Watchdog returned: %q", extra)
	}
}

// health is a healthy func whose answer the test switches, counting calls.
type health struct {
	mu    sync.Mutex
	err   error
	calls int
}

func (h *health) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls++
	return h.err
}

func (h *health) set(err error) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.err = err
	return h.calls
}

// waitCalls waits until healthy has been called n times in all. Watchdog
// sends a tick's datagram before it calls healthy again, so by then every
// datagram of the first n-1 calls is queued on the socket.
func (h *health) waitCalls(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		h.mu.Lock()
		c := h.calls
		h.mu.Unlock()
		if c >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthy called %d times within %v, want %d", c, wait, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatchdogWithholdsPetsWhileUnhealthy(t *testing.T) {
	t.Parallel()
	conn, path := listen(t)
	n := mustFromEnv(t, env("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "40000"))
	if err := n.Ready("gate in service"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, conn, wait); got != "READY=1\nSTATUS=gate in service" {
		t.Fatalf("Ready sent %q", got)
	}

	h := &health{err: errors.New("gate controller not answering")}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Watchdog(ctx, h.check) }()

	// Failing: one STATUS with the error's text, however many ticks pass,
	// and no WATCHDOG=1.
	h.waitCalls(t, 6)
	want := []string{"STATUS=gate controller not answering"}
	if got := drain(t, conn, 30*time.Millisecond); !reflect.DeepEqual(got, want) {
		t.Fatalf("while unhealthy: got %q, want %q", got, want)
	}

	// A different failure is reported once too. (At most one check already
	// under way may still see the old error; it sends nothing.)
	c := h.set(errors.New("gate controller: lock\njammed"))
	h.waitCalls(t, c+4)
	want = []string{"STATUS=gate controller: lock jammed"}
	if got := drain(t, conn, 30*time.Millisecond); !reflect.DeepEqual(got, want) {
		t.Fatalf("after the failure changed: got %q, want %q", got, want)
	}

	// Healthy again: the status set by Ready comes back, then pets resume.
	// (Pets keep coming now, so read them one by one rather than drain.)
	h.set(nil)
	for i, want := range []string{"STATUS=gate in service", "WATCHDOG=1", "WATCHDOG=1"} {
		if got := recv(t, conn, wait); got != want {
			t.Fatalf("after recovery, datagram %d = %q, want %q", i, got, want)
		}
	}

	// Failing again with the first text reports it again: it is a change.
	c = h.set(errors.New("gate controller not answering"))
	got := recv(t, conn, wait)
	for got == "WATCHDOG=1" { // pets queued before the switch
		got = recv(t, conn, wait)
	}
	if want := "STATUS=gate controller not answering"; got != want {
		t.Fatalf("failing again: got %q, want %q", got, want)
	}
	h.waitCalls(t, c+4)
	if extra := drain(t, conn, 30*time.Millisecond); len(extra) > 0 {
		t.Fatalf("failing again: then %q, want nothing", extra)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watchdog: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("Watchdog did not return when its context ended")
	}
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

	// Another process's watchdog: Watchdog sends nothing and checks nothing,
	// while the other messages still go out.
	conn, path := listen(t)
	n := mustFromEnv(t, env("NOTIFY_SOCKET", path, "WATCHDOG_USEC", "40000", "WATCHDOG_PID", other))
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	if err := n.Watchdog(ctx, func() error { t.Error("healthy called"); return nil }); err != nil {
		t.Errorf("Watchdog: %v", err)
	}
	if got := drain(t, conn, 30*time.Millisecond); len(got) > 0 {
		t.Errorf("Watchdog for another pid sent %q", got)
	}
	if err := n.Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, conn, wait); got != "STOPPING=1" {
		t.Errorf("Stopping sent %q", got)
	}
}

func mustFromEnv(t *testing.T, getenv func(string) string) *Notifier {
	t.Helper()
	n, err := FromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
