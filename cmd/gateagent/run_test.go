package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/config/configtest"
	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
)

// running is a command of gateagent run in the test's own process, as main
// runs it.
type running struct {
	out, log syncbuf.Buffer // its stdout (the simulated board's printout) and stderr
	done     chan int       // its exit status
}

func startRunning(args ...string) *running {
	r := &running{done: make(chan int, 1)}
	go func() { r.done <- run(args, &r.out, &r.log) }()
	return r
}

// sigterm sends the process SIGTERM, as systemd stops the gate, and checks
// that the command exits 0 within 10 s.
func (r *running) sigterm(t *testing.T) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-r.done:
		if code != 0 {
			t.Fatalf("exit %d after SIGTERM, want 0:\n%s", code, r.log.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still running 10 s after SIGTERM")
	}
}

func TestRunCheck(t *testing.T) {
	// The example config, with its state and runtime directories here.
	dir := t.TempDir()
	ex, err := os.ReadFile("../../configs/gateagent.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	ex = []byte(strings.NewReplacer("/var/lib/gateagent", dir, "/run/gateagent", dir).Replace(string(ex)))
	configtest.Credentials(t) // the example names the unit's credentials
	example := filepath.Join(dir, "gateagent.toml")
	os.WriteFile(example, ex, 0o600)
	if code, out, errOut := runArgs("run", "--config", example, "--check", "--user", me(t)); code != 0 || !strings.Contains(out, "config is good") || !strings.Contains(out, "ready to start") {
		t.Fatalf("example: %d %q %q", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("version = 1\n[gate]\nid = \"G\"\ndirecton = \"exit\"\n"), 0o600)
	code, _, errOut := runArgs("run", "--config", bad, "--check", "--user", me(t))
	if code != exitConfig || !strings.Contains(errOut, "bad.toml:4: gate.directon: unknown key") {
		t.Fatalf("typo: %d %q", code, errOut)
	}
	if code, _, errOut := runArgs("run", "--config", filepath.Join(t.TempDir(), "none.toml")); code != exitConfig || !strings.Contains(errOut, "none.toml") {
		t.Fatalf("missing file: %d %q", code, errOut)
	}
	if code, _, _ := runArgs("run", "--frobnicate"); code != 64 {
		t.Fatalf("bad flag: %d", code)
	}
}

// TestRunStopsCleanlyOnSIGTERM runs the daemon's command on the simulated
// board (its scanner and issuer absent: it must start anyway) and sends the
// process SIGTERM: the gate locks, the cache closes, the exit status is 0.
func TestRunStopsCleanlyOnSIGTERM(t *testing.T) {
	dir := t.TempDir()
	cfg := simConfig(t, dir, filepath.Join(dir, "cache.db"), "")
	r := startRunning("run", "--config", cfg)
	out, errOut := &r.out, &r.log
	// Never synced (its issuer is absent): it runs, but is not in service.
	eventually.True(t, 10*time.Second, "waiting for the first key sync", func() bool {
		return strings.Contains(errOut.String(), "waiting for the first key sync")
	})
	r.sigterm(t)
	if !strings.HasPrefix(out.String(), "hw: relay off\n") {
		t.Errorf("board output %q: the relay must be driven off first", out.String())
	}
	if strings.Contains(out.String(), "relay on") {
		t.Errorf("the relay moved: %q", out.String())
	}
	if strings.Contains(errOut.String(), "gate in service") {
		t.Errorf("a gate that never synced said it was in service:\n%s", errOut.String())
	}
	for _, want := range []string{"scanner", "gate stopped cleanly"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, errOut.String())
		}
	}
}
