package agent_test

// Station peers end to end: eight gates, each the whole agent in a process
// of its own (peers_child_test.go: agent.New and Run from a config file, as
// `gateagent run` does, on the simulated board, its scanner on a
// pseudo-terminal, its cache a real bbolt file), each in a network
// namespace of its own, the eight joined by veth pairs to one bridge, so
// that they talk over real UDP and TCP through a real (virtual) switch.
// Partitions move half the gates to a second bridge; a gate is isolated by
// setting its link down inside its namespace. Where namespaces cannot be
// made (not root), the gates run on distinct loopback addresses
// (127.0.0.x) and partitions cut a link inside each gate's transport
// (stationtest.Link); the log says which. Nothing is skipped.
//
// Why processes of the test binary and not `gateagent run`: a gate's
// passage sensor has no input in run mode but the board's pin, and adding
// one to the production binary (say, on the control socket) would let
// anyone with the socket fake passages. The child runs the same agent.New
// and Run as `gateagent run`; only the board (simulated, its passage input
// set by the test) and the scanner's line (a pty the test types into)
// differ, as in every agent test.

import (
	"bufio"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config/configtest"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
	stn "gateagent/station"
	"gateagent/verify"
)

// labGates is how many gates the lab runs.
const labGates = 8

// lab is a station of gates in their own processes.
type lab struct {
	t      *testing.T // the test or subtest under way: its failures
	root   *testing.T // the whole test: its cleanups (processes, namespaces)
	netns  bool       // network namespaces; else loopback addresses
	prefix string     // of every namespace, bridge and link made
	qemu   string     // GATEAGENT_TEST_EXEC: the children run under it too
	key    []byte
	dir    string
	gates  []*labGate
	certs  []verify.Cert
	next   int // the next unused certificate
	certMu sync.Mutex
	// Timings: the failure detector's probe, and how long to wait for
	// one outcome.
	probe, wait time.Duration
}

// labGate is one gate of the lab.
type labGate struct {
	l        *lab
	i        int
	id       string
	ns       string // its namespace (netns mode)
	ip, addr string // its station address
	dir, cfg string
	proc     *labProc
}

// labProc is a gate's (or the rogue's) running process.
type labProc struct {
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	inMu     sync.Mutex
	reqMu    sync.Mutex // one request and its reply at a time
	outcomes chan childMsg
	replies  chan childMsg
	ready    chan childMsg
	exited   chan struct{}
	logs     *syncbuf.Buffer
}

func newLab(t *testing.T) *lab {
	t.Helper()
	l := &lab{t: t, root: t, prefix: fmt.Sprintf("gst%d", os.Getpid()%10000000), qemu: os.Getenv("GATEAGENT_TEST_EXEC"),
		dir: t.TempDir(), probe: 200 * time.Millisecond, wait: 15 * time.Second}
	if l.qemu != "" { // everything about ten times slower: a slower failure detector
		l.probe, l.wait = time.Second, 60*time.Second
	}
	l.key = make([]byte, 32)
	rand.Read(l.key)
	sweepStale()
	if err := l.makeNetwork(); err != nil {
		if os.Getenv("GATEAGENT_REQUIRE_NETNS") != "" {
			t.Fatalf("network namespaces cannot be made (%v) and GATEAGENT_REQUIRE_NETNS is set: run as root with iproute2 installed", err)
		}
		t.Logf("network namespaces cannot be made here (%v): the %d gates run on loopback addresses 127.0.0.11-%d, partitions cut inside each gate's transport",
			err, labGates, 10+labGates)
		l.netns = false
	} else {
		t.Logf("the %d gates run in network namespaces %s-0..%d, on bridge %sb0 (10.77.0.11-%d)", labGates, l.prefix, labGates-1, l.prefix, 10+labGates)
	}
	// Certificates: every gate's cache holds them all, as if synced from
	// the issuer.
	now := time.Now()
	for range 1400 {
		var c verify.Cert
		rand.Read(c.ID[:])
		rand.Read(c.Key[:])
		c.Key[0] |= 1
		c.NotBefore, c.NotAfter = now.Add(-time.Hour).Truncate(time.Second), now.Add(23*time.Hour).Truncate(time.Second)
		l.certs = append(l.certs, c)
	}
	for i := range labGates {
		l.gates = append(l.gates, l.newGate(i))
	}
	for _, g := range l.gates {
		g.start()
	}
	for _, g := range l.gates {
		g.awaitReady()
	}
	l.awaitMembers(labGates-1, l.gates...)
	return l
}

// sh runs a command as the test (root), and returns its error with its
// output.
func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (l *lab) sh(args ...string) {
	l.t.Helper()
	if err := sh(args...); err != nil {
		l.t.Fatal(err)
	}
}

// makeNetwork makes the namespaces, the bridges and the links, and
// removes them when the test ends (failed or not). Set
// GATEAGENT_STATION_LOOPBACK=1 to run on loopback addresses instead.
func (l *lab) makeNetwork() error {
	if os.Getenv("GATEAGENT_STATION_LOOPBACK") != "" {
		return errors.New("GATEAGENT_STATION_LOOPBACK is set")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return err
	}
	p := l.prefix
	l.root.Cleanup(func() { removeNetwork(p) })
	steps := [][]string{}
	for _, b := range []string{p + "b0", p + "b1"} {
		steps = append(steps, []string{"ip", "link", "add", b, "type", "bridge"}, []string{"ip", "link", "set", b, "up"})
	}
	for _, s := range steps {
		if err := sh(s...); err != nil {
			return err
		}
	}
	// The host's firewall must not judge frames crossing the bridges.
	for _, b := range []string{p + "b0", p + "b1"} {
		_ = sh("ip", "link", "set", "dev", b, "type", "bridge", "nf_call_iptables", "0")
	}
	for i := range labGates + 1 { // the last is the rogue's
		ns, host, peer := fmt.Sprintf("%s-%d", p, i), fmt.Sprintf("%sh%d", p, i), fmt.Sprintf("%sn%d", p, i)
		for _, s := range [][]string{
			{"ip", "netns", "add", ns},
			{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
			{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			{"ip", "link", "set", peer, "netns", ns},
			{"ip", "link", "set", host, "master", p + "b0"},
			{"ip", "link", "set", host, "up"},
			{"ip", "netns", "exec", ns, "ip", "addr", "add", fmt.Sprintf("10.77.0.%d/24", 11+i), "dev", peer},
			{"ip", "netns", "exec", ns, "ip", "link", "set", peer, "up"},
		} {
			if err := sh(s...); err != nil {
				return err
			}
		}
	}
	l.netns = true
	return nil
}

// removeNetwork deletes what makeNetwork made with prefix p (deleting a
// namespace deletes its end of the veth pair, and the pair with it).
func removeNetwork(p string) {
	for i := range labGates + 1 {
		sh("ip", "netns", "del", fmt.Sprintf("%s-%d", p, i))
	}
	for _, b := range []string{p + "b0", p + "b1"} {
		sh("ip", "link", "del", b)
	}
}

// sweepStale removes what an earlier run killed outright (a test timeout)
// left behind: the prefix holds its process ID.
func sweepStale() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		rest, ok := strings.CutPrefix(name, "gst")
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid()%10000000 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test still runs
		}
		removeNetwork("gst" + pidText)
	}
}

func (l *lab) newGate(i int) *labGate {
	g := &labGate{l: l, i: i, id: fmt.Sprintf("S%02d", i+1), dir: filepath.Join(l.dir, fmt.Sprintf("gate%d", i+1))}
	if err := os.MkdirAll(g.dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	if l.netns {
		g.ns, g.ip, g.addr = fmt.Sprintf("%s-%d", l.prefix, i), fmt.Sprintf("10.77.0.%d", 11+i), fmt.Sprintf("10.77.0.%d:7946", 11+i)
	} else {
		g.ip = fmt.Sprintf("127.0.0.%d", 11+i)
		g.addr = fmt.Sprintf("%s:%d", g.ip, 27946)
	}
	keyFile := filepath.Join(g.dir, "station.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(l.key)+"\n"), 0o600); err != nil {
		l.t.Fatal(err)
	}
	// The cache, as the feed would have filled it.
	c, err := cache.Open(filepath.Join(g.dir, "cache.db"), cachetest.Options(nil))
	if err != nil {
		l.t.Fatal(err)
	}
	now := time.Now()
	b := &cache.Batch{From: 0, Next: uint64(len(l.certs)), Upserts: l.certs,
		Feed: cache.FeedState{KeyID: "lab", IssuerTime: now, MaxAge: 24 * time.Hour, SyncedAt: now}}
	if _, err := c.Apply(b); err != nil {
		l.t.Fatal(err)
	}
	c.Close()
	var gates, seeds []string
	for j := range labGates {
		gates = append(gates, fmt.Sprintf("%q", fmt.Sprintf("S%02d", j+1)))
		if l.netns {
			seeds = append(seeds, fmt.Sprintf("%q", fmt.Sprintf("10.77.0.%d:7946", 11+j)))
		} else {
			seeds = append(seeds, fmt.Sprintf("%q", fmt.Sprintf("127.0.0.%d:27946", 11+j)))
		}
	}
	g.cfg = filepath.Join(g.dir, "gateagent.toml")
	cfg := fmt.Sprintf(`version = 1
[gate]
id = %q
cache = %q
[feed]
url = "http://127.0.0.1:9/"
trusted_keys = ["k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk="]
interval = "1h"
[scanner]
port = "/dev/null"
baud = 115200
repeat_window = "0s"
[hw]
kind = "sim"
[control]
socket = %q
[station]
group = "LAB"
gates = [%s]
bind = %q
seeds = [%s]
key_files = [%q]
join_timeout = "%s"
probe = "%s"
reconnect = "%s"
push_pull = "%s"
[log]
level = "debug"
%s`, g.id, filepath.Join(g.dir, "cache.db"), filepath.Join(g.dir, "control.sock"), strings.Join(gates, ", "), g.addr,
		strings.Join(seeds, ", "), keyFile, 15*l.probe, l.probe, l.probe, 25*l.probe, configtest.TOML(l.t, l.t.TempDir()))
	if err := os.WriteFile(g.cfg, []byte(cfg), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return g
}

// command is the test binary as one of the lab's processes, in namespace
// ns (netns mode).
func (l *lab) command(ns string, env ...string) *exec.Cmd {
	args := []string{os.Args[0], "-test.run=^$"}
	if l.qemu != "" {
		// Under qemu, eight emulated agents would take the machine from
		// the other packages' tests that run beside this one (make runs
		// packages in parallel): they yield to them.
		args = append([]string{"nice", "-n", "10", l.qemu}, args...)
	}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET=")
	cmd.Env = append(cmd.Env, env...)
	return cmd
}

// startProc starts cmd and reads its messages.
func (l *lab) startProc(cmd *exec.Cmd) *labProc {
	l.t.Helper()
	p := &labProc{cmd: cmd, outcomes: make(chan childMsg, 100000), replies: make(chan childMsg, 16),
		ready: make(chan childMsg, 1), exited: make(chan struct{}), logs: &syncbuf.Buffer{}}
	cmd.Stderr = p.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		l.t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		l.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.root.Cleanup(p.kill)
	go func() {
		defer close(p.exited)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var m childMsg
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				continue
			}
			switch m.Ev {
			case "outcome":
				p.outcomes <- m
			case "ready", "rogue":
				p.ready <- m
			default:
				p.replies <- m
			}
		}
		cmd.Wait()
	}()
	return p
}

func (p *labProc) kill() {
	if p.cmd.Process != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.exited
}

func (p *labProc) send(line string) error {
	p.inMu.Lock()
	defer p.inMu.Unlock()
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

func (g *labGate) start() {
	env := []string{peerChildEnv + "=" + g.cfg}
	if !g.l.netns {
		env = append(env, peerLinkEnv+"=1")
	}
	g.proc = g.l.startProc(g.l.command(g.ns, env...))
}

func (g *labGate) awaitReady() childMsg {
	g.l.t.Helper()
	select {
	case m := <-g.proc.ready:
		return m
	case <-g.proc.exited:
		g.l.t.Fatalf("gate %s exited before it was ready:\n%s", g.id, tail(g.proc.logs.String()))
	case <-time.After(4 * g.l.wait):
		g.l.t.Fatalf("gate %s not ready within %v:\n%s", g.id, 4*g.l.wait, tail(g.proc.logs.String()))
	}
	return childMsg{}
}

// do sends a command and returns the child's reply.
func (g *labGate) do(cmd string) childMsg {
	g.l.t.Helper()
	p := g.proc
	p.reqMu.Lock()
	defer p.reqMu.Unlock()
	if err := p.send(cmd); err != nil {
		g.l.t.Fatalf("gate %s: %s: %v", g.id, cmd, err)
	}
	select {
	case m := <-p.replies:
		if m.Ev == "error" {
			g.l.t.Fatalf("gate %s: %s: %s", g.id, cmd, m.Err)
		}
		return m
	case <-p.exited:
		g.l.t.Fatalf("gate %s exited:\n%s", g.id, tail(p.logs.String()))
	case <-time.After(g.l.wait):
		g.l.t.Fatalf("gate %s: no reply to %s within %v", g.id, cmd, g.l.wait)
	}
	return childMsg{}
}

func (g *labGate) status() *stn.Status { return g.do("status").Status }

// outcome waits for the gate's next outcome (errors returned, not fatal:
// the trials run on goroutines of their own).
func (g *labGate) outcome() (childMsg, error) {
	select {
	case m := <-g.proc.outcomes:
		return m, nil
	case <-g.proc.exited:
		return childMsg{}, fmt.Errorf("gate %s exited:\n%s", g.id, tail(g.proc.logs.String()))
	case <-time.After(g.l.wait):
		return childMsg{}, fmt.Errorf("gate %s: no outcome within %v", g.id, g.l.wait)
	}
}

// expect waits for the gate's next outcome and checks its kind.
func (g *labGate) expect(kind string) (childMsg, error) {
	m, err := g.outcome()
	if err == nil && m.Kind != kind {
		err = fmt.Errorf("gate %s did %s (%s, seen at %q), want %s", g.id, m.Kind, m.Reason, m.SeenAt, kind)
	}
	return m, err
}

// scan shows the code of c, now, at the gate.
func (g *labGate) scan(c *verify.Cert) error {
	return g.proc.send("scan " + verify.NewToken(&c.Key, c.ID, verify.StepOf(time.Now())).String())
}

// walkThrough lets a granted passenger through: the passage sensor
// active, then clear.
func (g *labGate) walkThrough() error {
	if err := g.proc.send("enter"); err != nil {
		return err
	}
	if _, err := g.expect("passed"); err != nil {
		return err
	}
	if err := g.proc.send("leave"); err != nil {
		return err
	}
	_, err := g.expect("closed")
	return err
}

// pass scans c at the gate, which must grant it, and lets the passenger
// through.
func (g *labGate) pass(c *verify.Cert) {
	g.l.t.Helper()
	if err := g.scan(c); err != nil {
		g.l.t.Fatal(err)
	}
	if m, err := g.expect("granted"); err != nil {
		g.l.t.Fatalf("%v (cert %s)", err, m.Cert)
	}
	if err := g.walkThrough(); err != nil {
		g.l.t.Fatal(err)
	}
}

// refuses scans c at the gate, which must refuse it as PASSBACK seen at
// the gate at.
func (g *labGate) refuses(c *verify.Cert, at string) {
	g.l.t.Helper()
	if err := g.scan(c); err != nil {
		g.l.t.Fatal(err)
	}
	m, err := g.expect("denied")
	if err != nil {
		g.l.t.Fatal(err)
	}
	if m.Reason != "PASSBACK" || m.SeenAt != at {
		g.l.t.Fatalf("gate %s refused %s as %s seen at %q, want PASSBACK seen at %s", g.id, c.ID, m.Reason, m.SeenAt, at)
	}
}

// cert returns a certificate no test has used.
func (l *lab) cert() *verify.Cert {
	l.certMu.Lock()
	defer l.certMu.Unlock()
	if l.next == len(l.certs) {
		l.t.Fatal("the lab ran out of certificates")
	}
	l.next++
	return &l.certs[l.next-1]
}

// awaitMembers waits until each gate sees n peers alive.
func (l *lab) awaitMembers(n int, gates ...*labGate) {
	l.t.Helper()
	deadline := time.Now().Add(4 * l.wait)
	for _, g := range gates {
		var st *stn.Status
		if !eventually.Within(time.Until(deadline), func() bool { st = g.status(); return st.Alive == n }) {
			l.t.Fatalf("gate %s sees %d peers alive, want %d: %+v", g.id, st.Alive, n, st.Peers)
		}
	}
}

// awaitSeen waits until each gate knows c was seen at gate at, and
// returns how long that took.
func (l *lab) awaitSeen(c *verify.Cert, at string, limit time.Duration, gates ...*labGate) time.Duration {
	l.t.Helper()
	start := time.Now()
	for _, g := range gates {
		var m childMsg
		if !eventually.Within(limit-time.Since(start), func() bool { m = g.do("seen " + c.ID.String()); return m.Found && m.SeenAt == at }) {
			l.t.Fatalf("gate %s does not know %s was seen at %s within %v (it knows %+v)", g.id, c.ID, at, limit, m)
		}
	}
	return time.Since(start)
}

// doubleUses returns the double_use events of each gate, by cert ID.
func (l *lab) doubleUses() map[string]map[verify.CertID]event.Event {
	out := map[string]map[verify.CertID]event.Event{}
	for _, g := range l.gates {
		out[g.id] = map[verify.CertID]event.Event{}
		for _, e := range g.do("events").Events {
			if e.Kind == event.DoubleUse {
				out[g.id][e.CertID] = e
			}
		}
	}
	return out
}

// cut separates the gates of a from those of b (b moves to the second
// bridge; in loopback mode each side loses the other's traffic).
func (l *lab) cut(a, b []*labGate) {
	l.t.Helper()
	if l.netns {
		for _, g := range b {
			l.sh("ip", "link", "set", fmt.Sprintf("%sh%d", l.prefix, g.i), "master", l.prefix+"b1")
		}
		return
	}
	ips := func(gs []*labGate) string {
		var s []string
		for _, g := range gs {
			s = append(s, g.ip)
		}
		return strings.Join(s, " ")
	}
	for _, g := range a {
		g.do("cut " + ips(b))
	}
	for _, g := range b {
		g.do("cut " + ips(a))
	}
}

// heal joins every gate to the one bridge again.
func (l *lab) heal() {
	l.t.Helper()
	for _, g := range l.gates {
		if l.netns {
			l.sh("ip", "link", "set", fmt.Sprintf("%sh%d", l.prefix, g.i), "master", l.prefix+"b0")
			l.sh("ip", "netns", "exec", g.ns, "ip", "link", "set", fmt.Sprintf("%sn%d", l.prefix, g.i), "up")
		} else {
			g.do("heal")
		}
	}
}

// isolate cuts one gate from every other: its link down inside its
// namespace.
func (l *lab) isolate(g *labGate) {
	l.t.Helper()
	if l.netns {
		l.sh("ip", "netns", "exec", g.ns, "ip", "link", "set", fmt.Sprintf("%sn%d", l.prefix, g.i), "down")
		return
	}
	var others []*labGate
	for _, o := range l.gates {
		if o != g {
			others = append(others, o)
		}
	}
	l.cut([]*labGate{g}, others)
}

func tail(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

// TestStationPeers: eight gates as one gate line.
func TestStationPeers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Log("not root: network namespaces cannot be made; loopback addresses instead")
	}
	l := newLab(t)
	// Each part fails as itself: the lab's helpers report to it.
	part := func(name string, f func(*testing.T)) {
		t.Run(name, func(st *testing.T) {
			l.t = st
			defer func() { l.t = t }()
			f(st)
		})
	}
	part("trials", l.trials)
	part("partition", l.partition)
	part("isolated", l.isolated)
	part("restart", l.restart)
	part("rogue", l.rogue)
	for _, g := range l.gates {
		if err := g.proc.send("quit"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-g.proc.exited:
			if code := g.proc.cmd.ProcessState.ExitCode(); code != 0 {
				t.Errorf("gate %s exited %d after quit:\n%s", g.id, code, tail(g.proc.logs.String()))
			}
		case <-time.After(l.wait):
			t.Errorf("gate %s still running %v after quit", g.id, l.wait)
		}
		if strings.Contains(g.proc.logs.String(), "TR1:") {
			t.Errorf("a passenger's code is in gate %s's log", g.id)
		}
	}
}

// trial is one certificate shown at gate A, then at gate B after a delay.
type trial struct {
	a, b    *labGate
	cert    *verify.Cert
	delay   time.Duration
	granted bool // at B
	reason  string
	seenAt  string
}

// trials: the same certificate at gate A (granted, the passenger walks
// through), then at a random other gate B after a delay drawn from
// 0–500 ms, 1,000 times (100 under qemu), four trials at a time on
// disjoint pairs of gates. Every trial with a delay of 100 ms or more
// must be refused at B, as PASSBACK seen at A; every double grant (a delay
// inside the propagation window) must be raised as a double_use event on
// both A and B, and nothing else may be.
func (l *lab) trials(t *testing.T) {
	n := 1000
	if l.qemu != "" {
		n = 100
	}
	if v, err := strconv.Atoi(os.Getenv("GATEAGENT_STATION_TRIALS")); err == nil && v > 0 {
		n = v
	}
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		free    = slices.Clone(l.gates)
		results = make([]trial, n)
		errs    []error
		wg      sync.WaitGroup
	)
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 1))
	take := func() (*labGate, *labGate, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		for len(free) < 2 {
			cond.Wait()
		}
		i := rng.IntN(len(free))
		a := free[i]
		free = slices.Delete(free, i, i+1)
		j := rng.IntN(len(free))
		b := free[j]
		free = slices.Delete(free, j, j+1)
		return a, b, time.Duration(rng.Int64N(int64(500*time.Millisecond) + 1))
	}
	give := func(gs ...*labGate) {
		mu.Lock()
		free = append(free, gs...)
		mu.Unlock()
		cond.Broadcast()
	}
	run := func(i int) error {
		a, b, delay := take()
		defer give(a, b)
		tr := trial{a: a, b: b, cert: l.cert(), delay: delay}
		defer func() { results[i] = tr }()
		if err := a.scan(tr.cert); err != nil {
			return err
		}
		if _, err := a.expect("granted"); err != nil {
			return err
		}
		granted := time.Now()
		if err := a.proc.send("enter"); err != nil { // the passenger walks in
			return err
		}
		// The stimulus: the companion comes this long after the grant.
		time.Sleep(time.Until(granted.Add(delay)))
		if err := b.scan(tr.cert); err != nil { // the companion, at B
			return err
		}
		m, err := b.outcome()
		if err != nil {
			return err
		}
		tr.granted, tr.reason, tr.seenAt = m.Kind == "granted", m.Reason, m.SeenAt
		if _, err := a.expect("passed"); err != nil {
			return err
		}
		if err := a.proc.send("leave"); err != nil {
			return err
		}
		if _, err := a.expect("closed"); err != nil {
			return err
		}
		if tr.granted { // the companion walks through too
			return b.walkThrough()
		}
		if m.Kind != "denied" {
			return fmt.Errorf("gate %s did %s with the code of a passenger who passed %s %v earlier", b.id, m.Kind, a.id, delay)
		}
		return nil
	}
	next := make(chan int)
	for range labGates / 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := run(i); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("trial %d: %w", i, err))
					mu.Unlock()
				}
			}
		}()
	}
	start := time.Now()
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d trials failed; the first: %v", len(errs), errs[0])
	}

	// Every trial with a delay ≥ 100 ms refused at B, seen at A.
	var doubles []trial
	allRefusedFrom := time.Duration(0)
	for _, tr := range results {
		switch {
		case tr.granted:
			doubles = append(doubles, tr)
			allRefusedFrom = max(allRefusedFrom, tr.delay+time.Microsecond)
			if tr.delay >= 100*time.Millisecond {
				t.Errorf("%s granted at %s %v after %s granted it", tr.cert.ID, tr.b.id, tr.delay, tr.a.id)
			}
		case tr.reason != "PASSBACK" || tr.seenAt != tr.a.id:
			t.Errorf("%s refused at %s %v after %s as %s seen at %q, want PASSBACK seen at %s", tr.cert.ID, tr.b.id, tr.delay, tr.a.id, tr.reason, tr.seenAt, tr.a.id)
		}
	}
	// Every double grant raised as double_use on both gates, and nothing
	// else.
	want := map[string]map[verify.CertID]string{}
	for _, g := range l.gates {
		want[g.id] = map[verify.CertID]string{}
	}
	for _, tr := range doubles {
		want[tr.a.id][tr.cert.ID] = tr.b.id
		want[tr.b.id][tr.cert.ID] = tr.a.id
	}
	var (
		got            map[string]map[verify.CertID]event.Event
		missing, extra int
	)
	settled := eventually.Within(10*time.Second, func() bool { // every one raised, or one too many
		got, missing, extra = l.doubleUses(), 0, 0
		for gid, certs := range want {
			for id := range certs {
				if _, ok := got[gid][id]; !ok {
					missing++
				}
			}
			for id := range got[gid] {
				if _, ok := certs[id]; !ok {
					extra++
				}
			}
		}
		return missing == 0 || extra > 0
	})
	for gid, certs := range want {
		for id := range got[gid] {
			if _, ok := certs[id]; !ok {
				t.Errorf("gate %s raised a double use for %s, which was granted at one gate only", gid, id)
			}
		}
	}
	if !settled {
		t.Fatalf("%d double grants not raised as double_use on both gates within 10 s", missing)
	}
	if extra == 0 {
		for gid, certs := range want {
			for id, other := range certs {
				if d := got[gid][id].Detail; !strings.Contains(d, "at gate "+other) {
					t.Errorf("gate %s's double_use event for %s says %q, not gate %s", gid, id, d, other)
				}
			}
		}
	}
	var delays []string
	for _, tr := range doubles {
		delays = append(delays, tr.delay.Round(time.Microsecond).String())
	}
	t.Logf("%d trials in %v: %d refused at B as PASSBACK seen at A, %d granted at B (delays %v), each raised as double_use on both gates",
		n, time.Since(start).Round(time.Second), n-len(doubles), len(doubles), delays)
	t.Logf("smallest delay from which every trial was refused: %v (delays drawn uniformly from 0 to 500 ms)", allRefusedFrom.Round(time.Microsecond))
	var p50, p99 []time.Duration
	for _, g := range l.gates {
		p := g.status().Propagation
		p50, p99 = append(p50, p.P50), append(p99, p.P99)
	}
	slices.Sort(p50)
	slices.Sort(p99)
	t.Logf("propagation at the gates (a report sent to its arrival there): p50 %v to %v, p99 %v to %v",
		p50[0].Round(time.Microsecond), p50[len(p50)-1].Round(time.Microsecond), p99[0].Round(time.Microsecond), p99[len(p99)-1].Round(time.Microsecond))
}

// partition: the gates split in two halves that cannot reach each other;
// both go on granting; once the link heals, each half learns the other's
// passages within 5 s, and the certificate granted in both halves is
// raised as a double use on the two gates concerned.
func (l *lab) partition(t *testing.T) {
	left, right := l.gates[:labGates/2], l.gates[labGates/2:]
	l.cut(left, right)
	l.awaitMembers(labGates/2-1, l.gates...)
	twice, onlyLeft, onlyRight := l.cert(), l.cert(), l.cert()
	left[0].pass(twice)
	right[1].pass(twice) // the other half does not know: granted again
	left[2].pass(onlyLeft)
	right[3].pass(onlyRight)
	l.awaitSeen(onlyLeft, left[2].id, 5*time.Second, left[0], left[1], left[3])
	for _, g := range right {
		if m := g.do("seen " + onlyLeft.ID.String()); m.Found {
			t.Fatalf("gate %s knows of a passage on the other side of the cut", g.id)
		}
	}
	if st := left[0].status(); st.Isolated || st.Alive != labGates/2-1 {
		t.Fatalf("gate %s in a half of %d: %+v", left[0].id, labGates/2, st)
	}

	healed := time.Now()
	l.heal()
	took := l.awaitSeen(onlyRight, right[3].id, 5*time.Second, left...)
	took = max(took, l.awaitSeen(onlyLeft, left[2].id, 5*time.Second-took, right...))
	var uses map[string]map[verify.CertID]event.Event
	eventually.True(t, 5*time.Second-time.Since(healed), fmt.Sprintf("the double use of %s raised on both %s and %s after the heal", twice.ID, left[0].id, right[1].id), func() bool {
		uses = l.doubleUses()
		_, a := uses[left[0].id][twice.ID]
		_, b := uses[right[1].id][twice.ID]
		return a && b
	})
	t.Logf("partition healed: every gate knew the other half's passages %v after the heal, the double use raised on both gates %v after it",
		took.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
	for gid, certs := range uses {
		if _, ok := certs[twice.ID]; ok && gid != left[0].id && gid != right[1].id {
			t.Errorf("gate %s, which did not grant %s, raised a double use for it", gid, twice.ID)
		}
	}
	// As a passenger finds it: the other half's passage refused here.
	right[0].refuses(onlyLeft, left[2].id)
	left[1].refuses(onlyRight, right[3].id)
	l.awaitMembers(labGates-1, l.gates...)
}

// isolated: a gate whose link is down goes on alone; its events say so,
// its status too; back on the LAN, what it granted meanwhile reaches the
// others.
func (l *lab) isolated(t *testing.T) {
	g := l.gates[labGates-1]
	cut := time.Now()
	l.isolate(g)
	eventually.True(t, 4*l.wait, fmt.Sprintf("gate %s isolated with its link down", g.id), func() bool { return g.status().Isolated })
	t.Logf("gate %s isolated %v after its link went down (ten probe intervals of %v without a word from any peer)", g.id, time.Since(cut).Round(time.Millisecond), l.probe)
	alone := l.cert()
	g.pass(alone)
	var marked int
	for _, e := range g.do("events").Events {
		if e.CertID == alone.ID && strings.HasSuffix(e.Detail, gate.IsolatedNote) {
			marked++
		}
	}
	if marked != 2 {
		t.Fatalf("gate %s recorded the grant and the passage while isolated, %d of them marked so", g.id, marked)
	}
	if st := g.status(); !st.Isolated || st.IsolatedSeconds <= 0 {
		t.Fatalf("isolated gate's status %+v", st)
	}
	healed := time.Now()
	l.heal()
	took := l.awaitSeen(alone, g.id, 5*time.Second, l.gates[:labGates-1]...)
	l.awaitMembers(labGates-1, l.gates...)
	t.Logf("link up: its passage known at every other gate %v later, every gate sees every other %v later", took.Round(time.Millisecond), time.Since(healed).Round(time.Millisecond))
	eventually.True(t, l.wait, "no longer isolated once every peer came back", func() bool { return !g.status().Isolated })
}

// restart: a gate killed outright during traffic comes back, pulls its
// peers' state before it takes a scan, and refuses a certificate that
// passed elsewhere while it was down.
func (l *lab) restart(t *testing.T) {
	g := l.gates[2]
	others := slices.DeleteFunc(slices.Clone(l.gates), func(o *labGate) bool { return o == g })
	stop := make(chan struct{})
	var (
		traffic sync.WaitGroup
		passed  atomic.Int32
	)
	traffic.Add(1)
	go func() { // passengers at two other gates meanwhile
		defer traffic.Done()
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			o := others[k%2]
			c := l.cert()
			if o.scan(c) != nil {
				return
			}
			if _, err := o.expect("granted"); err != nil {
				t.Error(err)
				return
			}
			if err := o.walkThrough(); err != nil {
				t.Error(err)
				return
			}
			passed.Add(1)
		}
	}()
	eventually.True(t, 4*l.wait, "passengers through two other gates", func() bool { return passed.Load() >= 2 })
	g.proc.kill() // SIGKILL: no leave, no shutdown
	whileDown := l.cert()
	others[3].pass(whileDown)
	l.awaitSeen(whileDown, others[3].id, 5*time.Second, others[4])
	g.start()
	ready := g.awaitReady()
	close(stop)
	traffic.Wait()
	if !ready.Synced {
		t.Fatalf("gate %s restarted and ready without its peers' state", g.id)
	}
	g.refuses(whileDown, others[3].id)
	l.awaitMembers(labGates-1, l.gates...)
}

// rogue: a host on the station LAN without the key, claiming a gate's
// name, cannot join; its forged passage (sealed with its own key, in
// plain datagrams, over TCP) is dropped and counted by every gate; no
// gate's decision changes.
func (l *lab) rogue(t *testing.T) {
	forged := l.cert()
	key := make([]byte, 32)
	rand.Read(key)
	rs := rogueSpec{Claim: "S01", Group: "LAB", Forged: forged.ID.String(), Key: key}
	ns, ip := "", "127.0.0.30"
	rs.Bind = ip + ":27946"
	if l.netns {
		ns, ip = fmt.Sprintf("%s-%d", l.prefix, labGates), fmt.Sprintf("10.77.0.%d", 11+labGates)
		rs.Bind = ip + ":7946"
	}
	for _, g := range l.gates {
		rs.Gates = append(rs.Gates, g.id)
		rs.Seeds = append(rs.Seeds, g.addr)
	}
	spec, _ := json.Marshal(rs)
	p := l.startProc(l.command(ns, peerRogueEnv+"="+string(spec)))
	var m childMsg
	select {
	case m = <-p.ready:
	case <-p.exited:
		t.Fatalf("the rogue exited:\n%s", tail(p.logs.String()))
	case <-time.After(4 * l.wait):
		t.Fatal("the rogue did not report")
	}
	if m.Synced || m.Status.Alive != 0 {
		t.Fatalf("the rogue without the key joined: %+v", m.Status)
	}
	for _, g := range l.gates {
		var st *stn.Status
		if !eventually.Within(l.wait, func() bool {
			st = g.status()
			var from bool
			for _, s := range st.Unauthenticated {
				from = from || s.Addr == ip
			}
			return st.Dropped["unauthenticated"] > 0 && from
		}) {
			t.Fatalf("gate %s counted no unauthenticated traffic from the rogue at %s: %v %+v", g.id, ip, st.Dropped, st.Unauthenticated)
		}
		st = g.status()
		if st.Alive != labGates-1 {
			t.Errorf("gate %s sees %d peers alive", g.id, st.Alive)
		}
		for _, peer := range st.Peers {
			if peer.Gate == "S01" && strings.HasPrefix(peer.Addr, ip+":") {
				t.Errorf("gate %s takes the rogue for S01", g.id)
			}
		}
		if m := g.do("seen " + forged.ID.String()); m.Found {
			t.Errorf("gate %s took the forged passage", g.id)
		}
	}
	// The certificate whose passage was forged is granted as if nothing
	// had been sent.
	l.gates[4].pass(forged)
	p.send("quit")
	t.Logf("the rogue at %s: not a member of any gate's group, its traffic dropped and counted by all %d gates", ip, labGates)
}
