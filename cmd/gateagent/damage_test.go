package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config/configtest"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/feed/feedtest"
	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
	"gateagent/issuer"
	"gateagent/issuer/idcard"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/scanner/scannertest"
	"gateagent/verify"
)

// The damage harness: random multi-byte damage to a real cache of 10,000
// certificates (and, every other trial, to its journal; every fourth, to
// the cache's delta log beside it), with the agent
// stopped, then what a technician and the gate do with it, each through
// the real binary: `gateagent cache check`, `gateagent diag` (standalone),
// and the agent started with a valid code scanned. Nothing may crash (a
// process killed by a signal, or printing "fatal error" or "panic:"), the
// gate must grant the valid code once it has rebuilt what it had to, and
// the events not yet uploaded must reach the issuer, all but those the
// agent reports lost, by count.
//
// Record-level damage (bytes of a certificate's record changed in a file
// whole page by page) fails authentication under the cache key: the
// harness finds the records each trial changed, by comparing the files,
// and shows that none of them is ever granted: with the issuer out of
// reach the gate refuses their codes (and, for a revoked certificate,
// after the heal too), and once the issuer answers the valid ones are
// refetched and granted again.
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
	t.Logf("%d certificates' records damaged over the trials (%d of them revoked): none granted while damaged", h.damaged, h.damagedRevoked)
}

// harness is the station the trials share: the agent binary, the issuer
// on loopback, the scanner's pty pair, and the gate's files as a day's
// work left them (a cache of 10,000 certificates, a journal of events not
// yet uploaded).
type harness struct {
	bin     string
	srv     *issuertest.Server
	key     string             // the trusted issuer key, for the config
	keys    string             // the [keys] section: the gate's key files
	tty     *scannertest.Socat // the trial's scanner line
	peer    *os.File
	cert    issuer.Certificate // the passenger whose code is scanned
	files   map[string][]byte  // cache.db, the journal's and the delta's segments (by path in the directory)
	pending map[uint64]bool    // events in the journal not yet uploaded
	// certs are the synthetic certificates by ID, revoked the ones the
	// issuer revoked before the gate synced.
	certs   map[verify.CertID]verify.Cert
	revoked map[verify.CertID]bool
	// damaged counts the certificates whose records the trials changed,
	// and how many of those were revoked.
	damaged, damagedRevoked int
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
	// Every tenth revoked: a revocation flag damaged must never let one in.
	h.certs, h.revoked = map[verify.CertID]verify.Cert{}, map[verify.CertID]bool{}
	for i, c := range certs {
		h.certs[c.ID] = c
		if i%10 == 3 {
			if err := h.srv.Revoke(c.ID); err != nil {
				t.Fatal(err)
			}
			h.revoked[c.ID] = true
		}
	}
	n := "11010519900307123"
	var err error
	if h.cert, err = h.srv.Apply(issuer.Application{Name: "乘客", DocType: issuer.DocResidentID,
		DocNumber: n + string(idcard.CheckChar(n)), City: "广州", FaceCheck: "passed"}); err != nil {
		t.Fatal(err)
	}

	// The gate's files: synced from the issuer, and 150 events recorded
	// while the issuer was not taking uploads.
	dir := t.TempDir()
	c, err := cache.Open(filepath.Join(dir, "cache.db"), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	j, err := cache.OpenJournal(filepath.Join(dir, "journal"), cachetest.Options(nil))
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
	// The feed's batches are in the cache's delta (cache.db.delta) until
	// the maintenance writes it as a run of cache.db once a window has
	// passed: a day's work leaves the certificates there, where
	// record-level damage reaches them. Written now. Then a poll's feed
	// state, which the gate stores every few minutes, is the delta's
	// record after the run: damage to the record before it is damage (a
	// damaged last record reads as a write a power cut tore, and is
	// dropped). No batch follows the run: the feed sends its log page
	// again whole as it fills, and the delta's copies would shadow the
	// run's certificates.
	if err := c.WriteRun(time.Now()); err != nil {
		t.Fatal(err)
	}
	fs, err := c.Feed()
	if err != nil {
		t.Fatal(err)
	}
	fs.SyncedAt = time.Now()
	if err := c.RecordSync(fs); err != nil {
		t.Fatal(err)
	}
	c.Close()
	j.Close()
	h.files = map[string][]byte{}
	segs, _ := filepath.Glob(filepath.Join(dir, "journal", "journal.*.log"))
	if len(segs) != 1 {
		t.Fatalf("journal segments %v, want one", segs)
	}
	deltas, _ := filepath.Glob(filepath.Join(cache.DeltaPath(filepath.Join(dir, "cache.db")), "delta.*.log"))
	if len(deltas) != 1 {
		t.Fatalf("delta segments %v, want one", deltas)
	}
	for _, p := range []string{filepath.Join(dir, "cache.db"), segs[0], deltas[0]} {
		name, _ := filepath.Rel(dir, p)
		if h.files[name], err = os.ReadFile(p); err != nil {
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
	start := time.Now()
	dir := t.TempDir()
	// A scanner line of its own: no code written for an earlier trial's
	// agent is left for this one to read.
	h.tty = scannertest.Start(t)
	h.peer = h.tty.OpenPeer(t)
	gateID := fmt.Sprintf("DMG-%02d", i)
	var damage []string
	// In name order: the seed replays the same damage.
	for _, name := range slices.Sorted(maps.Keys(h.files)) {
		b := append([]byte(nil), h.files[name]...)
		// The records of the journal and the delta fill their segments'
		// first blocks (zeros after): the damage falls there.
		span := len(b)
		switch {
		case strings.HasPrefix(name, "journal"):
			span = min(span, 160*4096)
		case name != "cache.db":
			span = max(1, len(bytes.TrimRight(b, "\x00")))
		}
		// cache.db every trial, the journal every other one, the delta
		// (whose damage has the agent rebuild the cache, so that the
		// records of cache.db are not reached) every fourth.
		if name == "cache.db" || strings.HasPrefix(name, "journal") && i%2 == 1 || strings.HasPrefix(name, "cache.db.delta") && i%4 == 2 {
			for range 1 + r.IntN(3) {
				at, n := r.IntN(span), 2+r.IntN(31)
				for k := range n {
					if at+k < len(b) {
						b[at+k] = byte(r.Uint32())
					}
				}
				damage = append(damage, fmt.Sprintf("%s: %d bytes at %d", name, n, at))
			}
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := configtest.Sim{ID: gateID, Dir: dir, FeedURL: h.srv.URL, Key: h.key, Port: h.tty.Dev, Keys: h.keys,
		Extra: "[timing]\ndeny = \"20ms\"\npass_timeout = \"300ms\"\n"}.Write(t)
	what := fmt.Sprintf("trial %d (%s)", i, strings.Join(damage, "; "))

	// The technician's checks, with the agent stopped.
	whole := map[string]bool{}
	for _, name := range []string{"cache.db", "journal"} {
		code, out, errOut := h.run(t, what, "cache", "check", filepath.Join(dir, name))
		if code != 0 && code != 1 || code == 1 && !strings.Contains(errOut, "what to do:") {
			t.Fatalf("%s: cache check %s: exit %d\n%s%s", what, name, code, out, errOut)
		}
		whole[name] = code == 0
	}
	code, out, errOut := h.run(t, what, "diag", "--json", "--config", cfg, "--user", me(t))
	var rep diag.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code < 0 || code > 2 {
		t.Fatalf("%s: diag: exit %d, no report (%v)\n%s%s", what, code, err, out, errOut)
	}
	ch, _ := rep.Find(diag.NameCache)
	bl, _ := rep.Find(diag.NameBacklog)
	// A cache whose own records (its cursor, key check, runs' record or a
	// run's filter) fail authentication is whole page by page but not
	// usable: diag says so.
	chFail := ch.Status == diag.Fail && !strings.Contains(ch.Line, "is unauthentic")
	if whole["cache.db"] == chFail || whole["journal"] == (bl.Status == diag.Fail) {
		t.Fatalf("%s: cache check says cache whole %v, journal whole %v; diag says %s: %s; %s: %s",
			what, whole["cache.db"], whole["journal"], ch.Status, ch.Line, bl.Status, bl.Line)
	}

	// Records changed in a cache file whole page by page: never granted.
	var damagedIDs []verify.CertID
	changed := map[verify.CertID]bool{} // failing authentication: the agent and diag name them
	if whole["cache.db"] {
		var gone []verify.CertID // unknown now, or unusable: refused, not named
		damagedIDs, gone = h.damagedCerts(t, what, filepath.Join(dir, "cache.db"))
		for _, id := range damagedIDs {
			changed[id] = true
		}
		damagedIDs = append(damagedIDs, gone...)
		if len(changed) > 0 {
			rc, _ := rep.Find(diag.NameRecords)
			if rc.Status != diag.Fail || !strings.Contains(rc.Line, "certificate ") {
				t.Fatalf("%s: records %v changed, diag's records check says %s: %s", what, damagedIDs, rc.Status, rc.Line)
			}
		}
	}
	var known []verify.CertID
	for _, id := range damagedIDs {
		if _, ok := h.certs[id]; ok && len(known) < 5 {
			known = append(known, id)
		}
	}

	// The gate: it starts, rebuilds what it must, grants the valid code.
	if len(known) > 0 {
		h.srv.Stop() // nothing can be healed: the damaged records stay
	}
	a := h.start(t, what, cfg)
	var first string // the log of a start that stopped to rebuild the cache
	if !whole["cache.db"] {
		a, first = h.restartOnDamage(t, what, cfg, a)
	}
	if len(known) > 0 {
		for _, id := range known {
			h.scanRefused(t, what, a, h.certs[id])
			h.damaged++
			if h.revoked[id] {
				h.damagedRevoked++
			}
		}
		if n := a.relayOns.Load(); n != 0 {
			t.Fatalf("%s: the relay opened %d times while the records of %v were damaged:\n%s", what, n, known, a.out.String())
		}
		for _, id := range known {
			// Named off the scan path, so not necessarily before the lamp.
			named := func() bool { return strings.Contains(a.out.String(), `record="certificate `+id.String()+`"`) }
			if changed[id] && !eventually.Within(5*time.Second, named) {
				t.Fatalf("%s: the agent's log does not name the damaged record of %s:\n%s", what, id, a.out.String())
			}
		}
		h.srv.Restart()
	}
	// The passenger scans again every 300 ms until the gate opens.
	if !eventually.Within(30*time.Second, func() bool {
		tok, err := h.srv.Token(h.cert.ID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.peer.Write([]byte(tok.String() + "\r")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-a.relayOn:
			return true
		case <-a.exited:
			t.Fatalf("%s: the agent exited:\n%s", what, a.out.String())
		case <-time.After(300 * time.Millisecond):
		}
		return false
	}) {
		t.Fatalf("%s: the valid code was not granted within 30 s:\n%s", what, a.out.String())
	}
	rebuilt := strings.Contains(first+a.out.String(), "the key cache is damaged")
	// A file whole page by page whose cursor or key check value fails
	// authentication is rebuilt too (the check without the key cannot
	// see that).
	unauthentic := strings.Contains(a.out.String(), "damage=\"unauthentic")
	if rebuilt == (whole["cache.db"] && !unauthentic) {
		t.Fatalf("%s: cache check said whole=%v, the agent rebuilt=%v:\n%s", what, whole["cache.db"], rebuilt, a.out.String())
	}
	// Healed from the feed: the valid ones granted, the revoked ones never.
	for _, id := range known {
		if h.revoked[id] {
			before := a.relayOns.Load()
			h.scanRefused(t, what, a, h.certs[id])
			if a.relayOns.Load() != before {
				t.Fatalf("%s: revoked certificate %s granted after the heal", what, id)
			}
			continue
		}
		h.scanGranted(t, what, a, h.certs[id])
	}

	// Every event not yet uploaded reaches the issuer, but those the
	// agent reports lost.
	lost, exact := 0, true
	if !whole["journal"] {
		lost, exact = lostOf(t, what, first+a.out.String())
	}
	missing := 0
	if !eventually.Within(20*time.Second, func() bool {
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
		missing = 0
		for seq := range h.pending {
			if !up[seq] {
				missing++
			}
		}
		if missing < lost {
			t.Fatalf("%s: %d events reported lost, but only %d are missing at the issuer", what, lost, missing)
		}
		return missing == lost || !exact && missing >= lost
	}) {
		t.Fatalf("%s: %d events missing at the issuer, %d reported lost:\n%s", what, missing, lost, a.out.String())
	}
	t.Logf("%s: cache whole %v, journal whole %v, restarted to rebuild %v, %d damaged records scanned; %d events lost (reported %d, exact %v); %v",
		what, whole["cache.db"], whole["journal"], first != "", len(known), missing, lost, exact, time.Since(start).Round(100*time.Millisecond))
	h.stop(t, what, a)
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
	// The simulated board's lines so far: each grant turns the relay on,
	// each refusal the red lamp.
	relayOns, relayOffs, redOns, redOffs atomic.Int64
}

// idle waits until the gate has locked again after its last grant (a
// scan while a passenger may pass is not checked).
func (a *agentProc) idle(t *testing.T, what string) {
	t.Helper()
	// The start's "off" comes first.
	if !eventually.Within(10*time.Second, func() bool { return a.relayOffs.Load() > a.relayOns.Load() }) {
		t.Fatalf("%s: the gate did not lock again within 10 s:\n%s", what, a.out.String())
	}
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
			switch sc.Text() {
			case "hw: relay on":
				a.relayOns.Add(1)
				if !on {
					on = true
					close(a.relayOn)
				}
			case "hw: relay off":
				a.relayOffs.Add(1)
			case "hw: red on":
				a.redOns.Add(1)
			case "hw: red off":
				a.redOffs.Add(1)
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

// restartOnDamage waits until the agent a, started on a damaged cache,
// has said so. Damage found as the cache opened is rebuilt by the running
// agent: a is returned. Damage in the certificates, which are checked
// beside the running gate, makes the agent move the file aside and stop
// with status 1; systemd would start it again (Restart=always), and so
// does this: the new agent is returned, with the log of the first.
func (h *harness) restartOnDamage(t *testing.T, what, cfg string, a *agentProc) (*agentProc, string) {
	t.Helper()
	said := func() bool { return strings.Contains(a.out.String(), "the key cache is damaged") }
	if !eventually.Within(10*time.Second, said) {
		t.Fatalf("%s: cache check found the cache damaged, the agent did not say so within 10 s:\n%s", what, a.out.String())
	}
	if !strings.Contains(a.out.String(), "found by the check of its certificates after the start") {
		return a, ""
	}
	select {
	case <-a.exited:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the agent did not stop within 10 s of finding the damage:\n%s", what, a.out.String())
	}
	if code := exitCode(t, what, []string{"run"}, a.err, a.out.String()); code != 1 || !strings.Contains(a.out.String(), "start the agent again to rebuild it") {
		t.Fatalf("%s: the agent exited %d on the damage, want 1 and what to do:\n%s", what, code, a.out.String())
	}
	if n := a.relayOns.Load(); n != 0 {
		t.Fatalf("%s: the relay opened %d times on a damaged cache:\n%s", what, n, a.out.String())
	}
	return h.start(t, what, cfg), a.out.String()
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

// damagedCerts returns the certificates whose records the trial's damage
// reached in the cache file at path (whole page by page): those that fail
// authentication (changed: the agent and diag name them), and those the
// file no longer holds or cannot read (gone: refused, not named). The
// certificates are in runs, in groups of a page of them (cache/group.go),
// whose authenticated parts cover several certificates: which ones a
// changed byte reaches is the layout's. So the harness compares the
// files for the groups whose bytes changed (a group holds its
// certificates' IDs in the clear: those found in its bytes), and asks the
// damaged file, opened under the cache key as diag opens it, for each of
// their certificates: one it still returns must be exactly the feed's
// (damage never changes what the gate decides on); the others are those
// damage reached. A file that does not open (its own records fail
// authentication: the agent rebuilds it whole) returns them all as gone.
func (h *harness) damagedCerts(t *testing.T, what, path string) (changed, gone []verify.CertID) {
	t.Helper()
	orig := filepath.Join(t.TempDir(), "original.db")
	if err := os.WriteFile(orig, h.files["cache.db"], 0o600); err != nil {
		t.Fatal(err)
	}
	read := func(p string) map[string]string {
		db, err := bolt.Open(p, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		defer db.Close()
		m := map[string]string{}
		db.View(func(tx *bolt.Tx) error {
			if b := tx.Bucket([]byte("groups")); b != nil {
				b.ForEach(func(k, v []byte) error { m[string(k)] = string(v); return nil })
			}
			return nil
		})
		return m
	}
	before, after := read(orig), read(path)
	if len(before) == 0 {
		t.Fatal("the original cache holds no group of certificates: the harness would damage none")
	}
	const idLen = len(verify.CertID{})
	var reached []verify.CertID
	seen := map[verify.CertID]bool{}
	for _, k := range slices.Sorted(maps.Keys(before)) {
		v := before[k]
		if w, ok := after[k]; ok && w == v {
			continue
		}
		for i := 0; i+idLen <= len(v); i++ {
			id := verify.CertID([]byte(v[i : i+idLen]))
			if _, ok := h.certs[id]; ok && !seen[id] {
				seen[id] = true
				reached = append(reached, id)
			}
		}
	}
	if len(reached) == 0 {
		return nil, nil
	}
	c, err := cache.Open(path, cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		return nil, reached
	}
	defer c.Close()
	for _, id := range reached {
		r, found, err := c.Lookup(id, verify.Entry)
		want := h.certs[id]
		switch {
		case errors.Is(err, cache.ErrAuth):
			changed = append(changed, id)
		case err != nil || !found:
			gone = append(gone, id)
		case r.Key != want.Key || !r.NotBefore.Equal(want.NotBefore) || !r.NotAfter.Equal(want.NotAfter) || r.Revoked != h.revoked[id]:
			t.Fatalf("%s: the damaged cache returns certificate %s other than the feed's (valid %v to %v, revoked %v; want %v to %v, revoked %v, and its key %v)",
				what, id, r.NotBefore, r.NotAfter, r.Revoked, want.NotBefore, want.NotAfter, h.revoked[id], r.Key == want.Key)
		}
	}
	return changed, gone
}

// scanRefused scans c's code and waits for the gate's refusal (its red
// lamp on, then off).
func (h *harness) scanRefused(t *testing.T, what string, a *agentProc, c verify.Cert) {
	t.Helper()
	a.idle(t, what)
	on, off, relay := a.redOns.Load(), a.redOffs.Load(), a.relayOns.Load()
	tok := verify.NewToken(&c.Key, c.ID, verify.StepOf(time.Now()))
	if _, err := h.peer.Write([]byte(tok.String() + "\r")); err != nil {
		t.Fatal(err)
	}
	if !eventually.Within(20*time.Second, func() bool {
		if a.relayOns.Load() > relay {
			t.Fatalf("%s: certificate %s scanned, the relay opened:\n%s", what, c.ID, a.out.String())
		}
		select {
		case <-a.exited:
			t.Fatalf("%s: the agent exited:\n%s", what, a.out.String())
		default:
		}
		return a.redOns.Load() != on && a.redOffs.Load() != off
	}) {
		t.Fatalf("%s: no refusal of certificate %s within 20 s:\n%s", what, c.ID, a.out.String())
	}
}

// scanGranted scans c's code until the gate grants it (once its record is
// healed), within 30 s.
func (h *harness) scanGranted(t *testing.T, what string, a *agentProc, c verify.Cert) {
	t.Helper()
	// Scanned again every 300 ms until the gate opens.
	if !eventually.Within(30*time.Second, func() bool {
		a.idle(t, what)
		before := a.relayOns.Load()
		tok := verify.NewToken(&c.Key, c.ID, verify.StepOf(time.Now()))
		if _, err := h.peer.Write([]byte(tok.String() + "\r")); err != nil {
			t.Fatal(err)
		}
		return eventually.Within(300*time.Millisecond, func() bool { return a.relayOns.Load() > before })
	}) {
		t.Fatalf("%s: certificate %s, damaged then healed, not granted within 30 s:\n%s", what, c.ID, a.out.String())
	}
}
