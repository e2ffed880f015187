// Package scannertest runs a linked pty pair with socat for tests of the
// serial scanner: the code under test opens Socat.Dev as its scanner port,
// and the test writes what the scanner would send to Socat.Peer.
package scannertest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
)

// RequireEnv names the environment variable that makes a missing socat a
// test failure rather than a skip (CI sets it).
const RequireEnv = "GATEAGENT_REQUIRE_SOCAT"

// startTimeout bounds the wait for socat's links, and for socat to exit.
const startTimeout = 5 * time.Second

// Socat is a linked pty pair made by socat: the gate opens Dev, tests
// write to Peer.
type Socat struct {
	Dev, Peer string // symlink paths in a temporary directory

	bin string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the running socat has exited
	stderr *syncbuf.Buffer
}

// Start runs `socat -d -d pty,raw,echo=0,link=DEV pty,raw,echo=0,link=PEER`
// and waits (at most 5 s) for both links. If socat is not on PATH the test
// is skipped, or fails if the environment variable GATEAGENT_REQUIRE_SOCAT
// is set. A cleanup kills socat and waits for it.
func Start(t testing.TB) *Socat {
	t.Helper()
	bin, err := exec.LookPath("socat")
	if err != nil {
		if os.Getenv(RequireEnv) != "" {
			t.Fatalf("socat not found (%v) and %s is set: install socat (apt-get install socat)", err, RequireEnv)
		}
		t.Skipf("socat not found (%v): install socat to run the serial scanner tests", err)
	}
	dir := t.TempDir()
	// socat's address syntax gives these characters a meaning: a test
	// name may put them in the temporary directory's path.
	if strings.ContainsAny(dir, ",:!'\"\\ ;{}[]()%") {
		if dir, err = os.MkdirTemp("", "scannertest"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	s := &Socat{Dev: filepath.Join(dir, "dev"), Peer: filepath.Join(dir, "peer"), bin: bin}
	t.Cleanup(func() { s.stop() })
	s.start(t)
	return s
}

func (s *Socat) start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("scannertest: socat is already running")
	}
	s.removeLinks()
	stderr := &syncbuf.Buffer{}
	cmd := exec.Command(s.bin, "-d", "-d",
		"pty,raw,echo=0,link="+s.Dev, "pty,raw,echo=0,link="+s.Peer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("scannertest: start socat: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done, s.stderr = cmd, done, stderr

	if !eventually.Within(startTimeout, func() bool {
		select {
		case <-done:
			s.cmd = nil
			t.Fatalf("scannertest: socat exited before making its ptys:\n%s", stderr.String())
		default:
		}
		// The links come before socat has made the ptys raw: its notice
		// that the transfer starts comes after (a byte written earlier is
		// cooked, "\n" becoming "\r\n").
		return exists(s.Dev) && exists(s.Peer) && strings.Contains(stderr.String(), "starting data transfer loop")
	}) {
		s.killLocked()
		t.Fatalf("scannertest: socat made no ptys %s and %s within %v:\n%s", s.Dev, s.Peer, startTimeout, stderr.String())
	}
}

// exists reports whether path leads to a file (a live pty).
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Kill kills socat with SIGKILL and waits for it: the pty pair vanishes,
// as when a USB scanner is unplugged. socat cannot remove its links after
// SIGKILL, so Kill removes them: a dangling link could otherwise come to
// point to another test's pty.
func (s *Socat) Kill(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.killLocked(); err != nil {
		t.Fatal(err)
	}
}

// Restart starts socat again with the same link paths, killing it first
// if it still runs; open the peer again with OpenPeer.
func (s *Socat) Restart(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	err := s.killLocked()
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	s.start(t)
}

// Stderr returns what socat printed (its -d -d diagnostics).
func (s *Socat) Stderr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stderr == nil {
		return ""
	}
	return s.stderr.String()
}

func (s *Socat) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.killLocked()
}

func (s *Socat) killLocked() error {
	if s.cmd == nil {
		return nil
	}
	cmd, done := s.cmd, s.done
	s.cmd = nil
	_ = cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(startTimeout):
		return errors.New("scannertest: socat did not exit within 5 s of SIGKILL")
	}
	s.removeLinks()
	return nil
}

func (s *Socat) removeLinks() {
	// An error here shows as socat failing to make its link.
	_ = os.Remove(s.Dev)
	_ = os.Remove(s.Peer)
}

// OpenPeer opens the peer end for writing (and reading what the gate
// sends). The file is closed when the test ends.
func (s *Socat) OpenPeer(t testing.TB) *os.File {
	t.Helper()
	f, err := os.OpenFile(s.Peer, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("scannertest: open the peer pty: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
