package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/internal/eventually"
)

// TestHangupStopsCleanly: SIGHUP (the SSH session that ran the agent hung
// up, or an operator's kill -HUP meant as "reload") stops the gate as
// SIGTERM does: locked, the cache closed, exit 0, so that systemd
// (Restart=always) starts it again on its config. Go's default would end
// the process at once, with the relay wherever it was.
func TestHangupStopsCleanly(t *testing.T) {
	dir := t.TempDir()
	p := startGateagent(t, gateagent("run", "--config", simConfig(t, dir, filepath.Join(dir, "cache.db"), "")))
	eventually.True(t, 20*time.Second, "the agent running", func() bool {
		return strings.Contains(p.errOut.String(), "waiting for the first key sync")
	})
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("still running 20 s after SIGHUP:\n%s", p.errOut.String())
	}
	noCrash(t, p.cmd.ProcessState, p.errOut.String())
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGHUP, want 0:\n%s", code, p.errOut.String())
	}
	if !strings.Contains(p.errOut.String(), "gate stopped cleanly") {
		t.Errorf("no clean stop in the log:\n%s", p.errOut.String())
	}
	if !strings.HasPrefix(p.out.String(), "hw: relay off\n") || strings.Contains(p.out.String(), "relay on") {
		t.Errorf("board output %q: the relay must be driven off first, and never move", p.out.String())
	}
}

// TestBrokenLogPipeKeepsGate: the agent's log is a pipe whose reader goes
// away (journald restarted, `gateagent run | head`): the next log line
// must not kill the gate (Go's default for a write to a broken stdout or
// stderr). It logs into the void and keeps its state and its socket; it
// still stops cleanly on SIGTERM.
func TestBrokenLogPipeKeepsGate(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	cmd := gateagent("run", "--config", simConfig(t, dir, filepath.Join(dir, "cache.db"), ""))
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	lines := bufio.NewScanner(r)
	for lines.Scan() {
		if strings.Contains(lines.Text(), "waiting for the first key sync") {
			break
		}
	}
	r.Close() // the reader goes
	// The stimulus: a simulated passage, which the agent logs (and the
	// board prints) into the broken pipe.
	if code, stdout, stderr := runArgs("sim", "passage", "--for", "100ms", "--socket", sock); code != 0 {
		t.Fatalf("gateagent sim passage: exit %d\n%s%s", code, stdout, stderr)
	}
	// The state the agent answers with is read after its lines were
	// written: it is still there.
	for range 3 {
		if code, stdout, stderr := runArgs("sim", "state", "--socket", sock); code != 0 {
			t.Fatalf("the agent does not answer after its log pipe broke: exit %d\n%s%s", code, stdout, stderr)
		}
	}
	select {
	case <-done:
		t.Fatalf("the agent ended after its log pipe broke: %v", cmd.ProcessState)
	default:
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20 s after SIGTERM")
	}
	noCrash(t, cmd.ProcessState, "")
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit %d after SIGTERM, want 0", code)
	}
}

// TestNoCoreDumps: a running gateagent's core file size limit is 0, soft
// and hard, as /proc shows it: its memory holds the keys, and no crash may
// write them to the disk.
func TestNoCoreDumps(t *testing.T) {
	dir := t.TempDir()
	p := startGateagent(t, gateagent("run", "--config", simConfig(t, dir, filepath.Join(dir, "cache.db"), "")))
	eventually.True(t, 20*time.Second, "the agent running", func() bool {
		return strings.Contains(p.errOut.String(), "waiting for the first key sync")
	})
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	var line string
	for l := range strings.SplitSeq(string(limits), "\n") {
		if strings.HasPrefix(l, "Max core file size") {
			line = l
		}
	}
	if f := strings.Fields(strings.TrimPrefix(line, "Max core file size")); len(f) < 2 || f[0] != "0" || f[1] != "0" {
		t.Errorf("core file size limit %q, want 0 soft and hard", line)
	}
}
