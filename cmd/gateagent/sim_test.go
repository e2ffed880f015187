package main

import (
	"bufio"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/config/configtest"
	"gateagent/feed/feedtest"
	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
	"gateagent/issuer"
	"gateagent/issuer/idcard"
	"gateagent/issuer/issuertest"
	"gateagent/scanner/scannertest"
)

// TestSimPassageInRunMode walks a passenger through a gate on the
// simulated board in run mode, as a bench without a turnstile does: the
// code is granted, `gateagent sim passage` plays the passenger walking
// through, and the same certificate is then refused as PASSBACK. The
// agent is the real command in a process of its own, with the issuer on
// loopback and the scanner on a socat pty.
func TestSimPassageInRunMode(t *testing.T) {
	signer := feedtest.Signer(t, "test-1", 1)
	srv := issuertest.Start(t, issuer.Options{Signer: signer, Now: time.Now})
	n := "11010519900307123"
	cert, err := srv.Apply(issuer.Application{Name: "乘客", DocType: issuer.DocResidentID,
		DocNumber: n + string(idcard.CheckChar(n)), City: "广州", FaceCheck: "passed"})
	if err != nil {
		t.Fatal(err)
	}
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "control.sock")
	cfg := configtest.Sim{ID: "SIM-01", Dir: dir, FeedURL: srv.URL, Key: signer.Public().String(), Port: tty.Dev,
		Extra: "[timing]\ndeny = \"20ms\"\n"}.Write(t)

	agent := gateagent("run", "--config", cfg)
	var logs, board syncbuf.Buffer
	agent.Stderr = &logs
	out, err := agent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			board.Write([]byte(sc.Text() + "\n"))
		}
		agent.Wait()
		close(exited)
	}()
	t.Cleanup(func() { agent.Process.Kill(); <-exited })
	eventually.True(t, 30*time.Second, "gate in service", func() bool { return strings.Contains(logs.String(), "gate in service") })

	scan := func() {
		tok, err := srv.Token(cert.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Write([]byte(tok.String() + "\r")); err != nil {
			t.Fatal(err)
		}
	}
	count := func(line string) int { return strings.Count(board.String(), line+"\n") }
	scan()
	eventually.True(t, 10*time.Second, "the relay on for the valid code", func() bool { return count("hw: relay on") == 1 })

	// The passenger walks through, played by the bench.
	code, stdout, stderr := runArgs("sim", "passage", "--for", "200ms", "--socket", sock)
	if code != 0 || !strings.Contains(stdout, "passage: someone entered and left") {
		t.Fatalf("gateagent sim passage: exit %d\n%s%s", code, stdout, stderr)
	}
	if !eventually.Within(10*time.Second, func() bool {
		return strings.Contains(logs.String(), "msg=passed") && count("hw: relay off") >= 2
	}) {
		t.Fatalf("the passage not recorded, or the relay still on:\n%s\n%s", board.String(), logs.String())
	}

	// The same certificate again: refused, the relay never moves.
	scan()
	eventually.True(t, 10*time.Second, "the second scan refused as PASSBACK", func() bool {
		return strings.Contains(logs.String(), "reason=PASSBACK")
	})
	if n := count("hw: relay on"); n != 1 {
		t.Fatalf("relay on %d times, want once:\n%s", n, board.String())
	}

	// The emergency input, engaged and released from the bench.
	for _, state := range []string{"on", "off"} {
		if code, stdout, stderr := runArgs("sim", "emergency", state, "--socket", sock); code != 0 || stdout != "emergency: "+state+"\n" {
			t.Fatalf("gateagent sim emergency %s: exit %d\n%s%s", state, code, stdout, stderr)
		}
	}
	eventually.True(t, 10*time.Second, "the emergency hold-open and its release", func() bool { return count("hw: relay on") == 2 && count("hw: relay off") >= 3 })

	agent.Process.Signal(syscall.SIGTERM)
	<-exited
	if !strings.Contains(logs.String(), "simulated passage") || !strings.Contains(logs.String(), "simulated input") {
		t.Errorf("the bench's inputs are not in the log:\n%s", logs.String())
	}
}

// TestSimRefusedOnRealHardware: without a simulated board the inputs come
// from the sensors only; here no agent runs at all, and the command says
// so.
func TestSimWithoutAgent(t *testing.T) {
	code, _, stderr := runArgs("sim", "passage", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if code != 1 || !strings.Contains(stderr, "is the agent running?") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if code, _, stderr := runArgs("sim", "emergency", "sideways", "--socket", "x"); code != 64 || !strings.Contains(stderr, "use on or off") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
}
