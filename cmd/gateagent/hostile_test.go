package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/config/configtest"
	"gateagent/internal/eventually"
)

// TestSpecialFilesRefusedAtOnce: a file the agent reads whole (its config,
// a key file, a TLS file) replaced by a FIFO, a directory or a device is
// refused at once, naming what was found: opening a FIFO with no writer
// would block for ever, reading /dev/zero would fill the memory. The
// process exits by itself (runGateagent allows it 30 s) with EX_CONFIG.
func TestSpecialFilesRefusedAtOnce(t *testing.T) {
	fifo := func(t *testing.T, path string) {
		t.Helper()
		os.Remove(path)
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// set returns the config's path after replacing a file of dir's.
		set  func(t *testing.T, dir, keysDir string) string
		want []string
	}{
		{"config is a FIFO", func(t *testing.T, dir, _ string) string {
			p := filepath.Join(dir, "fifo.toml")
			fifo(t, p)
			return p
		}, []string{"fifo.toml", "not a regular file: a FIFO"}},
		{"config is a directory", func(t *testing.T, dir, _ string) string {
			return dir
		}, []string{"not a regular file: a directory"}},
		{"cache key is a FIFO", func(t *testing.T, dir, keysDir string) string {
			cfg := simConfigKeys(t, dir, filepath.Join(dir, "cache.db"), "", configtest.TOML(t, keysDir))
			fifo(t, filepath.Join(keysDir, "cache.key"))
			return cfg
		}, []string{"cache.key", "not a regular file: a FIFO"}},
		{"CA file is a FIFO", func(t *testing.T, dir, _ string) string {
			ca := filepath.Join(dir, "ca.pem")
			fifo(t, ca)
			return simConfig(t, dir, filepath.Join(dir, "cache.db"), fmt.Sprintf("ca_file = %q", ca))
		}, []string{"feed.ca_file", "not a regular file: a FIFO"}},
		{"CA file is /dev/zero", func(t *testing.T, dir, _ string) string {
			ca := filepath.Join(dir, "ca.pem")
			if err := os.Symlink("/dev/zero", ca); err != nil {
				t.Fatal(err)
			}
			return simConfig(t, dir, filepath.Join(dir, "cache.db"), fmt.Sprintf("ca_file = %q", ca))
		}, []string{"feed.ca_file", "not a regular file: a character device"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := tc.set(t, dir, t.TempDir())
			for _, args := range [][]string{{"run", "--config", cfg, "--check", "--user", me(t)}, {"run", "--config", cfg}} {
				r := runGateagent(t, gateagent(args...))
				if r.code != exitConfig {
					t.Errorf("%q: exit %d, want %d:\n%s", args, r.code, exitConfig, r.stderr)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("%q: the message lacks %q:\n%s", args, w, r.stderr)
					}
				}
				if strings.Contains(r.stdout, "relay on") {
					t.Errorf("%q: the relay moved: %q", args, r.stdout)
				}
			}
		})
	}
}

// TestDamagedFIFOJournal: the journal's directory replaced by a FIFO is damage
// like any other: moved aside (its salvage does not wait on the FIFO for a
// writer), a new journal made, the gate runs, and SIGTERM stops it.
// `gateagent cache check` on the FIFO says what it is and exits 1.
func TestDamagedFIFOJournal(t *testing.T) {
	dir := t.TempDir()
	cachePath := filepath.Join(dir, "cache.db")
	if err := syscall.Mkfifo(filepath.Join(dir, "journal"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startGateagent(t, gateagent("run", "--config", simConfig(t, dir, cachePath, "")))
	cmd, out, errOut, done := p.cmd, &p.out, &p.errOut, p.done
	eventually.True(t, 20*time.Second, "the agent running on a new journal", func() bool {
		return strings.Contains(errOut.String(), "waiting for the first key sync")
	})
	if !strings.Contains(errOut.String(), "the journal is damaged") || !strings.Contains(errOut.String(), "not a directory: a FIFO") {
		t.Errorf("the log does not say the journal was a FIFO:\n%s", errOut.String())
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after SIGTERM:\n%s", errOut.String())
	}
	noCrash(t, cmd.ProcessState, errOut.String())
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0:\n%s", code, errOut.String())
	}
	if strings.Contains(out.String(), "relay on") {
		t.Errorf("the relay moved: %q", out.String())
	}
	moved, _ := filepath.Glob(filepath.Join(dir, "journal.damaged-*"))
	if len(moved) != 1 {
		t.Fatalf("moved aside: %q", moved)
	}
	r := runGateagent(t, gateagent("cache", "check", moved[0]))
	if r.code != 1 || !strings.Contains(r.stderr, "not a regular file: a FIFO") {
		t.Errorf("cache check of a FIFO: exit %d, want 1 naming the FIFO:\n%s", r.code, r.stderr)
	}
}

// TestStartWithoutScannerIsOutOfService: a gate whose scanner port is not
// there cannot read a code: its first verdict, logged at start, is "out
// of service" naming the scanner (an error), not a mere wait for the
// first key sync.
func TestStartWithoutScannerIsOutOfService(t *testing.T) {
	dir := t.TempDir()
	p := startGateagent(t, gateagent("run", "--config", simConfig(t, dir, filepath.Join(dir, "cache.db"), "")))
	errOut := &p.errOut
	eventually.True(t, 20*time.Second, "the first verdict", func() bool {
		return strings.Contains(errOut.String(), "service")
	})
	first := ""
	for _, l := range strings.Split(errOut.String(), "\n") {
		if strings.Contains(l, "service") {
			first = l
			break
		}
	}
	if !strings.Contains(first, "level=ERROR") || !strings.Contains(first, "gate out of service") || !strings.Contains(first, "the scanner is not connected") {
		t.Errorf("first verdict: %s\n%s", first, errOut.String())
	}
}
