// Package sdnotify tells systemd about the daemon's state: readiness,
// stopping, a free-text status, and the watchdog keep-alive of a
// Type=notify service with WatchdogSec= set.
//
// It speaks the sd_notify(3) datagram protocol directly, without
// libsystemd or go-systemd: each message is one datagram of
// newline-separated VAR=value assignments sent to the unix datagram socket
// named by $NOTIFY_SOCKET. A leading '@' in the socket name means Linux's
// abstract namespace (the net package maps '@' to the leading NUL byte).
//
// Outside systemd (no $NOTIFY_SOCKET) the Notifier does nothing and every
// method returns nil, so callers never need to check Enabled first. A nil
// *Notifier behaves the same way.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// sendTimeout bounds one datagram write: systemd drains its socket
// promptly, and a daemon must never hang on telling it something.
const sendTimeout = time.Second

// Notifier sends sd_notify datagrams to $NOTIFY_SOCKET (unixgram; a
// leading '@' means the abstract namespace).
type Notifier struct {
	addr     *net.UnixAddr // nil: no NOTIFY_SOCKET, every method is a no-op
	watchdog time.Duration // WATCHDOG_USEC when it applies to this process; 0 otherwise

	mu     sync.Mutex
	status string // the last STATUS= set by Ready or Status, restored when health comes back
}

// FromEnv reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (the
// watchdog applies only if WATCHDOG_PID is unset or equals os.Getpid()).
// getenv is os.Getenv when nil; tests pass their own.
//
// Without NOTIFY_SOCKET the Notifier is a no-op (Enabled() false) and every
// method returns nil; the WATCHDOG_* variables are then ignored, since a
// watchdog that cannot be petted cannot be honoured. A WATCHDOG_PID that is
// not this process's pid (including one that is not a number) turns the
// watchdog off, as sd_watchdog_enabled(3) does.
//
// The only error is a malformed WATCHDOG_USEC: it must be a decimal number
// of microseconds. "0" means no watchdog.
func FromEnv(getenv func(string) string) (*Notifier, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	n := &Notifier{}
	sock := getenv("NOTIFY_SOCKET")
	if sock == "" {
		return n, nil
	}
	n.addr = &net.UnixAddr{Name: sock, Net: "unixgram"}

	usec := strings.TrimSpace(getenv("WATCHDOG_USEC"))
	if usec == "" {
		return n, nil
	}
	v, err := strconv.ParseUint(usec, 10, 64)
	if err != nil || v > uint64(maxDuration/time.Microsecond) {
		return nil, fmt.Errorf("sdnotify: malformed WATCHDOG_USEC %q: want a whole number of microseconds, like 30000000 for WatchdogSec=30", usec)
	}
	if pid := strings.TrimSpace(getenv("WATCHDOG_PID")); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return n, nil // the watchdog is another process's job
	}
	n.watchdog = time.Duration(v) * time.Microsecond
	return n, nil
}

const maxDuration = time.Duration(1<<63 - 1)

// Enabled reports whether there is a NOTIFY_SOCKET to talk to.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends state as one datagram, verbatim: newline-separated
// assignments such as "READY=1\nSTATUS=gate in service".
func (n *Notifier) Notify(state string) error {
	if !n.Enabled() {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer conn.Close()
	if err := conn.SetWriteDeadline(time.Now().Add(sendTimeout)); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sdnotify: send %q: %w", firstLine(state), err)
	}
	return nil
}

// Ready tells systemd that start-up is complete (READY=1), together with
// STATUS=status when status is not empty.
func (n *Notifier) Ready(status string) error {
	if !n.Enabled() {
		return nil
	}
	if status == "" {
		return n.Notify("READY=1")
	}
	status = oneLine(status)
	n.remember(status)
	return n.Notify("READY=1\nSTATUS=" + status)
}

// Stopping tells systemd that the service is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1") }

// Status sets the free-text status shown by systemctl status (STATUS=s).
// Newlines in s become spaces, since a newline would start a new assignment.
func (n *Notifier) Status(s string) error {
	if !n.Enabled() {
		return nil
	}
	s = oneLine(s)
	n.remember(s)
	return n.Notify("STATUS=" + s)
}

// WatchdogInterval is how often to pet: half of WATCHDOG_USEC, as
// sd_watchdog_enabled(3) advises; 0 when no watchdog is asked for.
func (n *Notifier) WatchdogInterval() time.Duration {
	if !n.Enabled() {
		return 0
	}
	return n.watchdog / 2
}

// Watchdog sends WATCHDOG=1 every WatchdogInterval while healthy() returns
// nil (a nil healthy counts as always healthy), until ctx ends. The first
// pet is one interval after the call.
//
// When healthy() fails it does NOT pet, so that systemd restarts the hung
// service once WatchdogSec passes, and it sends STATUS= with the error's
// text, once per change of that text. When health comes back it pets again
// and restores the last status set with Ready or Status, if any.
//
// healthy runs on Watchdog's goroutine; a check that takes longer than the
// interval delays the next one (ticks are dropped, never queued), and
// Watchdog returns only after a running check has returned.
//
// A failed send does not stop the loop: the next tick tries again, and if
// the socket is really gone systemd's own timeout does the right thing.
// Watchdog returns when ctx ends: nil, or the first send error it met.
// Without a watchdog (WatchdogInterval 0) it just waits for ctx to end and
// returns nil.
func (n *Notifier) Watchdog(ctx context.Context, healthy func() error) error {
	every := n.WatchdogInterval()
	if every <= 0 {
		<-ctx.Done()
		return nil
	}
	var (
		sendErr  error
		reported string // the failure text last sent as STATUS=; "" while healthy
		failing  bool
	)
	keep := func(err error) {
		if err != nil && sendErr == nil {
			sendErr = fmt.Errorf("sdnotify: watchdog: %w", err)
		}
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return sendErr
		case <-t.C:
		}
		var err error
		if healthy != nil {
			err = healthy()
		}
		if ctx.Err() != nil {
			return sendErr
		}
		if err != nil {
			text := oneLine(err.Error())
			if text == "" {
				text = "unhealthy"
			}
			if !failing || text != reported {
				keep(n.Notify("STATUS=" + text))
				reported, failing = text, true
			}
			continue
		}
		if failing {
			failing, reported = false, ""
			if s := n.lastStatus(); s != "" {
				keep(n.Notify("STATUS=" + s))
			}
		}
		keep(n.Notify("WATCHDOG=1"))
	}
}

func (n *Notifier) remember(status string) {
	n.mu.Lock()
	n.status = status
	n.mu.Unlock()
}

func (n *Notifier) lastStatus() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.status
}

// oneLine keeps a value inside one VAR=value assignment: a newline would
// start a new one, and systemd rejects messages containing NUL.
func oneLine(s string) string {
	return strings.TrimSpace(lineBreaks.Replace(s))
}

var lineBreaks = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "\x00", " ")

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + "…"
	}
	return s
}
