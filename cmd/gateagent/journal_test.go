package main

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/internal/eventually"
	"gateagent/internal/logging"
	"gateagent/internal/syncbuf"
	"gateagent/scanner/scannertest"
)

// journalRun starts cmd with its stderr on a pipe and, when journal is
// set, JOURNAL_STREAM naming that pipe, as systemd does for a service
// whose output goes to the journal. It returns the stderr read so far and
// a wait for the exit status.
func journalRun(t *testing.T, cmd *exec.Cmd, journal bool) (*syncbuf.Buffer, func() int) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := logging.StreamID(w)
	if !ok {
		t.Fatal("no device and inode for a pipe")
	}
	if !journal {
		id = "0:0"
	}
	cmd.Env = append(cmd.Env, "JOURNAL_STREAM="+id)
	cmd.Stderr = w // the child's fd 2 is the pipe itself, as under systemd
	var stderr syncbuf.Buffer
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(&stderr, r)
		r.Close()
	}()
	wait := func() int {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("gateagent still running after 30 s:\n%s", stderr.String())
		}
		<-copied
		noCrash(t, cmd.ProcessState, stderr.String())
		return cmd.ProcessState.ExitCode()
	}
	return &stderr, wait
}

// journalLines checks that every line starts with a syslog priority and
// carries no timestamp, and returns the lines by priority.
func journalLines(t *testing.T, stderr string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if len(l) < 3 || !strings.Contains("<3><4><6><7>", l[:3]) {
			t.Errorf("line without a syslog priority: %q", l)
			continue
		}
		if strings.Contains(l, "time=") {
			t.Errorf("line with a timestamp of its own (the journal stamps it): %q", l)
		}
		out[l[:3]] = append(out[l[:3]], l)
	}
	return out
}

// TestJournaldPriorities runs the agent as systemd would, its stderr
// connected to the journal: each line carries its priority, so that
// `journalctl -p err -u gateagent` (priority 3 and below) shows exactly the
// errors; the journal stamps lines, so they carry no time of their own.
func TestJournaldPriorities(t *testing.T) {
	t.Run("runs, warns, stops", func(t *testing.T) {
		dir := t.TempDir()
		cfg := simConfig(t, dir, filepath.Join(dir, "cache.db"), "")
		// Its scanner is there (a gate without one is out of service,
		// an error): the one thing it waits for is the first key sync.
		if err := os.Symlink(scannertest.Start(t).Dev, filepath.Join(dir, "no-scanner")); err != nil {
			t.Fatal(err)
		}
		cmd := gateagent("run", "--config", cfg)
		stderr, wait := journalRun(t, cmd, true)
		eventually.True(t, 20*time.Second, "waiting for the first key sync", func() bool {
			return strings.Contains(stderr.String(), "waiting for the first key sync")
		})
		cmd.Process.Signal(syscall.SIGTERM)
		if code := wait(); code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, stderr)
		}
		by := journalLines(t, stderr.String())
		// The priority is the level's: a gate that has never synced is
		// an error (it cannot grant), and journalctl -p err shows it.
		for prio, level := range map[string]string{"<3>": "level=ERROR", "<4>": "level=WARN", "<6>": "level=INFO"} {
			for _, l := range by[prio] {
				if !strings.Contains(l, level) {
					t.Errorf("priority %s on a line not at %s: %q", prio, level, l)
				}
			}
		}
		if !contains(by["<3>"], "never synced") {
			t.Errorf("journalctl -p err would not show that the gate never synced:\n%s", stderr)
		}
		if !contains(by["<4>"], "waiting for the first key sync") {
			t.Errorf("the wait for the first key sync is not a warning (<4>):\n%s", stderr)
		}
		if !contains(by["<6>"], "gate stopped cleanly") {
			t.Errorf("the clean stop is not an info line (<6>):\n%s", stderr)
		}
	})
	t.Run("start-up fails", func(t *testing.T) {
		dir := t.TempDir()
		cfg := simConfig(t, dir, filepath.Join(dir, "state", "cache.db"), "")
		stderr, wait := journalRun(t, gateagent("run", "--config", cfg), true)
		if code := wait(); code != exitConfig {
			t.Fatalf("exit %d, want %d:\n%s", code, exitConfig, stderr)
		}
		errs := journalLines(t, stderr.String())["<3>"]
		if len(errs) != 1 || !strings.Contains(errs[0], "gate not started") || !strings.Contains(errs[0], "fix=") {
			t.Fatalf("journalctl -p err would show %q, want the one start-up error with its fix:\n%s", errs, stderr)
		}
	})
	t.Run("config unreadable", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.toml")
		os.WriteFile(bad, []byte("version = 1\n[gate]\nid = \"G\"\ndirecton = \"exit\"\nfoo = 1\n"), 0o600)
		stderr, wait := journalRun(t, gateagent("run", "--config", bad), true)
		if code := wait(); code != exitConfig {
			t.Fatalf("exit %d, want %d:\n%s", code, exitConfig, stderr)
		}
		by := journalLines(t, stderr.String())
		if len(by["<3>"]) < 2 || !contains(by["<3>"], "gate.directon: unknown key") || len(by) != 1 {
			t.Fatalf("the config's errors are not each an error line:\n%s", stderr)
		}
	})
	t.Run("not the journal's stream", func(t *testing.T) {
		// JOURNAL_STREAM set, but for another file (the agent run by hand
		// from a shell started by a service): plain lines with their time.
		dir := t.TempDir()
		cfg := simConfig(t, dir, filepath.Join(dir, "state", "cache.db"), "")
		stderr, wait := journalRun(t, gateagent("run", "--config", cfg), false)
		wait()
		if s := stderr.String(); !strings.HasPrefix(s, "time=") || strings.Contains(s, "<3>") {
			t.Fatalf("lines outside the journal: %q, want time= and no priority", s)
		}
	})
}

func contains(lines []string, s string) bool {
	for _, l := range lines {
		if strings.Contains(l, s) {
			return true
		}
	}
	return false
}
