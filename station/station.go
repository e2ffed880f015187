// Package station makes the gates of one station (or one gate line) refuse,
// together, a certificate that any of them has just let through: one
// certificate, one passenger, station-wide, with no server to fail.
//
// Each gate runs a Node. The nodes form a peer group over the station LAN
// with hashicorp/memberlist (SWIM membership and failure detection, gossip,
// TCP push/pull state exchange), every datagram and stream sealed with
// AES-GCM under the station key. A gate tells its peers of each grant (a
// hold on the certificate while its passenger walks up), each lapse (the
// hold released) and each passage: one datagram to every live peer at
// once, the same message gossiped as a safety net, and the whole state in
// every push/pull. Each node merges what it hears into the peer-aware
// anti-passback state (Seen), which the gate's verifier consults beside
// its own cache.
//
// What a gate must never wait for, it does not: Hold, Release and Passed
// put the report on a queue that the node's goroutine sends, and Seen
// reads memory under a read lock.
//
// A gate that starts or rejoins pulls its peers' state (push/pull) before
// Ready; with no peer reachable it runs on its own (Isolated) and says so.
// When two gates granted the same certificate while the first grant stood
// (a partition, or a companion quicker than the network), both find out
// once they hear of each other's grant, and report it as a DoubleUse.
//
// Times in messages are on the issuer-corrected clock of the gate that
// wrote them (Config.Now), so gates compare them on one clock.
package station

import (
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"

	"gateagent/internal/logging"
	"gateagent/verify"
)

// Config is what Start needs. Zero durations take the defaults written
// beside them.
type Config struct {
	// GateID is this gate's name (config gate.id): its node name in the
	// group. It must be one of Gates.
	GateID string
	// Group names the peer group (e.g. "GZN-entry"); it is bound into
	// every sealed datagram, so that two groups on one LAN with one key
	// cannot mix.
	Group string
	// Gates lists the group's gate IDs, this one included: a peer that
	// claims another name is refused.
	Gates []string
	// Bind is the address to listen on for UDP and TCP, "IP:port"; port
	// 0 picks a free one (tests).
	Bind string
	// Advertise is the address peers reach this gate at, "IP:port";
	// empty: the bound address (with 0.0.0.0, a private address of this
	// host).
	Advertise string
	// Seeds are the peers' addresses ("IP:port") joined at start and
	// again whenever one is missing. Listing every gate of the group,
	// this one included, lets every gate carry the same list.
	Seeds []string
	// Keys are the station keys (16, 24 or 32 bytes), the primary first:
	// this gate seals with it and accepts any of them (a rotation).
	Keys [][]byte
	// Window is the anti-passback window (verify's PassbackWindow).
	Window time.Duration
	// MaxHold is the longest hold a peer may announce: the longest pass
	// timeout in the group. Default 2 minutes (the longest the gate
	// allows).
	MaxHold time.Duration
	// Skew is how far ahead of this gate's clock a peer's times may be.
	// Default 30 s.
	Skew time.Duration
	// JoinTimeout bounds how long Ready waits for a first push/pull with
	// a peer before the gate runs without. Default 5 s.
	JoinTimeout time.Duration
	// PushPull is the interval of full state exchanges with a random
	// peer. Default 15 s.
	PushPull time.Duration
	// Probe is memberlist's failure-detection probe interval: a peer that
	// stops answering is declared dead after about four of them. Default
	// 1 s.
	Probe time.Duration
	// Reconnect is how often a missing peer is joined again. Default 1 s.
	Reconnect time.Duration
	// Now is the gate's issuer-corrected clock. Default time.Now.
	Now func() time.Time
	// Logger; default discards.
	Logger *slog.Logger
	// OnDoubleUse is called for each double use this gate is part of, on
	// a goroutine of the node's, one at a time (it may write to disk).
	OnDoubleUse func(DoubleUse)
	// Transport replaces memberlist's UDP and TCP transport on Bind
	// (tests: a link that can be cut). The guard wraps it either way.
	Transport memberlist.NodeAwareTransport
	// MaxEntries bounds the state; default (and at most) MaxEntries.
	MaxEntries int
	// Passages are this gate's own passages from before it started (its
	// journal's anti-passback state). The node holds them from the
	// start, so its first push/pull gives them to the peers: when every
	// gate of the station restarts at once (a power cut, an upgrade), no
	// passage within the window is forgotten station-wide. Those outside
	// the window are ignored.
	Passages []Passage
}

// Passage is one passage through this gate, remembered from before the
// node started.
type Passage struct {
	Cert verify.CertID
	Dir  verify.Direction
	At   time.Time // on the gate's corrected clock
}

// The defaults of Config.
const (
	DefaultMaxHold     = 2 * time.Minute
	DefaultSkew        = 30 * time.Second
	DefaultJoinTimeout = 5 * time.Second
	DefaultPushPull    = 15 * time.Second
	DefaultProbe       = time.Second
	DefaultReconnect   = time.Second
)

func (c Config) withDefaults() Config {
	set := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	set(&c.MaxHold, DefaultMaxHold)
	set(&c.Skew, DefaultSkew)
	set(&c.JoinTimeout, DefaultJoinTimeout)
	set(&c.PushPull, DefaultPushPull)
	set(&c.Probe, DefaultProbe)
	set(&c.Reconnect, DefaultReconnect)
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.MaxEntries <= 0 || c.MaxEntries > MaxEntries {
		c.MaxEntries = MaxEntries
	}
	return c
}

// Validate reports what is wrong with c, wrapping ErrConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
	}
	if c.Group == "" || !ValidGateID(c.Group) {
		return bad("group %q: 1 to 64 characters without spaces or quotes", c.Group)
	}
	if len(c.Gates) > MaxGates {
		return bad("%d gates: at most %d in one group", len(c.Gates), MaxGates)
	}
	seen := map[string]bool{}
	for _, g := range c.Gates {
		if !ValidGateID(g) {
			return bad("gate %q: 1 to 64 printable characters without spaces or quotes", g)
		}
		if seen[g] {
			return bad("gate %q is listed twice", g)
		}
		seen[g] = true
	}
	if !seen[c.GateID] {
		return bad("this gate, %q, is not in the group's gates %q", c.GateID, c.Gates)
	}
	if _, err := parseHostPort(c.Bind, true); err != nil {
		return bad("bind %q: %v", c.Bind, err)
	}
	if c.Advertise != "" {
		if _, err := parseHostPort(c.Advertise, false); err != nil {
			return bad("advertise %q: %v", c.Advertise, err)
		}
	}
	for _, s := range c.Seeds {
		if _, err := parseHostPort(s, false); err != nil {
			return bad("seed %q: %v", s, err)
		}
	}
	if len(c.Keys) == 0 {
		return bad("no station key")
	}
	for _, k := range c.Keys {
		if err := checkKey(k); err != nil {
			return bad("%v", err)
		}
	}
	switch {
	case c.Window < 0 || c.Window > verify.MaxPassbackWindow:
		return bad("window %v: 0 to %v", c.Window, verify.MaxPassbackWindow)
	case c.MaxHold < 10*time.Millisecond || c.MaxHold > 10*time.Minute:
		return bad("max hold %v: 10ms to 10m", c.MaxHold)
	case c.Skew < 0 || c.Skew > 10*time.Minute:
		return bad("skew %v: 0 to 10m", c.Skew)
	case c.JoinTimeout < 100*time.Millisecond || c.JoinTimeout > 5*time.Minute:
		return bad("join timeout %v: 100ms to 5m", c.JoinTimeout)
	case c.PushPull < 100*time.Millisecond || c.PushPull > time.Hour:
		return bad("push/pull interval %v: 100ms to 1h", c.PushPull)
	case c.Probe < 50*time.Millisecond || c.Probe > time.Minute:
		return bad("probe interval %v: 50ms to 1m", c.Probe)
	case c.Reconnect < 50*time.Millisecond || c.Reconnect > 10*time.Minute:
		return bad("reconnect interval %v: 50ms to 10m", c.Reconnect)
	}
	return nil
}

// parseHostPort reads "IP:port"; anyPort allows port 0.
func parseHostPort(s string, anyPort bool) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("want IP:port, e.g. 10.20.0.11:7946")
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address (names are not resolved: a station LAN has fixed addresses)", host)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (p == 0 && !anyPort) {
		return netip.AddrPort{}, fmt.Errorf("port %q: use 1 to 65535", port)
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(p)), nil
}

// Node is this gate's member of the station's peer group.
type Node struct {
	cfg  Config
	log  *slog.Logger
	logs *closingHandler // log's: quiet once Close returns
	// mlRepeats counts memberlist's repeated lines (logWriter).
	mlRepeats *logging.Repeats
	ml        *memberlist.Memberlist
	guard     *guard
	queue     *memberlist.TransmitLimitedQueue
	drops     *dropLog
	gates     map[string]bool
	addr      string // advertised
	seeds     []string

	mu sync.RWMutex
	st *state

	ops      chan op
	uses     chan DoubleUse
	exchange chan string
	stop     chan struct{} // closed by Close: the loop ends
	done     chan struct{} // closed when the loop has ended
	usesStop chan struct{} // closed by Close once memberlist is shut down
	usesDone chan struct{}
	closing  sync.Once

	ready     chan struct{}
	readyOnce sync.Once
	joined    chan struct{} // closed at the first push/pull this gate began
	joinOnce  sync.Once
	synced    atomic.Bool
	syncedAt  atomic.Int64
	isolated  atomic.Bool
	members   atomic.Int64 // this gate and its live peers, as the delegates last saw them
	contact   atomic.Int64 // when a peer was last heard from (time.Now, Unix ns)

	peersMu       sync.Mutex
	peers         map[string]*peerInfo
	isolatedSince time.Time
	isolatedTotal time.Duration
	refusedAt     map[string]time.Time // peers refused for their name, when last logged
	conflicts     map[string]*Conflict // gate IDs two hosts claim (NotifyConflict)

	sendTo []memberlist.Node // the loop's: whom apply sends to

	// onChange, set by this package's benchmark (under mu), sees each
	// grant that a peer's report or state changed.
	onChange func(verify.CertID)

	sent, received [maxKind + 1]atomic.Uint64
	doubleUses     atomic.Uint64
	lat            latency
}

type op struct {
	kind     msgKind
	id       verify.CertID
	dir      verify.Direction
	t, until int64
}

// peerInfo is what this gate knows of one of its peers. It is kept from
// memberlist's event delegates, which pass a node under memberlist's lock:
// the node returned by Members may change under a reader's feet, so the
// node keeps copies of its own.
type peerInfo struct {
	node      memberlist.Node // a copy: name, address, port
	addr      string
	state     memberlist.NodeStateType
	known     bool // ever seen
	since     time.Time
	lastHeard time.Time
	rtt       time.Duration
}

// queueLen bounds the reports waiting to be sent: a gate grants at most a
// few a second.
const queueLen = 1024

// pruneEvery is how often the state forgets grants past their horizon.
const pruneEvery = 5 * time.Second

// tcpTimeout bounds a push/pull's connection and each read or write: a
// station LAN answers in a millisecond, and a peer beyond a cut link
// must not hold a join for long.
const tcpTimeout = 2 * time.Second

// Start validates cfg, opens the node's sockets and joins the peer group
// in the background: Ready is closed once a first push/pull with a peer
// is done, or once JoinTimeout has passed without (the gate then runs on
// its own until a peer answers). Close the node to leave the group.
func Start(cfg Config) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	logs := &closingHandler{inner: cfg.Logger.Handler()}
	logs.init()
	n := &Node{cfg: cfg, log: slog.New(logs), logs: logs, gates: map[string]bool{},
		st:  newState(cfg.GateID, cfg.Gates, cfg.Window, cfg.MaxHold, cfg.Skew, cfg.MaxEntries),
		ops: make(chan op, queueLen), uses: make(chan DoubleUse, 256), exchange: make(chan string, 2*MaxGates),
		stop: make(chan struct{}), done: make(chan struct{}), usesStop: make(chan struct{}), usesDone: make(chan struct{}),
		ready: make(chan struct{}), joined: make(chan struct{}), peers: map[string]*peerInfo{}, refusedAt: map[string]time.Time{},
		conflicts: map[string]*Conflict{}}
	n.drops = newDropLog(time.Now)
	n.st.restore(cfg.Passages, cfg.Now().UnixNano())
	for _, g := range cfg.Gates {
		n.gates[g] = true
		if g != cfg.GateID {
			n.peers[g] = &peerInfo{}
		}
	}
	bind, _ := parseHostPort(cfg.Bind, true)
	n.mlRepeats = logging.NewTimedRepeats(n.log.With("part", "memberlist"), LogRepeatEvery)
	started := false
	defer func() {
		if !started {
			n.mlRepeats.Close()
		}
	}()
	mlLog := log.New(&logWriter{rep: n.mlRepeats}, "", 0)
	tr := cfg.Transport
	if tr == nil {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{bind.Addr().String()}, BindPort: int(bind.Port()), Logger: mlLog})
		if err != nil {
			return nil, fmt.Errorf("station: listen on %s: %w", cfg.Bind, err)
		}
		tr = nt
	}
	label := "gateagent/" + cfg.Group
	g, err := newGuard(tr, label, cfg.Keys, tcpTimeout, n.drops, &n.contact)
	if err != nil {
		tr.Shutdown()
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	n.guard = g
	keyring, err := memberlist.NewKeyring(cfg.Keys, cfg.Keys[0])
	if err != nil {
		g.Shutdown()
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}

	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.GateID
	mc.Transport = g
	mc.BindAddr, mc.BindPort = bind.Addr().String(), int(bind.Port())
	if cfg.Advertise != "" {
		adv, _ := parseHostPort(cfg.Advertise, false)
		mc.AdvertiseAddr, mc.AdvertisePort = adv.Addr().String(), int(adv.Port())
	}
	mc.Label = label
	mc.Keyring = keyring
	mc.GossipVerifyIncoming, mc.GossipVerifyOutgoing = true, true
	mc.EnableCompression = false // messages of 60 bytes gain nothing
	mc.TCPTimeout = tcpTimeout
	mc.ProbeInterval = cfg.Probe
	mc.ProbeTimeout = min(cfg.Probe/2, 500*time.Millisecond)
	mc.GossipInterval = 100 * time.Millisecond
	mc.GossipToTheDeadTime = 4 * cfg.Probe
	mc.PushPullInterval = cfg.PushPull
	mc.DeadNodeReclaimTime = 10 * time.Second // a gate's board replaced, at a new address
	d := &delegate{n}
	mc.Delegate, mc.Events, mc.Alive, mc.Ping, mc.Conflict = d, d, d, d, d
	mc.Logger = mlLog
	n.members.Store(1)
	n.queue = &memberlist.TransmitLimitedQueue{RetransmitMult: mc.RetransmitMult, NumNodes: func() int { return int(n.members.Load()) }}
	ml, err := memberlist.Create(mc)
	if err != nil {
		g.Shutdown()
		return nil, fmt.Errorf("station: start: %w", err)
	}
	n.ml, started = ml, true
	n.addr = ml.LocalNode().Address()
	for _, s := range cfg.Seeds {
		if s != n.addr && !slices.Contains(n.seeds, s) {
			n.seeds = append(n.seeds, s)
		}
	}
	n.peersMu.Lock()
	n.setIsolation(time.Now())
	n.peersMu.Unlock()
	go n.deliverUses()
	go n.loop()
	go n.awaitReady()
	n.log.Info("station: node started", "gate", cfg.GateID, "group", cfg.Group, "addr", n.addr, "gates", len(cfg.Gates), "seeds", len(n.seeds))
	return n, nil
}

// Addr is the address peers reach this gate at.
func (n *Node) Addr() string { return n.addr }

// Ready is closed once the gate has pulled its peers' state, or has given
// up waiting (Synced then says which).
func (n *Node) Ready() <-chan struct{} { return n.ready }

// Synced reports whether a push/pull with a peer has completed since
// Start.
func (n *Node) Synced() bool { return n.synced.Load() }

// Isolated reports whether the gate has other gates in its group but
// reaches none of them.
func (n *Node) Isolated() bool { return n.isolated.Load() }

// Hold tells the peers that this gate granted id in direction dir at at,
// and holds it until until (the pass timeout) unless it lapses or its
// passenger passes first. It returns at once.
func (n *Node) Hold(id verify.CertID, dir verify.Direction, at, until time.Time) {
	n.enqueue(op{kind: kindHold, id: id, dir: dir, t: at.UnixNano(), until: until.UnixNano()})
}

// Release tells the peers that this gate's latest grant of id lapsed
// unused at at: the passenger may use another gate.
func (n *Node) Release(id verify.CertID, dir verify.Direction, at time.Time) {
	n.enqueue(op{kind: kindRelease, id: id, dir: dir, t: at.UnixNano()})
}

// Passed tells the peers that the passenger of this gate's latest grant of
// id walked through at at.
func (n *Node) Passed(id verify.CertID, dir verify.Direction, at time.Time) {
	n.enqueue(op{kind: kindPassed, id: id, dir: dir, t: at.UnixNano()})
}

func (n *Node) enqueue(o op) {
	select {
	case n.ops <- o:
	default:
		n.drops.count(dropQueueFull)
	}
}

// Seen reports what the group's other gates know of id in direction dir
// now: a grant that stands, or the latest passage within the window.
func (n *Node) Seen(id verify.CertID, dir verify.Direction) (Sighting, bool) {
	now := n.cfg.Now().UnixNano()
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.st.seen(id, dir, now)
}

// Close leaves the group (telling the peers, for up to a second) and
// stops the node. Reports queued before Close are sent first.
func (n *Node) Close() error {
	var err error
	n.closing.Do(func() {
		close(n.stop)
		<-n.done
		if lerr := n.ml.Leave(time.Second); lerr != nil {
			n.log.Debug("station: leave", "err", lerr)
		}
		err = n.ml.Shutdown()
		close(n.usesStop)
		<-n.usesDone
		n.readyOnce.Do(func() { close(n.ready) })
		// memberlist's timers and schedulers may still run a moment
		// after its Shutdown (it does not wait for them), and log: not
		// into a caller's logger that Close has handed back.
		n.mlRepeats.Close() // the counts still pending, first
		n.logs.close()
	})
	if err != nil {
		return fmt.Errorf("station: close: %w", err)
	}
	return nil
}

// awaitReady closes ready at the first push/pull, or after JoinTimeout.
func (n *Node) awaitReady() {
	t := time.NewTimer(n.cfg.JoinTimeout)
	defer t.Stop()
	if len(n.seeds) == 0 {
		n.readyOnce.Do(func() { close(n.ready) })
		return
	}
	select {
	case <-n.joined:
		n.log.Info("station: synced with the group", "peers", n.members.Load()-1)
	case <-t.C:
		n.log.Warn("station: no peer gate answered: running without them until one does; this gate refuses only what it saw itself", "waited", n.cfg.JoinTimeout, "seeds", len(n.seeds))
	case <-n.stop:
	}
	n.readyOnce.Do(func() { close(n.ready) })
}

// loop sends this gate's reports, joins missing peers, prunes the state
// and keeps the isolation figures.
func (n *Node) loop() {
	defer close(n.done)
	tick := time.NewTicker(n.cfg.Reconnect)
	defer tick.Stop()
	inflight := map[string]bool{}
	lastTry := map[string]time.Time{}
	// Room for every join that can be in flight, so that none blocks
	// after the loop has ended.
	joinDone := make(chan string, len(n.seeds)+2*MaxGates)
	lastPrune := time.Now()
	join := func(addr string, force bool) {
		if inflight[addr] || (!force && time.Since(lastTry[addr]) < n.cfg.Reconnect) {
			return
		}
		inflight[addr], lastTry[addr] = true, time.Now()
		go func() {
			n.join(addr)
			joinDone <- addr
		}()
	}
	for _, s := range n.seeds {
		join(s, true)
	}
	logged := map[string]uint64{}
	for {
		select {
		case o := <-n.ops:
			n.apply(o)
		case addr := <-n.exchange:
			join(addr, false)
		case addr := <-joinDone:
			delete(inflight, addr)
		case <-tick.C:
			if time.Since(lastPrune) >= pruneEvery {
				now := n.cfg.Now().UnixNano()
				n.mu.Lock()
				n.st.prune(now)
				n.mu.Unlock()
				lastPrune = time.Now()
			}
			for _, addr := range n.missing() {
				join(addr, false)
			}
			n.peersMu.Lock()
			n.setIsolation(time.Now())
			n.peersMu.Unlock()
			n.logForeign(logged)
		case <-n.stop:
			for {
				select {
				case o := <-n.ops:
					n.apply(o)
				default:
					return
				}
			}
		}
	}
}

// join pushes and pulls state with the peer at addr (memberlist's Join).
func (n *Node) join(addr string) {
	if _, err := n.ml.Join([]string{addr}); err != nil {
		n.log.Debug("station: join failed", "addr", addr, "err", err)
		return
	}
	n.synced.Store(true)
	n.syncedAt.Store(time.Now().UnixNano())
	n.joinOnce.Do(func() { close(n.joined) })
}

// missing returns the addresses of seeds and known peers that are not
// live members now.
func (n *Node) missing() []string {
	alive := map[string]bool{}
	var gone []string
	n.peersMu.Lock()
	for _, p := range n.peers {
		switch {
		case p.live():
			alive[p.addr] = true
		case p.addr != "":
			gone = append(gone, p.addr)
		}
	}
	n.peersMu.Unlock()
	var out []string
	for _, a := range append(slices.Clone(n.seeds), gone...) {
		if !alive[a] && !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// live reports whether the peer is a member now (alive, or suspect and
// not yet declared dead: memberlist sends no event for suspicion).
func (p *peerInfo) live() bool {
	return p.known && (p.state == memberlist.StateAlive || p.state == memberlist.StateSuspect)
}

// livePeers appends copies of the live peers' nodes to buf.
func (n *Node) livePeers(buf []memberlist.Node) []memberlist.Node {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for _, p := range n.peers {
		if p.live() {
			buf = append(buf, p.node)
		}
	}
	return buf
}

// apply records one of this gate's reports and sends it to every live
// peer, and into gossip.
func (n *Node) apply(o op) {
	var uses []DoubleUse
	n.mu.Lock()
	m, ok, uses := n.st.local(o.kind, o.id, o.dir, o.t, o.until, uses)
	n.mu.Unlock()
	n.report(uses)
	if ok {
		m.sent = n.cfg.Now().UnixNano()
		b := m.encode()
		n.sendTo = n.livePeers(n.sendTo[:0])
		for i := range n.sendTo {
			if err := n.ml.SendBestEffort(&n.sendTo[i], b); err != nil {
				n.log.Debug("station: send failed", "peer", n.sendTo[i].Name, "err", err)
			}
		}
		n.queue.QueueBroadcast(&broadcast{msg: b})
		n.sent[m.kind].Add(1)
	}
}

// receive merges a peer's message.
func (n *Node) receive(b []byte) {
	m, err := decodeMessage(b)
	if err != nil {
		n.drops.count(dropMalformed)
		return
	}
	now := n.cfg.Now().UnixNano()
	var uses []DoubleUse
	n.mu.Lock()
	changed, drop, uses := n.st.merge(fromMessage(&m), now, uses)
	onChange := n.onChange
	n.mu.Unlock()
	if drop != dropNone {
		n.drops.count(drop)
		return
	}
	n.received[m.kind].Add(1)
	if changed {
		// The first copy to arrive: the direct datagram, or gossip when
		// that was lost. (A sent time off by more than the skew is a
		// clock problem, not a delay.)
		if d := now - m.sent; m.sent > 0 && d >= -int64(n.cfg.Skew) && d <= int64(n.cfg.Skew) {
			n.lat.observe(time.Duration(max(0, d)))
		}
		n.heard(m.gate)
		if onChange != nil {
			onChange(m.cert)
		}
	}
	n.report(uses)
}

// mergeState merges a peer's whole state (a push/pull).
func (n *Node) mergeState(b []byte) {
	grants, err := decodeState(b)
	if err != nil {
		n.drops.count(dropMalformed)
		return
	}
	now := n.cfg.Now().UnixNano()
	var uses []DoubleUse
	var drops [numDrops]uint64
	var changed []verify.CertID
	n.mu.Lock()
	onChange := n.onChange
	for _, g := range grants {
		var r dropReason
		var c bool
		c, r, uses = n.st.merge(g, now, uses)
		drops[r]++
		if c && onChange != nil {
			changed = append(changed, g.cert)
		}
	}
	n.mu.Unlock()
	for _, id := range changed {
		onChange(id)
	}
	for r, c := range drops {
		if r != int(dropNone) && c > 0 {
			n.drops.mu.Lock()
			n.drops.counts[r] += c
			n.drops.mu.Unlock()
		}
	}
	n.report(uses)
}

// report hands double uses to the delivering goroutine.
func (n *Node) report(uses []DoubleUse) {
	for _, u := range uses {
		n.doubleUses.Add(1)
		n.log.Warn("station: double use: a certificate granted here was granted at another gate while one grant stood",
			"cert", u.Cert, "direction", u.Dir.String(), "here", u.Here, "gate", u.Gate, "there", u.There)
		select {
		case n.uses <- u:
		case <-n.usesStop:
		default:
			n.log.Error("station: double use not recorded: too many at once", "cert", u.Cert, "gate", u.Gate)
		}
	}
}

// deliverUses calls OnDoubleUse for each double use, until Close; those
// found before memberlist stopped are delivered first.
func (n *Node) deliverUses() {
	defer close(n.usesDone)
	deliver := func(u DoubleUse) {
		if n.cfg.OnDoubleUse != nil {
			n.cfg.OnDoubleUse(u)
		}
	}
	for {
		select {
		case u := <-n.uses:
			deliver(u)
		case <-n.usesStop:
			for {
				select {
				case u := <-n.uses:
					deliver(u)
				default:
					return
				}
			}
		}
	}
}

// heard notes a sign of life from gate.
func (n *Node) heard(gate string) {
	now := time.Now()
	n.contact.Store(now.UnixNano())
	n.peersMu.Lock()
	if p := n.peers[gate]; p != nil {
		p.lastHeard = now
	}
	n.peersMu.Unlock()
}

// isolateAfter is how long without a word from any peer (any datagram or
// stream sealed with the station key: a probe of this gate, an answer to
// one, a report, gossip, a state exchange) makes a gate isolated, in probe
// intervals. memberlist takes much longer to declare every peer of an
// isolated node dead: a node whose probes fail slows its own probing (up
// to 8 intervals) and waits longest before it suspects, so as not to
// declare healthy peers dead for its own trouble. The peers probe this
// gate too, about once an interval between them, whatever its own pace.
const isolateAfter = 10

// setIsolation updates the isolation flag and figures from the peers'
// states and the last word heard from any; peersMu is held. (It calls
// nothing of memberlist's: the event delegates that call it run under
// memberlist's node lock.)
func (n *Node) setIsolation(now time.Time) {
	expected := len(n.cfg.Gates) - 1
	alive := 0
	for _, p := range n.peers {
		if p.live() {
			alive++
		}
	}
	n.members.Store(int64(alive + 1))
	silent := now.Sub(time.Unix(0, n.contact.Load())) > isolateAfter*n.cfg.Probe
	iso := expected > 0 && (alive == 0 || silent)
	was := n.isolated.Load()
	switch {
	case iso && !was:
		n.isolatedSince = now
		n.isolated.Store(true)
		if n.synced.Load() {
			n.log.Warn("station: isolated: no peer gate reachable; this gate goes on alone and refuses only what it saw itself", "expected", expected)
		}
	case !iso && was:
		n.isolatedTotal += now.Sub(n.isolatedSince)
		n.isolated.Store(false)
		n.log.Info("station: peer gates reachable", "alive", alive, "expected", expected)
		// What either side did meanwhile was lost on the way: exchange
		// the whole state with every peer now, not at the next random
		// push/pull. (Peers declared gone meanwhile come back through
		// NotifyJoin, which does the same.)
		for _, p := range n.peers {
			if p.live() {
				select {
				case n.exchange <- p.addr:
				default:
				}
			}
		}
	}
}

// logForeign logs, at most once per tick and source, hosts whose traffic
// was dropped as unauthenticated.
func (n *Node) logForeign(logged map[string]uint64) {
	_, sources := n.drops.read()
	for _, s := range sources {
		if s.Packets > logged[s.Addr] {
			n.log.Warn("station: dropped traffic not sealed with the station key for this group: a gate with another key or group, or a host that is not a gate", "from", s.Addr, "count", s.Packets-logged[s.Addr])
			logged[s.Addr] = s.Packets
		}
	}
}
