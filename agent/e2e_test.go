package agent_test

// End-to-end tests: each runs the whole agent with the real issuer on
// loopback, a real bbolt cache file, and its scanner on a pty pair made by
// socat and opened through go.bug.st/serial. Only the GPIO pins are fakes
// (periph's gpiotest, journalled by hwtest).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gateagent/event"
	"gateagent/internal/syncbuf"

	"periph.io/x/conn/v3/gpio"

	"gateagent/agent"
	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/config/configtest"
	"gateagent/feed/feedtest"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/hw/hwtest"
	"gateagent/internal/eventually"
	"gateagent/internal/kclock"
	"gateagent/internal/sdnotify"
	"gateagent/issuer"
	"gateagent/issuer/idcard"
	"gateagent/issuer/issuertest"
	"gateagent/qrcode"
	"gateagent/scanner/scannertest"
	"gateagent/verify"
	"gateagent/wear"
)

// The fake board's relay is wired active-low: locked is High.
const (
	locked   = gpio.High
	unlocked = gpio.Low
)

// station is one issuer and one gate running the agent.
type station struct {
	t        testing.TB
	srv      *issuertest.Server
	shift    *atomic.Int64 // the issuer's clock: real time plus shift
	tty      *scannertest.Socat
	peer     *os.File
	pins     *hwtest.Board
	cfg      *config.Config
	ag       *agent.Agent
	outcomes chan gate.Outcome
	logs     *syncbuf.Buffer
	// clockState is the kernel clock's state the agent is given.
	clockState kclock.Reader
	// journalSegment is the journal's segment size the agent is given.
	journalSegment int64
	// deltaSegment is the cache's delta segment size the agent is given.
	deltaSegment int64
	// wear measures the agent's writes; nil: the agent's own meter.
	wear    *wear.Meter
	cancel  context.CancelFunc
	done    chan error
	nextDoc int
}

type stationOpts struct {
	now     func() time.Time // the gate's raw clock
	feedURL string           // override (an unreachable issuer)
	mod     func(*config.Config)
	// notifier tells systemd; default a silent one.
	notifier *sdnotify.Notifier
	// noStart leaves the agent to the test.
	noStart bool
	// clockState is what the kernel says of the gate's clock; default the
	// real kernel's answer.
	clockState kclock.Reader
	// wear is the agent's meter of its writes; default its own.
	wear *wear.Meter
	// journalSegment is the size of the journal's log segments; 0 the
	// default.
	journalSegment int64
	// deltaSegment is the size of the cache's delta log segments; 0 the
	// default.
	deltaSegment int64
}

func newStation(t testing.TB, o stationOpts) *station {
	t.Helper()
	st := &station{t: t, shift: new(atomic.Int64), outcomes: make(chan gate.Outcome, 20000), logs: &syncbuf.Buffer{}}
	signer := feedtest.Signer(t, "test-1", 1)
	st.srv = issuertest.Start(t, issuer.Options{Signer: signer,
		Now: func() time.Time { return time.Now().Add(time.Duration(st.shift.Load())) }})
	st.tty = scannertest.Start(t)
	st.peer = st.tty.OpenPeer(t)
	st.pins = hwtest.NewBoard()

	cfg := config.Default()
	cfg.Version = config.Version
	cfg.Gate = config.Gate{ID: "E2E-01", Direction: "entry", Cache: filepath.Join(t.TempDir(), "cache.db")}
	cfg.Feed.URL = st.srv.URL
	if o.feedURL != "" {
		cfg.Feed.URL = o.feedURL
	}
	cfg.Feed.TrustedKeys = []string{signer.Public().String()}
	cfg.Feed.Interval = time.Second
	cfg.Keys = configtest.Credentials(t) // sealed, as the unit gives them
	cfg.Scanner.Port = st.tty.Dev
	cfg.Scanner.Baud = 115200
	cfg.Scanner.RepeatWindow = 0
	cfg.HW.Kind = "gpio"
	cfg.HW.Relay = hwPin(hwtest.Relay, true)
	cfg.HW.Green, cfg.HW.Red, cfg.HW.Buzzer = hwPin(hwtest.Green, false), hwPin(hwtest.Red, false), hwPin(hwtest.Buzzer, false)
	cfg.HW.Passage, cfg.HW.Emergency = hwPin(hwtest.Passage, false), hwPin(hwtest.Emergency, false)
	cfg.HW.Debounce, cfg.HW.Poll = 0, 2*time.Millisecond
	if o.mod != nil {
		o.mod(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	st.cfg = &cfg
	st.clockState = o.clockState
	st.journalSegment = o.journalSegment
	st.deltaSegment = o.deltaSegment
	st.wear = o.wear
	if !o.noStart {
		st.start(o.now, o.notifier)
	}
	return st
}

func (st *station) start(now func() time.Time, notifier *sdnotify.Notifier) {
	t := st.t
	t.Helper()
	board, err := st.pins.Open(st.cfg.Pins())
	if err != nil {
		t.Fatal(err)
	}
	if notifier == nil {
		notifier, _ = sdnotify.FromEnv(func(string) string { return "" })
	}
	log := slog.New(slog.NewTextHandler(st.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	st.ag, err = agent.New(st.cfg, agent.Options{Board: board, Logger: log, Notifier: notifier, Now: now, ClockState: st.clockState, Wear: st.wear, JournalSegment: st.journalSegment, DeltaSegment: st.deltaSegment,
		Observe: func(o gate.Outcome) {
			select {
			case st.outcomes <- o:
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.cancel, st.done = cancel, make(chan error, 1)
	go func() { st.done <- st.ag.Run(ctx) }()
	t.Cleanup(st.stop)
	st.waitConnected()
}

// startUntilStopped starts the agent as start does and returns the error
// it stops with on its own, within 10 s, with the gate locked.
func (st *station) startUntilStopped() error {
	t := st.t
	t.Helper()
	board, err := st.pins.Open(st.cfg.Pins())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(st.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ag, err := agent.New(st.cfg, agent.Options{Board: board, Logger: log, ClockState: st.clockState, Wear: st.wear, JournalSegment: st.journalSegment, DeltaSegment: st.deltaSegment})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ag.Run(context.Background()) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the agent did not stop on its own within 10 s")
	}
	if l := st.pins.Pins[hwtest.Relay].Level(); l != locked {
		t.Errorf("relay at %v after the agent stopped, want locked", l)
	}
	return err
}

// stop shuts the agent down as SIGTERM does and checks it exits cleanly
// with the gate locked.
func (st *station) stop() {
	if st.cancel == nil {
		return
	}
	st.cancel()
	st.cancel = nil
	select {
	case err := <-st.done:
		if err != nil {
			st.t.Errorf("agent stopped with %v, want a clean shutdown", err)
		}
	case <-time.After(10 * time.Second):
		st.t.Fatal("agent did not stop within 10 s of its shutdown")
	}
	if l := st.pins.Pins[hwtest.Relay].Level(); l != locked {
		st.t.Errorf("relay at %v after shutdown, want locked", l)
	}
	if strings.Contains(st.logs.String(), "TR1:") {
		st.t.Error("a scanned code appears in the agent's log")
	}
}

func (st *station) waitConnected() {
	st.t.Helper()
	if st.ag.Scanner() == nil {
		return // an image scanner: nothing to connect
	}
	if !eventually.Within(10*time.Second, func() bool { return st.ag.Scanner().Stats().Connected }) {
		st.t.Fatalf("scanner not connected after 10 s: %s", st.ag.Scanner().Stats().LastError)
	}
}

// issue issues a certificate to a new passenger and waits until the gate's
// cache holds it.
func (st *station) issue() issuer.Certificate {
	st.t.Helper()
	st.nextDoc++
	n := fmt.Sprintf("110105199003%02d%03d", 1+st.nextDoc%28, 100+st.nextDoc)
	c, err := st.srv.Apply(issuer.Application{Name: "乘客", DocType: issuer.DocResidentID,
		DocNumber: n + string(idcard.CheckChar(n)), City: "广州", FaceCheck: "passed"})
	if err != nil {
		st.t.Fatal(err)
	}
	st.waitCache(c.ID, func(r verify.Record, ok bool) bool { return ok })
	return c
}

func (st *station) waitCache(id verify.CertID, ok func(verify.Record, bool) bool) {
	st.t.Helper()
	eventually.True(st.t, 10*time.Second, "the gate's cache catches up with the issuer", func() bool {
		r, found, err := st.ag.Cache().Lookup(id, verify.Entry)
		if err != nil {
			st.t.Fatal(err)
		}
		return ok(r, found)
	})
}

func (st *station) token(id verify.CertID, at time.Time) string {
	st.t.Helper()
	tok, err := st.srv.Token(id, at)
	if err != nil {
		st.t.Fatal(err)
	}
	return tok.String()
}

func (st *station) write(s string) {
	st.t.Helper()
	if _, err := st.peer.Write([]byte(s)); err != nil {
		st.t.Fatal(err)
	}
}

// want waits for the next outcome that is not a denial of garbage, and
// checks its kind.
func (st *station) want(kind gate.OutcomeKind) gate.Outcome {
	st.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case o := <-st.outcomes:
			if o.Kind == gate.Denied && o.Decision.Reason == verify.Malformed && kind != gate.Denied {
				continue
			}
			if o.Kind != kind {
				st.t.Fatalf("outcome %v (%v, %v), want %v", o.Kind, o.Decision.Reason, o.Err, kind)
			}
			return o
		case <-timeout:
			st.t.Fatalf("no %v outcome within 10 s", kind)
		}
	}
}

func (st *station) relayOuts() []gpio.Level { return st.pins.Journal.Levels(hwtest.Relay) }

func hwPin(name string, activeLow bool) hw.Line { return hw.Line{Pin: name, ActiveLow: activeLow} }

func levels(ls []gpio.Level) string {
	var b strings.Builder
	for _, l := range ls {
		if l == locked {
			b.WriteString("L")
		} else {
			b.WriteString("U")
		}
	}
	return b.String()
}

// walkThrough plays the granted passenger walking through: the passage
// sensor covered (the gate reports the passage) and uncovered (it closes).
func (st *station) walkThrough() {
	st.t.Helper()
	st.pins.Set(hwtest.Passage, gpio.High)
	st.want(gate.Passed)
	st.pins.Set(hwtest.Passage, gpio.Low)
	st.want(gate.Closed)
}

// logged reports whether s comes into the agent's log within 5 s: a line
// may be written just after the state a test waited on has changed.
func (st *station) logged(s string) bool {
	return eventually.Within(5*time.Second, func() bool { return strings.Contains(st.logs.String(), s) })
}

// events returns the gate's events, wherever they are now: still in the
// journal or already uploaded to the issuer.
func (st *station) events() []event.Event {
	st.t.Helper()
	local, err := st.ag.Journal().Events(0, 100000)
	if err != nil {
		st.t.Fatal(err)
	}
	raw, err := st.srv.GateEvents(st.cfg.Gate.ID)
	if err != nil {
		st.t.Fatal(err)
	}
	var all []event.Event
	for _, r := range raw {
		var e event.Event
		if err := json.Unmarshal(r, &e); err != nil {
			st.t.Fatal(err)
		}
		all = append(all, e)
	}
	seen := map[uint64]bool{}
	for _, e := range all {
		seen[e.Seq] = true
	}
	for _, e := range local {
		if !seen[e.Seq] {
			all = append(all, e)
		}
	}
	return all
}

func TestValidTokenOpensTheRelayExactlyOnce(t *testing.T) {
	st := newStation(t, stationOpts{})
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r")
	o := st.want(gate.Granted)
	if o.Decision.CertID != c.ID {
		t.Fatalf("granted %v, want %v", o.Decision.CertID, c.ID)
	}
	if got := levels(st.relayOuts()); got != "LU" {
		t.Fatalf("relay driven %s, want LU (safe at start, one unlock)", got)
	}
	st.walkThrough()
	if got := levels(st.relayOuts()); got != "LUL" {
		t.Fatalf("relay driven %s, want LUL", got)
	}
	var decisions, passages int
	for _, e := range st.events() {
		switch {
		case e.Kind == event.Decision && e.Reason == verify.OK && e.CertID == c.ID:
			decisions++
		case e.Kind == event.Passage && e.CertID == c.ID:
			passages++
		}
	}
	if decisions != 1 || passages != 1 {
		t.Fatalf("%d grant and %d passage events, want 1 and 1", decisions, passages)
	}
}

func TestEveryReasonIsDeniedWithoutMovingTheRelay(t *testing.T) {
	st := newStation(t, stationOpts{})
	now := time.Now()
	valid := st.issue()

	// A certificate that starts in an hour, and one that ended yesterday:
	// issued with the issuer's clock moved, then put back.
	st.shift.Store(int64(time.Hour))
	future := st.issue()
	st.shift.Store(int64(-26 * time.Hour))
	past := st.issue()
	st.shift.Store(0)
	revoked := st.issue()
	if err := st.srv.Revoke(revoked.ID); err != nil {
		t.Fatal(err)
	}
	st.waitCache(revoked.ID, func(r verify.Record, ok bool) bool { return ok && r.Revoked })
	// A certificate of another issuer the gate has never heard of.
	other := issuertest.Start(t, issuer.Options{Signer: feedtest.Signer(t, "other", 2)})
	n := "11010519851111123"
	stranger, err := other.Apply(issuer.Application{Name: "x", DocType: issuer.DocResidentID,
		DocNumber: n + string(idcard.CheckChar(n)), City: "广州", FaceCheck: "passed"})
	if err != nil {
		t.Fatal(err)
	}
	strangerTok, err := other.Token(stranger.ID, now)
	if err != nil {
		t.Fatal(err)
	}
	badTag, err := verify.ParseToken([]byte(st.token(valid.ID, now)))
	if err != nil {
		t.Fatal(err)
	}
	badTag.Tag[0] ^= 1

	cases := []struct {
		reason verify.Reason
		text   string
	}{
		{verify.Malformed, "TR1:not a token"},
		{verify.UnknownCert, strangerTok.String()},
		{verify.BadTag, badTag.String()},
		// Three steps off, so a minute that turns during the test cannot
		// bring either into the ±1 window.
		{verify.CodeStale, st.token(valid.ID, now.Add(-3*time.Minute))},
		{verify.CodeFromFuture, st.token(valid.ID, now.Add(3*time.Minute))},
		{verify.Revoked, st.token(revoked.ID, now)},
		{verify.NotYetValid, st.token(future.ID, now)},
		{verify.Expired, st.token(past.ID, now)},
	}
	for _, tc := range cases {
		st.write(tc.text + "\r")
		o := st.want(gate.Denied)
		if o.Decision.Reason != tc.reason {
			t.Errorf("%v: gate said %v", tc.reason, o.Decision.Reason)
		}
	}
	// Anti-passback: grant, pass, then the same passenger again.
	st.write(st.token(valid.ID, now) + "\r")
	st.want(gate.Granted)
	st.walkThrough()
	st.write(st.token(valid.ID, time.Now()) + "\r")
	if o := st.want(gate.Denied); o.Decision.Reason != verify.Passback {
		t.Errorf("passback: gate said %v", o.Decision.Reason)
	}
	if got := levels(st.relayOuts()); got != "LUL" {
		t.Fatalf("relay driven %s, want LUL: only the one grant may move it", got)
	}
	// Every decision is on record with its reason.
	got := map[verify.Reason]int{}
	for _, e := range st.events() {
		if e.Kind == event.Decision {
			got[e.Reason]++
		}
	}
	for _, tc := range cases {
		if got[tc.reason] != 1 {
			t.Errorf("%d %v decisions on record, want 1", got[tc.reason], tc.reason)
		}
	}
	if got[verify.Passback] != 1 || got[verify.OK] != 1 {
		t.Errorf("decisions on record: %v", got)
	}
}

func TestUntrustedClockRefusesEveryone(t *testing.T) {
	// A board without a real-time clock boots in 1970, and the issuer is
	// out of reach, so the gate cannot learn the time.
	st := newStation(t, stationOpts{
		now:     func() time.Time { return time.Unix(0, 0).Add(time.Since(bootTime)) },
		feedURL: "http://127.0.0.1:1/",
	})
	st.write(verify.NewToken(&verify.Key{1}, verify.CertID{1}, verify.StepOf(time.Now())).String() + "\r")
	if o := st.want(gate.Denied); o.Decision.Reason != verify.ClockUntrusted {
		t.Fatalf("gate said %v, want CLOCK_UNTRUSTED", o.Decision.Reason)
	}
	if got := levels(st.relayOuts()); got != "L" {
		t.Fatalf("relay driven %s", got)
	}
}

var bootTime = time.Now()

func TestHostileScannerInputLeavesTheGateWorking(t *testing.T) {
	st := newStation(t, stationOpts{})
	c := st.issue()
	rng := rand.New(rand.NewPCG(1, 2))
	var junk bytes.Buffer
	for range 10000 {
		line := make([]byte, 1+rng.IntN(80))
		for i := range line {
			line[i] = byte(rng.Uint32())
		}
		junk.Write(line)
		junk.WriteByte('\r')
	}
	st.write(junk.String())
	st.write(strings.Repeat("\x00\xff", 16) + "\r")
	st.write(strings.Repeat("A", 1<<20)) // 1 MB without a terminator…
	st.write("\r")                       // …which a later terminator ends, and it is dropped
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	if got := levels(st.relayOuts()); got != "LU" {
		t.Fatalf("relay driven %s, want LU", got)
	}
	s := st.ag.Scanner().Stats()
	if s.Overlong != 1 {
		t.Errorf("%d over-long lines reported, want 1", s.Overlong)
	}
	// The flood did not wear the flash: malformed decisions are recorded
	// at most once a second.
	var malformed int
	for _, e := range st.events() {
		if e.Reason == verify.Malformed {
			malformed++
		}
	}
	if malformed > 20 {
		t.Errorf("%d malformed decisions recorded for one flood, want a handful", malformed)
	}
}

func TestScannerComesBackAfterUnplug(t *testing.T) {
	st := newStation(t, stationOpts{mod: func(c *config.Config) {}})
	c := st.issue()
	st.tty.Kill(t)
	eventually.True(t, 10*time.Second, "the scanner disconnected once its port vanished", func() bool { return !st.ag.Scanner().Stats().Connected })
	st.tty.Restart(t)
	st.peer = st.tty.OpenPeer(t)
	st.waitConnected()
	if r := st.ag.Scanner().Stats().Reconnects; r < 1 {
		t.Fatalf("reconnects %d, want ≥ 1", r)
	}
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	if !st.logged("scanner port lost") {
		t.Error("the loss of the scanner was not logged")
	}
}

// childEnv makes the test binary run the agent from a config file, as
// `gateagent run` does, on the simulated board printing to stdout: the
// parent kills it with SIGKILL between a grant and the passage.
const childEnv = "GATEAGENT_AGENT_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	if path := os.Getenv(peerChildEnv); path != "" { // peers_child_test.go
		os.Exit(runPeerChild(path))
	}
	if spec := os.Getenv(peerRogueEnv); spec != "" {
		os.Exit(runRogue(spec))
	}
	if spec := os.Getenv(benchPeersEnv); spec != "" { // benchpeers_test.go
		os.Exit(runBenchPeers(spec))
	}
	os.Exit(m.Run())
}

func runChild(path string) int {
	cfg, err := config.Load(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	a, err := agent.New(cfg, agent.Options{Stdout: os.Stdout, Logger: agent.SetupLogger(cfg.Log, os.Stderr)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// child is the agent in another process.
type child struct {
	cmd   *exec.Cmd
	lines chan string // its stdout, line by line
	logs  *syncbuf.Buffer
}

func startChild(t *testing.T, cfgPath string) *child {
	t.Helper()
	args := []string{"-test.run=^$"}
	var cmd *exec.Cmd
	if wrap := os.Getenv("GATEAGENT_TEST_EXEC"); wrap != "" { // e.g. qemu-aarch64-static
		cmd = exec.Command(wrap, append([]string{os.Args[0]}, args...)...)
	} else {
		cmd = exec.Command(os.Args[0], args...)
	}
	cmd.Env = append(os.Environ(), childEnv+"="+cfgPath, "NOTIFY_SOCKET=")
	c := &child{cmd: cmd, lines: make(chan string, 1000), logs: &syncbuf.Buffer{}}
	cmd.Stderr = c.logs
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c
}

// expect reads the child's stdout up to the line want; it fails if the
// relay is switched on before (unless want is that line).
func (c *child) expect(t *testing.T, want string) []string {
	t.Helper()
	var seen []string
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("agent exited before %q; stdout %q; log:\n%s", want, seen, c.logs.String())
			}
			seen = append(seen, l)
			if l == want {
				return seen
			}
			if l == "hw: relay on" {
				t.Fatalf("relay switched on before %q: %q", want, seen)
			}
		case <-timeout:
			t.Fatalf("no %q within 20 s; stdout %q; log:\n%s", want, seen, c.logs.String())
		}
	}
}

// waitLog waits for s in the child's log, and shows the log if it does
// not come.
func waitLog(t *testing.T, c *child, s string) {
	t.Helper()
	if !eventually.Within(20*time.Second, func() bool { return strings.Contains(c.logs.String(), s) }) {
		t.Fatalf("no %q in the agent's log within 20 s:\n%s", s, c.logs.String())
	}
}

func TestKilledBetweenGrantAndPassage(t *testing.T) {
	srv := issuertest.Start(t, issuer.Options{Signer: feedtest.Signer(t, "test-1", 1), Now: time.Now})
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	dir := t.TempDir()
	cachePath := filepath.Join(dir, "cache.db")
	cfgPath := configtest.Sim{ID: "KILL-01", Dir: dir, FeedURL: srv.URL, Key: feedtest.Signer(t, "test-1", 1).Public().String(), Port: tty.Dev,
		Extra: "[log]\nlevel = \"debug\"\n"}.Write(t)
	n := "11010519900307123"
	cert, err := srv.Apply(issuer.Application{Name: "x", DocType: issuer.DocResidentID,
		DocNumber: n + string(idcard.CheckChar(n)), City: "广州", FaceCheck: "passed"})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := srv.Token(cert.ID, time.Now())
	if err != nil {
		t.Fatal(err)
	}

	// The issuer goes away once the gate has the key, so the grant's event
	// stays in the gate's log rather than being uploaded.
	first := startChild(t, cfgPath)
	first.expect(t, "hw: relay off")
	waitLog(t, first, "gate in service")
	waitLog(t, first, "upserts=1")
	srv.Stop()
	if _, err := peer.Write([]byte(tok.String() + "\r")); err != nil {
		t.Fatal(err)
	}
	first.expect(t, "hw: relay on")
	if err := first.cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown code runs
		t.Fatal(err)
	}
	first.cmd.Wait()

	second := startChild(t, cfgPath)
	// The relay's very first line is "off", before anything else happens.
	if out := second.expect(t, "hw: relay off"); len(out) != 1 {
		t.Fatalf("restarted agent printed %q before locking the relay", out[:len(out)-1])
	}
	waitLog(t, second, "gate in service")
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.cmd.Wait(); err != nil {
		t.Fatalf("agent exited with %v after SIGTERM, want 0; log:\n%s", err, second.logs.String())
	}
	for l := range second.lines {
		if l == "hw: relay on" {
			t.Fatal("the restarted agent unlocked the relay")
		}
	}
	for _, p := range []string{cachePath, cache.JournalPath(cachePath)} {
		if _, err := cache.CheckFile(p); err != nil {
			t.Fatal(err)
		}
	}
	j, err := cache.OpenJournal(cache.JournalPath(cachePath), cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	ev, err := j.Events(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var grants int
	for _, e := range ev {
		if e.Kind == event.Decision && e.Reason == verify.OK && e.CertID == cert.ID {
			grants++
		}
	}
	if grants != 1 {
		t.Fatalf("%d grant events in the log after the kill, want 1: %+v", grants, ev)
	}
}

// TestTellsSystemd: READY=1 once the gate is in service, WATCHDOG=1 while
// its controller answers, STOPPING=1 on shutdown.
func TestTellsSystemd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	env := map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": "100000"}
	n, err := sdnotify.FromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	st := newStation(t, stationOpts{notifier: n})
	var got []string
	buf := make([]byte, 4096)
	read := func() string {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, string(buf[:k]))
		return string(buf[:k])
	}
	for !strings.HasPrefix(read(), "READY=1") {
	}
	for read() != "WATCHDOG=1" {
	}
	st.stop()
	for read() != "STOPPING=1" {
	}
}

// brokenRelay works until broken is set, then fails every drive.
type brokenRelay struct {
	hw.Output
	broken atomic.Bool
}

func (b *brokenRelay) Set(on bool) error {
	if b.broken.Load() {
		return errors.New("EIO")
	}
	return b.Output.Set(on)
}

// TestControllerStartFailureStopsTheAgent: a relay that cannot be driven
// to its safe level when the controller starts stops the agent at once,
// with the cause, through the orderly shutdown.
func TestControllerStartFailureStopsTheAgent(t *testing.T) {
	st := newStation(t, stationOpts{noStart: true})
	board, err := st.pins.Open(st.cfg.Pins())
	if err != nil {
		t.Fatal(err)
	}
	relay := &brokenRelay{Output: board.Relay}
	board.Relay = relay
	quiet, _ := sdnotify.FromEnv(func(string) string { return "" })
	a, err := agent.New(st.cfg, agent.Options{Board: board, Notifier: quiet})
	if err != nil {
		t.Fatal(err)
	}
	relay.broken.Store(true)
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "EIO") || !strings.Contains(err.Error(), "safe level") {
			t.Fatalf("Run returned %v, want the relay's failure", err)
		}
	case <-time.After(4 * time.Second):
		t.Fatal("the agent did not stop on a controller that cannot start")
	}
	// The cache and the journal are closed: the files can be opened again.
	c, err := cache.Open(st.cfg.Gate.Cache, cachetest.Options(nil))
	if err != nil {
		t.Fatalf("cache still held after Run returned: %v", err)
	}
	c.Close()
	j, err := cache.OpenJournal(cache.JournalPath(st.cfg.Gate.Cache), cachetest.Options(nil))
	if err != nil {
		t.Fatalf("journal still held after Run returned: %v", err)
	}
	j.Close()
}

// TestImageScannerGrants: scanner.kind = "images", a camera writing frames
// into a directory: a frame with a valid code opens the gate.
func TestImageScannerGrants(t *testing.T) {
	frames := t.TempDir()
	st := newStation(t, stationOpts{mod: func(c *config.Config) {
		c.Scanner.Kind = "images"
		c.Scanner.ImageDir = frames
	}})
	c := st.issue()
	m, err := qrcode.Encode(st.token(c.ID, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(frames, "frame-0001.png.part"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.PNG(f, 4); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// The camera renames a frame once it is whole.
	if err := os.Rename(f.Name(), filepath.Join(frames, "frame-0001.png")); err != nil {
		t.Fatal(err)
	}
	st.want(gate.Granted)
	if got := levels(st.relayOuts()); got != "LU" {
		t.Fatalf("relay driven %s, want LU", got)
	}
}
