package station_test

// Nodes on real UDP and TCP sockets, each on its own loopback address
// (127.0.0.x), talking through memberlist with the station key.

import (
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
	"gateagent/station"
	"gateagent/station/stationtest"
	"gateagent/verify"
)

const passTimeout = 8 * time.Second

type testNode struct {
	*station.Node
	gate string
	ip   string
	link *stationtest.Link
	logs *syncbuf.Buffer
	mu   sync.Mutex
	uses []station.DoubleUse
}

func (n *testNode) doubleUses() []station.DoubleUse {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]station.DoubleUse(nil), n.uses...)
}

// startNode starts gate on 127.0.0.(10+i) with a free port, joining seeds.
func startNode(t *testing.T, gate string, i int, gates, seeds []string, key []byte, mod func(*station.Config)) *testNode {
	t.Helper()
	n := &testNode{gate: gate, ip: fmt.Sprintf("127.0.0.%d", 10+i), logs: &syncbuf.Buffer{}}
	link, err := stationtest.NewLink(n.ip, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.link = link
	cfg := station.Config{GateID: gate, Group: "TEST-entry", Gates: gates, Bind: n.ip + ":0", Seeds: seeds,
		Keys: [][]byte{key}, Window: 30 * time.Minute, Probe: 100 * time.Millisecond, Reconnect: 100 * time.Millisecond,
		PushPull: time.Second, JoinTimeout: time.Second, Transport: link,
		Logger: slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		OnDoubleUse: func(u station.DoubleUse) {
			n.mu.Lock()
			n.uses = append(n.uses, u)
			n.mu.Unlock()
		}}
	if mod != nil {
		mod(&cfg)
	}
	n.Node, err = station.Start(cfg)
	if err != nil {
		link.Shutdown()
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// startGroup starts k gates E01..Ek, each seeded with those before it, and
// waits until every gate sees all the others.
func startGroup(t *testing.T, k int, key []byte) []*testNode {
	t.Helper()
	var gates []string
	for i := range k {
		gates = append(gates, fmt.Sprintf("E%02d", i+1))
	}
	var nodes []*testNode
	var seeds []string
	for i, g := range gates {
		n := startNode(t, g, i, gates, seeds, key, nil)
		nodes = append(nodes, n)
		seeds = append(seeds, n.Addr())
	}
	for _, n := range nodes {
		eventually.True(t, 5*time.Second, n.gate+" sees every other gate", func() bool { return n.Status().Alive == k-1 })
	}
	return nodes
}

func certN(i int) verify.CertID {
	var c verify.CertID
	c[0], c[1], c[15] = byte(i>>8), byte(i), 0x5a
	return c
}

func TestHoldReleasePassedReachEveryPeer(t *testing.T) {
	nodes := startGroup(t, 3, stationtest.Key(t))
	a, b, c := nodes[0], nodes[1], nodes[2]
	id := certN(1)
	now := time.Now()
	a.Hold(id, verify.Entry, now, now.Add(passTimeout))
	for _, n := range []*testNode{b, c} {
		eventually.True(t, 2*time.Second, n.gate+" sees the hold at E01", func() bool { s, ok := n.Seen(id, verify.Entry); return ok && s.Held && s.Gate == "E01" })
	}
	if s, ok := a.Seen(id, verify.Entry); ok {
		t.Fatalf("the granting gate refuses its own passenger: %+v", s)
	}
	a.Release(id, verify.Entry, time.Now())
	for _, n := range []*testNode{b, c} {
		eventually.True(t, 2*time.Second, n.gate+" sees the lapse", func() bool { _, ok := n.Seen(id, verify.Entry); return !ok })
	}
	// The passenger steps back and uses E02; E02's passage reaches E01 and E03.
	at := time.Now()
	b.Hold(id, verify.Entry, at, at.Add(passTimeout))
	b.Passed(id, verify.Entry, at.Add(time.Millisecond))
	for _, n := range []*testNode{a, c} {
		eventually.True(t, 2*time.Second, n.gate+" sees the passage at E02", func() bool {
			s, ok := n.Seen(id, verify.Entry)
			return ok && !s.Held && s.Gate == "E02" && s.At.Equal(at.Add(time.Millisecond).UTC().Truncate(0))
		})
	}
	// A report is counted after its state is merged, and the passage may
	// have come by push/pull before E02's datagrams or their gossip copies:
	// the counters follow, they do not lead.
	var st station.Status
	if !eventually.Within(2*time.Second, func() bool {
		st = c.Status()
		return st.Received["hold"] >= 2 && st.Received["passed"] >= 1 && st.Received["release"] >= 1
	}) {
		t.Errorf("E03 received %v", st.Received)
	}
	var bs station.Status
	if !eventually.Within(2*time.Second, func() bool {
		bs = b.Status()
		return bs.Sent["hold"] == 1 && bs.Sent["passed"] == 1
	}) {
		t.Errorf("E02 sent %v", bs.Sent)
	}
	if p := st.Propagation; p.Count == 0 || p.P50 <= 0 || p.P99 < p.P50 || p.Buckets[len(p.Buckets)-1].Count > p.Count {
		t.Errorf("propagation figures %+v", st.Propagation) // their speed is BenchmarkStationPropagation's
	}
	for _, n := range nodes {
		if u := n.doubleUses(); len(u) != 0 {
			t.Errorf("%s reported a double use for a lapse then a grant elsewhere: %+v", n.gate, u)
		}
		if n.Isolated() {
			t.Errorf("%s isolated", n.gate)
		}
	}
}

// TestLateJoinerPullsTheWindow: a gate that starts after a passage elsewhere
// knows of it when Ready says so, without waiting for gossip.
func TestLateJoinerPullsTheWindow(t *testing.T) {
	key := stationtest.Key(t)
	gates := []string{"E01", "E02", "E03"}
	a := startNode(t, "E01", 0, gates, nil, key, nil)
	b := startNode(t, "E02", 1, gates, []string{a.Addr()}, key, nil)
	eventually.True(t, 5*time.Second, "E01 and E02 together", func() bool { return a.Status().Alive == 1 })
	id := certN(2)
	at := time.Now()
	a.Hold(id, verify.Entry, at, at.Add(passTimeout))
	a.Passed(id, verify.Entry, at)
	eventually.True(t, 2*time.Second, "E02 sees the passage", func() bool { _, ok := b.Seen(id, verify.Entry); return ok })

	c := startNode(t, "E03", 2, gates, []string{b.Addr()}, key, nil)
	select {
	case <-c.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("E03 not ready within 5 s")
	}
	if !c.Synced() {
		t.Fatal("E03 ready but not synced with a live seed")
	}
	if s, ok := c.Seen(id, verify.Entry); !ok || s.Gate != "E01" {
		t.Fatalf("E03 ready without the passage at E01: %+v %v", s, ok)
	}
}

// TestRunsWithoutPeers: no seed answers: Ready after the join timeout,
// not synced, isolated, and the isolated time counts.
func TestRunsWithoutPeers(t *testing.T) {
	dead := "127.0.0.9:1" // nothing listens there
	start := time.Now()
	n := startNode(t, "E01", 0, []string{"E01", "E02"}, []string{dead}, stationtest.Key(t), func(c *station.Config) {
		c.JoinTimeout = 300 * time.Millisecond
	})
	select {
	case <-n.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("not ready 5 s after start with no peer")
	}
	if took := time.Since(start); took < 250*time.Millisecond {
		t.Errorf("ready after %v, before the join timeout", took)
	}
	st := n.Status()
	if n.Synced() || !n.Isolated() || !st.Isolated || st.Alive != 0 || st.Expected != 1 {
		t.Fatalf("status %+v", st)
	}
	eventually.True(t, 2*time.Second, "isolated seconds counted", func() bool { return n.Status().IsolatedSeconds > 0.3 })
	if p := st.Peers; len(p) != 1 || p[0].Gate != "E02" || p[0].State != "unknown" {
		t.Fatalf("peers %+v", p)
	}
	if !strings.Contains(n.logs.String(), "running without them") {
		t.Errorf("no log line says the gate runs without its peers:\n%s", n.logs)
	}
	// A gate alone in its group is never isolated and never waits.
	solo := startNode(t, "S01", 1, []string{"S01"}, nil, stationtest.Key(t), nil)
	select {
	case <-solo.Ready():
	case <-time.After(time.Second):
		t.Fatal("a gate alone in its group waits for peers")
	}
	if solo.Isolated() {
		t.Fatal("a gate alone in its group is isolated")
	}
}

// TestWithoutTheKeyNothingGetsIn: a host with another key cannot join, and
// neither its sealed messages nor plain forged datagrams and streams reach
// the state; each is dropped and counted, by source.
func TestWithoutTheKeyNothingGetsIn(t *testing.T) {
	key := stationtest.Key(t)
	gates := []string{"E01", "E02", "E03"}
	a := startNode(t, "E01", 0, gates, nil, key, nil)
	// The rogue knows a gate's name and the group: only the key differs.
	rogue := startNode(t, "E03", 5, gates, []string{a.Addr()}, stationtest.Key(t), func(c *station.Config) {
		c.JoinTimeout = 500 * time.Millisecond
	})
	<-rogue.Ready()
	if rogue.Synced() || rogue.Status().Alive != 0 {
		t.Fatal("a node without the key joined")
	}
	forged := certN(3)
	rogue.Hold(forged, verify.Entry, time.Now(), time.Now().Add(passTimeout))

	// Plain datagrams and a plain stream in memberlist's own framing: a
	// user message claiming a passage at E02.
	msg := forgedPassage(forged)
	u, err := net.Dial("udp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for range 5 {
		u.Write(append([]byte{8 /* memberlist userMsg */}, msg...))
	}
	if c, err := net.Dial("tcp", a.Addr()); err == nil {
		c.Write(append([]byte{8}, msg...))
		c.Close()
	}
	eventually.True(t, 5*time.Second, "the forged traffic counted as unauthenticated", func() bool {
		st := a.Status()
		return st.Dropped["unauthenticated"] >= 6 && len(st.Unauthenticated) > 0
	})
	st := a.Status()
	if src := st.Unauthenticated; src[0].Addr != "127.0.0.15" && src[0].Addr != "127.0.0.1" {
		t.Errorf("unauthenticated sources %+v", src)
	}
	if st.Alive != 0 || st.Entries != 0 || st.Received["hold"]+st.Received["passed"] != 0 {
		t.Fatalf("the rogue got in: %+v", st)
	}
	if s, ok := a.Seen(forged, verify.Entry); ok {
		t.Fatalf("a forged passage refuses a passenger: %+v", s)
	}
	// The drops are logged on the node's next tick, after they are counted.
	if !eventually.Within(5*time.Second, func() bool {
		return strings.Contains(a.logs.String(), "dropped traffic not sealed with the station key")
	}) {
		t.Errorf("the drop is not logged:\n%s", a.logs)
	}
}

// forgedPassage is a well-formed passage message (as a gate would seal it).
func forgedPassage(id verify.CertID) []byte {
	now := time.Now().UnixNano()
	b := []byte{1, 3, 1, 3, 'E', '0', '2'}
	b = append(b, id[:]...)
	for _, v := range []int64{now, now, now} {
		for i := 7; i >= 0; i-- {
			b = append(b, byte(v>>(8*i)))
		}
	}
	return b
}

// TestUnknownGateRefused: a host with the key that claims a gate ID not in
// the list is refused as a member and its reports are dropped.
func TestUnknownGateRefused(t *testing.T) {
	key := stationtest.Key(t)
	a := startNode(t, "E01", 0, []string{"E01", "E02"}, nil, key, nil)
	x := startNode(t, "X99", 1, []string{"E01", "X99"}, []string{a.Addr()}, key, nil)
	<-x.Ready()
	id := certN(4)
	eventually.True(t, 5*time.Second, "the alive message of X99 refused", func() bool { return a.Status().Dropped["unknown_gate"] > 0 })
	// X99 sees E01 (it lists it), so it sends its report there.
	x.Hold(id, verify.Entry, time.Now(), time.Now().Add(passTimeout))
	eventually.True(t, 5*time.Second, "X99's report dropped", func() bool { return a.Status().Dropped["unknown_gate"] > 1 })
	for _, m := range a.Status().Peers {
		if m.Gate == "X99" {
			t.Fatalf("X99 listed among E01's peers: %+v", m)
		}
	}
	if a.Status().Alive != 0 {
		t.Fatal("E01 counts X99 as a live peer")
	}
	if _, ok := a.Seen(id, verify.Entry); ok {
		t.Fatal("a report from a gate not in the list refuses a passenger")
	}
	if !strings.Contains(a.logs.String(), "refused a peer that claims a gate ID not in station.gates") || !strings.Contains(a.logs.String(), "X99") {
		t.Errorf("the refusal is not logged with the name:\n%s", a.logs)
	}
}

// TestKeyRotation: a rotation installs the new key as an accepted one on
// every gate, then makes it primary gate by gate, then drops the old: at
// each step, gates on either side of it hear each other. A gate that
// seals with a key its peer does not hold is not heard.
func TestKeyRotation(t *testing.T) {
	oldKey, newKey := stationtest.Key(t), stationtest.Key(t)
	gates := []string{"E01", "E02"}
	heard := func(from, to *testNode, i int) {
		t.Helper()
		id := certN(50 + i)
		from.Hold(id, verify.Entry, time.Now(), time.Now().Add(passTimeout))
		eventually.True(t, 3*time.Second, to.gate+" hears "+from.gate, func() bool { _, ok := to.Seen(id, verify.Entry); return ok })
	}
	// Step 1: E01 still on the old key alone; E02 has the new one accepted.
	a := startNode(t, "E01", 0, gates, nil, oldKey, nil)
	b := startNode(t, "E02", 1, gates, []string{a.Addr()}, oldKey, func(c *station.Config) { c.Keys = [][]byte{oldKey, newKey} })
	<-b.Ready()
	if !b.Synced() {
		t.Fatal("step 1: E02 (old primary, new accepted) did not join E01 (old)")
	}
	heard(a, b, 0)
	heard(b, a, 1)
	// Step 2: E01 restarts with the new key primary and the old accepted.
	a.Close()
	a2 := startNode(t, "E01", 2, gates, []string{b.Addr()}, newKey, func(c *station.Config) { c.Keys = [][]byte{newKey, oldKey} })
	<-a2.Ready()
	if !a2.Synced() {
		t.Fatal("step 2: E01 (new primary, old accepted) did not join E02 (old primary, new accepted)")
	}
	heard(a2, b, 2)
	heard(b, a2, 3)
	// A gate that never got the new key hears neither.
	c := startNode(t, "E02", 3, gates, []string{a2.Addr()}, oldKey, func(c *station.Config) { c.JoinTimeout = 300 * time.Millisecond })
	<-c.Ready()
	if c.Synced() {
		t.Fatal("a gate without the new key joined a gate sealing with it")
	}
}

// TestPartitionHealMergesAndFindsDoubleUse: two halves that cannot reach
// each other go on granting; once the link heals, each half learns the
// other's passages within 5 s, and the certificate granted on both sides
// is reported as a double use by the two gates concerned.
func TestPartitionHealMergesAndFindsDoubleUse(t *testing.T) {
	nodes := startGroup(t, 4, stationtest.Key(t))
	left, right := nodes[:2], nodes[2:]
	cut := func(from, to []*testNode) {
		for _, n := range from {
			for _, o := range to {
				n.link.Cut(o.ip)
			}
		}
	}
	cut(left, right)
	cut(right, left)
	for _, n := range nodes {
		eventually.True(t, 10*time.Second, n.gate+" sees its half only", func() bool { return n.Status().Alive == 1 })
	}
	if nodes[0].Isolated() {
		t.Fatal("a gate with a peer in its half is isolated")
	}
	pass := func(n *testNode, id verify.CertID) {
		at := time.Now()
		n.Hold(id, verify.Entry, at, at.Add(passTimeout))
		n.Passed(id, verify.Entry, at.Add(time.Millisecond))
	}
	twice, onlyLeft, onlyRight := certN(10), certN(11), certN(12)
	pass(nodes[0], twice)
	pass(nodes[0], onlyLeft)
	time.Sleep(20 * time.Millisecond) // the stimulus: the two grants of twice, 20 ms apart
	pass(nodes[2], twice)
	pass(nodes[3], onlyRight)
	eventually.True(t, 2*time.Second, "the left half shares its passages", func() bool { _, ok := nodes[1].Seen(onlyLeft, verify.Entry); return ok })
	if _, ok := nodes[2].Seen(onlyLeft, verify.Entry); ok {
		t.Fatal("a passage crossed the cut")
	}

	healed := time.Now()
	for _, n := range nodes {
		n.link.Heal()
	}
	for _, n := range left {
		eventually.True(t, 5*time.Second, n.gate+" learns the right half's passage", func() bool { s, ok := n.Seen(onlyRight, verify.Entry); return ok && s.Gate == "E04" })
	}
	for _, n := range right {
		eventually.True(t, 5*time.Second, n.gate+" learns the left half's passage", func() bool { s, ok := n.Seen(onlyLeft, verify.Entry); return ok && s.Gate == "E01" })
	}
	eventually.True(t, 5*time.Second, "E01 and E03 each report the double use", func() bool { return len(nodes[0].doubleUses()) == 1 && len(nodes[2].doubleUses()) == 1 })
	t.Logf("states merged and the double use found %v after the heal", time.Since(healed).Round(time.Millisecond))
	u1, u3 := nodes[0].doubleUses()[0], nodes[2].doubleUses()[0]
	if u1.Cert != twice || u1.Gate != "E03" || u3.Cert != twice || u3.Gate != "E01" || !u1.Here.Equal(u3.There) {
		t.Fatalf("E01 reports %+v, E03 %+v", u1, u3)
	}
	for _, n := range []*testNode{nodes[1], nodes[3]} {
		if u := n.doubleUses(); len(u) != 0 {
			t.Errorf("%s, not concerned, reports %+v", n.gate, u)
		}
	}
	if s := nodes[0].Status(); s.DoubleUses != 1 {
		t.Errorf("status counts %d double uses", s.DoubleUses)
	}
	for _, n := range nodes {
		eventually.True(t, 5*time.Second, n.gate+" sees every gate again", func() bool { return n.Status().Alive == 3 })
	}
}

// TestIsolatedWhenEveryLinkIsCut: a gate cut from all its peers says so,
// and is back once the link heals.
func TestIsolatedWhenEveryLinkIsCut(t *testing.T) {
	nodes := startGroup(t, 3, stationtest.Key(t))
	lone := nodes[0]
	for _, o := range nodes[1:] {
		lone.link.Cut(o.ip)
		o.link.Cut(lone.ip)
	}
	cut := time.Now()
	eventually.True(t, 10*time.Second, "E01 isolated", lone.Isolated)
	t.Logf("isolated %v after the cut (probe interval 100ms)", time.Since(cut).Round(time.Millisecond))
	// memberlist declares them dead later (see isolateAfter).
	eventually.True(t, 30*time.Second, "every peer of E01 declared gone", func() bool { return lone.Status().Alive == 0 })
	if nodes[1].Isolated() {
		t.Fatal("E02 isolated though E03 is there")
	}
	// A passage while isolated: its report is lost on the cut link.
	id := certN(30)
	at := time.Now()
	lone.Hold(id, verify.Entry, at, at.Add(passTimeout))
	lone.Passed(id, verify.Entry, at)
	for _, o := range nodes {
		o.link.Heal()
	}
	eventually.True(t, 5*time.Second, "E01 back with its peers", func() bool { return !lone.Isolated() })
	for _, o := range nodes[1:] {
		eventually.True(t, 5*time.Second, o.gate+" learns the passage made while E01 was isolated", func() bool { s, ok := o.Seen(id, verify.Entry); return ok && s.Gate == "E01" })
	}
	if s := lone.Status(); s.IsolatedSeconds <= 0 {
		t.Fatalf("isolated seconds %v", s.IsolatedSeconds)
	}
}

// TestRejoinAfterRestart: a gate that stops and starts again (same name,
// same address) rejoins, and its peers send it what happened meanwhile.
func TestRejoinAfterRestart(t *testing.T) {
	key := stationtest.Key(t)
	nodes := startGroup(t, 3, key)
	addr := nodes[2].Addr()
	nodes[2].Close()
	nodes[2].link.Shutdown()
	id := certN(20)
	at := time.Now()
	nodes[0].Hold(id, verify.Entry, at, at.Add(passTimeout))
	nodes[0].Passed(id, verify.Entry, at)
	eventually.True(t, 2*time.Second, "E02 knows the passage", func() bool { _, ok := nodes[1].Seen(id, verify.Entry); return ok })
	_, port, _ := net.SplitHostPort(addr)
	var p int
	fmt.Sscan(port, &p)
	back := restartNode(t, "E03", 2, p, []string{"E01", "E02", "E03"}, []string{nodes[0].Addr(), nodes[1].Addr()}, key)
	<-back.Ready()
	if s, ok := back.Seen(id, verify.Entry); !ok || s.Gate != "E01" {
		t.Fatalf("the restarted gate does not know the passage at E01: %+v %v", s, ok)
	}
	eventually.True(t, 5*time.Second, "the group whole again", func() bool { return nodes[0].Status().Alive == 2 && back.Status().Alive == 2 })
}

func restartNode(t *testing.T, gate string, i, port int, gates, seeds []string, key []byte) *testNode {
	t.Helper()
	n := &testNode{gate: gate, ip: fmt.Sprintf("127.0.0.%d", 10+i), logs: &syncbuf.Buffer{}}
	var err error
	n.Node, err = station.Start(station.Config{GateID: gate, Group: "TEST-entry", Gates: gates, Bind: fmt.Sprintf("%s:%d", n.ip, port),
		Seeds: seeds, Keys: [][]byte{key}, Window: 30 * time.Minute, Probe: 100 * time.Millisecond, Reconnect: 100 * time.Millisecond,
		JoinTimeout: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(n.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

func TestConfigValidate(t *testing.T) {
	key := make([]byte, 32)
	good := station.Config{GateID: "E01", Group: "G", Gates: []string{"E01", "E02"}, Bind: "0.0.0.0:7946",
		Seeds: []string{"10.0.0.2:7946"}, Keys: [][]byte{key}, Window: time.Minute}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*station.Config){
		"no group":          func(c *station.Config) { c.Group = "" },
		"gate not listed":   func(c *station.Config) { c.Gates = []string{"E02"} },
		"gate twice":        func(c *station.Config) { c.Gates = []string{"E01", "E01"} },
		"gate with a space": func(c *station.Config) { c.Gates = []string{"E01", "E 2"} },
		"bind a name":       func(c *station.Config) { c.Bind = "gate1:7946" },
		"bind no port":      func(c *station.Config) { c.Bind = "10.0.0.1" },
		"seed port 0":       func(c *station.Config) { c.Seeds = []string{"10.0.0.2:0"} },
		"seed a name":       func(c *station.Config) { c.Seeds = []string{"gate2:7946"} },
		"no key":            func(c *station.Config) { c.Keys = nil },
		"short key":         func(c *station.Config) { c.Keys = [][]byte{make([]byte, 8)} },
		"window":            func(c *station.Config) { c.Window = 48 * time.Hour },
		"probe":             func(c *station.Config) { c.Probe = time.Millisecond },
	} {
		c := good
		c.Gates = append([]string(nil), good.Gates...)
		mod(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if _, err := station.Start(c); err == nil {
			t.Errorf("%s: started", name)
		}
	}
}

// The link's transport must stay a memberlist.NodeAwareTransport.
var _ memberlist.NodeAwareTransport = (*stationtest.Link)(nil)

// TestDuplicateGateIDReported: two hosts configured with the same gate ID
// (a copied config) make memberlist refuse the second as a name conflict;
// the gate says so, naming the ID and both addresses, in its log and its
// status, whether the ID is a peer's or its own.
func TestDuplicateGateIDReported(t *testing.T) {
	key := stationtest.Key(t)
	gates := []string{"E01", "E02", "E03"}
	a := startNode(t, "E01", 0, gates, nil, key, nil)
	b := startNode(t, "E02", 1, gates, []string{a.Addr()}, key, nil)
	<-b.Ready()
	eventually.True(t, 5*time.Second, "E02 alive at E01", func() bool { return a.Status().Alive == 1 })
	twin := startNode(t, "E02", 2, gates, []string{a.Addr()}, key, nil) // E02's config copied
	self := startNode(t, "E01", 3, gates, []string{b.Addr()}, key, nil) // E01's config copied
	conflictOf := func(n *testNode, gate string) (station.Conflict, bool) {
		for _, c := range n.Status().Conflicts {
			if c.Gate == gate {
				return c, true
			}
		}
		return station.Conflict{}, false
	}
	eventually.True(t, 10*time.Second, "E01 reports two hosts as E02", func() bool {
		c, ok := conflictOf(a, "E02")
		return ok && slices.Contains(c.Addrs, b.Addr()) && slices.Contains(c.Addrs, twin.Addr())
	})
	eventually.True(t, 10*time.Second, "E02 reports two hosts as E01", func() bool {
		c, ok := conflictOf(b, "E01")
		return ok && slices.Contains(c.Addrs, a.Addr()) && slices.Contains(c.Addrs, self.Addr())
	})
	if c, _ := conflictOf(a, "E02"); c.Count < 1 || c.Last.IsZero() {
		t.Errorf("conflict %+v: want a count and a time", c)
	}
	if !eventually.Within(5*time.Second, func() bool {
		return strings.Contains(a.logs.String(), "two hosts claim gate ID E02") && strings.Contains(a.logs.String(), twin.Addr())
	}) {
		t.Errorf("the duplicate ID is not logged with both addresses:\n%s", a.logs)
	}
	if _, ok := conflictOf(a, "E03"); ok {
		t.Error("a conflict reported for E03, which no host claims")
	}
}

// TestPassagesFromBeforeTheStart: every gate of a station restarts at
// once (a power cut): the peers' memory of each other's passages is gone,
// and each gate's own journal is all that remains. A gate started with
// its journal's passages gives them to its peers with its first
// push/pull, so a passenger who passed at E01 before the cut is still
// refused at E02 after it; a passage older than the window is not.
func TestPassagesFromBeforeTheStart(t *testing.T) {
	key := stationtest.Key(t)
	gates := []string{"E01", "E02"}
	recent, old, exit := certN(21), certN(22), certN(23)
	passedAt := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	a := startNode(t, "E01", 0, gates, nil, key, func(c *station.Config) {
		c.Passages = []station.Passage{
			{Cert: recent, Dir: verify.Entry, At: passedAt},
			{Cert: old, Dir: verify.Entry, At: time.Now().Add(-31 * time.Minute)}, // beyond the 30 min window
			{Cert: exit, Dir: verify.Exit, At: passedAt},
		}
	})
	b := startNode(t, "E02", 1, gates, []string{a.Addr()}, key, nil)
	eventually.True(t, 10*time.Second, "E02 synced with E01", b.Synced)
	s, ok := b.Seen(recent, verify.Entry)
	if !ok || s.Gate != "E01" || s.Held || !s.At.Equal(passedAt) {
		t.Fatalf("E02 sees the passage at E01 before the restart as %+v %v, want passed at E01 at %v", s, ok, passedAt)
	}
	if s, ok := b.Seen(exit, verify.Exit); !ok || s.Gate != "E01" {
		t.Errorf("the exit passage: %+v %v", s, ok)
	}
	if _, ok := b.Seen(exit, verify.Entry); ok {
		t.Error("an exit passage refuses the certificate's entry")
	}
	if s, ok := b.Seen(old, verify.Entry); ok {
		t.Errorf("a passage older than the window is given to the peers: %+v", s)
	}
	if st := a.Status(); st.Entries != 2 || st.DoubleUses != 0 {
		t.Errorf("E01's state %+v: want its 2 passages within the window, no double use", st)
	}
}
