package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config/configtest"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/feed/feedtest"
	"gateagent/internal/syncbuf"
	"gateagent/issuer"
	"gateagent/issuer/idcard"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/scanner/scannertest"
	"gateagent/verify"
)

// The damage harness: random multi-byte damage to a real cache of 10,000
// certificates (and, every other trial, to its journal), with the agent
// stopped, then what a technician and the gate do with it, each through
// the real binary: `gateagent cache check`, `gateagent diag` (standalone),
// and the agent started with a valid code scanned. Nothing may crash (a
// process killed by a signal, or printing "fatal error" or "panic:"), the
// gate must grant the valid code once it has rebuilt what it had to, and
// the events not yet uploaded must reach the issuer, all but those the
// agent reports lost, by count.
//
// GATEAGENT_DAMAGE_SEED replays a run; GATEAGENT_DAMAGE_TRIALS sets the
// number of trials (32; 6 under qemu, GATEAGENT_TEST_EXEC, where each
// process runs about ten times slower).
func TestDamageHarness(t *testing.T) {
	seed := uint64(20261123)
	if v := os.Getenv("GATEAGENT_DAMAGE_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("GATEAGENT_DAMAGE_SEED=%q: %v", v, err)
		}
	}
	trials := 32
	if os.Getenv("GATEAGENT_TEST_EXEC") != "" {
		trials = 6
	}
	if v := os.Getenv("GATEAGENT_DAMAGE_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("GATEAGENT_DAMAGE_TRIALS=%q", v)
		}
		trials = n
	}
	t.Logf("seed %d (GATEAGENT_DAMAGE_SEED replays it), %d trials", seed, trials)
	r := rand.New(rand.NewPCG(seed, seed^0x5eed))

	h := newHarness(t)
	for i := range trials {
		h.trial(t, i, r)
	}
}

// harness is the station the trials share: the agent binary, the issuer
// on loopback, the scanner's pty pair, and the gate's files as a day's
// work left them (a cache of 10,000 certificates, a journal of events not
// yet uploaded).
type harness struct {
	bin     string
	srv     *issuertest.Server
	key     string // the trusted issuer key, for the config
	keys    string // the [keys] section: the gate's key files
	tty     *scannertest.Socat
	peer    *os.File
	cert    issuer.Certificate // the passenger whose code is scanned
	files   map[string][]byte  // cache.db, journal.db
	pending map[uint64]bool    // events in the journal not yet uploaded
}

func newHarness(t *testing.T) *harness {
	h := &harness{bin: buildAgent(t), keys: configtest.TOML(t, t.TempDir())}
	signer := feedtest.Signer(t, "test-1", 1)
	h.key = signer.Public().String()
	h.srv = issuertest.Start(t, issuer.Options{Signer: signer, Now: time.Now})
	certs := make([]verify.Cert, 10_000)
	nb := time.Now().Truncate(time.Second).Add(-time.Hour)
	for i := range certs {
		s := sha256.Sum256([]byte(fmt.Sprint("damage harness ", i)))
		copy(certs[i].ID[:], s[:16])
		copy(certs[i].Key[:], s[:])
		certs[i].NotBefore, certs[i].NotAfter = nb, nb.Add(24*time.Hour)
	}
	if err := h.srv.InsertSynthetic(certs); err != nil {
		t.Fatal(err)
	}
	n := "11010519900307123"
	var err error
	if h.cert, err = h.srv.Apply(issuer.Application{Name: "乘客", DocType: issuer.DocResidentID,
		DocNumber: n + string(idcard.CheckChar(n)), City: "广州", FaceCheck: "passed"}); err != nil {
		t.Fatal(err)
	}
	h.tty = scannertest.Start(t)
	h.peer = h.tty.OpenPeer(t)

	// The gate's files: synced from the issuer, and 150 events recorded
	// while the issuer was not taking uploads.
	dir := t.TempDir()
	c, err := cache.Open(filepath.Join(dir, "cache.db"), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	j, err := cache.OpenJournal(filepath.Join(dir, "journal.db"), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := keysync.New(keysync.Config{URL: h.srv.URL, Keys: feedtest.Keyring(t, signer), Fleet: feedtest.Fleet(t), Cache: c, Journal: j})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.pending = map[uint64]bool{}
	for i := range 150 {
		seq, err := j.AppendEvent(event.Event{Time: time.Now(), Kind: event.Decision, Reason: verify.UnknownCert,
			Direction: verify.Entry, CertID: verify.CertID{0xEE, byte(i)}, Detail: fmt.Sprint("before the damage ", i)})
		if err != nil {
			t.Fatal(err)
		}
		h.pending[seq] = true
	}
	c.Close()
	j.Close()
	h.files = map[string][]byte{}
	for _, name := range []string{"cache.db", "journal.db"} {
		if h.files[name], err = os.ReadFile(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return h
}

// buildAgent builds ./cmd/gateagent (this package) for the machine the
// test runs on, as a release is built.
func buildAgent(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the damage harness builds the agent: no go command on PATH (%v)", err)
	}
	bin := filepath.Join(t.TempDir(), "gateagent")
	cmd := exec.Command(goTool, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=", "GOWORK=off", "GOTOOLCHAIN=local")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// trial damages a copy of the gate's files and runs the binary on them.
func (h *harness) trial(t *testing.T, i int, r *rand.Rand) {
	dir := t.TempDir()
	gateID := fmt.Sprintf("DMG-%02d", i)
	var damage []string
	for name, b := range h.files {
		b = append([]byte(nil), b...)
		if name == "cache.db" || i%2 == 1 {
			for range 1 + r.IntN(3) {
				at, n := r.IntN(len(b)), 2+r.IntN(31)
				for k := range n {
					if at+k < len(b) {
						b[at+k] = byte(r.Uint32())
					}
				}
				damage = append(damage, fmt.Sprintf("%s: %d bytes at %d", name, n, at))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(dir, "gateagent.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version = 1
[gate]
id = %q
cache = %q
[feed]
url = %q
trusted_keys = [%q]
interval = "1s"
[scanner]
port = %q
baud = 115200
repeat_window = "0s"
[hw]
kind = "sim"
[timing]
deny = "20ms"
[control]
socket = %q
%s`, gateID, filepath.Join(dir, "cache.db"), h.srv.URL, h.key, h.tty.Dev, filepath.Join(dir, "control.sock"), h.keys)), 0o600); err != nil {
		t.Fatal(err)
	}
	what := fmt.Sprintf("trial %d (%s)", i, strings.Join(damage, "; "))

	// The technician's checks, with the agent stopped.
	whole := map[string]bool{}
	for _, name := range []string{"cache.db", "journal.db"} {
		code, out, errOut := h.run(t, what, "cache", "check", filepath.Join(dir, name))
		if code != 0 && code != 1 || code == 1 && !strings.Contains(errOut, "what to do:") {
			t.Fatalf("%s: cache check %s: exit %d\n%s%s", what, name, code, out, errOut)
		}
		whole[name] = code == 0
	}
	code, out, errOut := h.run(t, what, "diag", "--json", "--config", cfg)
	var rep diag.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code < 0 || code > 2 {
		t.Fatalf("%s: diag: exit %d, no report (%v)\n%s%s", what, code, err, out, errOut)
	}
	ch, _ := rep.Find(diag.NameCache)
	bl, _ := rep.Find(diag.NameBacklog)
	if whole["cache.db"] == (ch.Status == diag.Fail) || whole["journal.db"] == (bl.Status == diag.Fail) {
		t.Fatalf("%s: cache check says cache whole %v, journal whole %v; diag says %s: %s; %s: %s",
			what, whole["cache.db"], whole["journal.db"], ch.Status, ch.Line, bl.Status, bl.Line)
	}

	// The gate: it starts, rebuilds what it must, grants the valid code.
	a := h.start(t, what, cfg)
	deadline := time.Now().Add(30 * time.Second)
	for granted := false; !granted; {
		tok, err := h.srv.Token(h.cert.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.peer.Write([]byte(tok.String() + "\r")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.relayOn:
			granted = true
		case <-a.exited:
			t.Fatalf("%s: the agent exited:\n%s", what, a.out.String())
		case <-time.After(300 * time.Millisecond):
		}
		if !granted && time.Now().After(deadline) {
			t.Fatalf("%s: the valid code was not granted within 30 s:\n%s", what, a.out.String())
		}
	}
	rebuilt := strings.Contains(a.out.String(), "the key cache is damaged")
	if rebuilt == whole["cache.db"] {
		t.Fatalf("%s: cache check said whole=%v, the agent rebuilt=%v:\n%s", what, whole["cache.db"], rebuilt, a.out.String())
	}

	// Every event not yet uploaded reaches the issuer, but those the
	// agent reports lost.
	lost, exact := 0, true
	if !whole["journal.db"] {
		lost, exact = lostOf(t, what, a.out.String())
	}
	deadline = time.Now().Add(20 * time.Second)
	for {
		up := map[uint64]bool{}
		evs, err := h.srv.GateEvents(gateID)
		if err != nil {
			t.Fatal(err)
		}
		for _, raw := range evs {
			var e struct{ Seq uint64 }
			json.Unmarshal(raw, &e)
			up[e.Seq] = true
		}
		missing := 0
		for seq := range h.pending {
			if !up[seq] {
				missing++
			}
		}
		switch {
		case missing == lost || !exact && missing >= lost:
			t.Logf("%s: cache whole %v, journal whole %v; %d events lost (reported %d, exact %v)",
				what, whole["cache.db"], whole["journal.db"], missing, lost, exact)
			h.stop(t, what, a)
			return
		case missing < lost:
			t.Fatalf("%s: %d events reported lost, but only %d are missing at the issuer", what, lost, missing)
		case time.Now().After(deadline):
			t.Fatalf("%s: %d events missing at the issuer, %d reported lost:\n%s", what, missing, lost, a.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// lostOf reads the number of events the agent's log says were lost.
func lostOf(t *testing.T, what, log string) (int, bool) {
	t.Helper()
	_, rest, ok := strings.Cut(log, "the journal is damaged")
	if !ok {
		t.Fatalf("%s: cache check found the journal damaged, the agent did not say so:\n%s", what, log)
	}
	_, rest, ok = strings.Cut(rest, "events_lost=")
	if !ok {
		t.Fatalf("%s: the agent did not say how many events were lost:\n%s", what, log)
	}
	v, _, _ := strings.Cut(rest, "\n")
	v = strings.Trim(v, `"`)
	exact := true
	if after, ok := strings.CutPrefix(v, "at least "); ok {
		v, exact = after, false
	}
	if v == "unknown" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s: events_lost=%q", what, v)
	}
	return n, exact
}

// run runs the binary to its end and fails the test if it crashed.
func (h *harness) run(t *testing.T, what string, args ...string) (int, string, string) {
	t.Helper()
	cmd := h.command(args...)
	var out, errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := exitCode(t, what, args, err, out.String()+errOut.String())
	return code, out.String(), errOut.String()
}

func (h *harness) command(args ...string) *exec.Cmd {
	if wrap := os.Getenv("GATEAGENT_TEST_EXEC"); wrap != "" { // qemu-aarch64-static
		return exec.Command(wrap, append([]string{h.bin}, args...)...)
	}
	return exec.Command(h.bin, args...)
}

// exitCode returns the exit status of a process that ended by itself, and
// fails the test for one that crashed.
func exitCode(t *testing.T, what string, args []string, err error, out string) int {
	t.Helper()
	if strings.Contains(out, "fatal error") || strings.Contains(out, "panic:") {
		t.Fatalf("%s: gateagent %s crashed:\n%s", what, strings.Join(args, " "), out)
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("%s: gateagent %s killed by %v:\n%s", what, strings.Join(args, " "), ws.Signal(), out)
		}
		return ee.ExitCode()
	}
	t.Fatalf("%s: gateagent %s: %v", what, strings.Join(args, " "), err)
	return -1
}

// agentProc is a running `gateagent run`.
type agentProc struct {
	cmd     *exec.Cmd
	out     *syncbuf.Buffer // stdout (the simulated board) and stderr (the log)
	relayOn chan struct{}   // closed at the first "hw: relay on"
	exited  chan struct{}
	err     error
}

func (h *harness) start(t *testing.T, what, cfg string) *agentProc {
	t.Helper()
	a := &agentProc{cmd: h.command("run", "--config", cfg), out: &syncbuf.Buffer{}, relayOn: make(chan struct{}), exited: make(chan struct{})}
	a.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	a.cmd.Stderr = a.out
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		on := false
		for sc.Scan() {
			a.out.Write([]byte(sc.Text() + "\n"))
			if sc.Text() == "hw: relay on" && !on {
				on = true
				close(a.relayOn)
			}
		}
		a.err = a.cmd.Wait()
		close(a.exited)
	}()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
	})
	return a
}

// stop sends SIGTERM and checks the agent exits 0, without a crash.
func (h *harness) stop(t *testing.T, what string, a *agentProc) {
	t.Helper()
	a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s: the agent did not stop within 15 s of SIGTERM:\n%s", what, a.out.String())
	}
	if code := exitCode(t, what, []string{"run"}, a.err, a.out.String()); code != 0 {
		t.Fatalf("%s: the agent exited %d after SIGTERM:\n%s", what, code, a.out.String())
	}
}
