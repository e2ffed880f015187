package station

import (
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Status is what the node knows of its group, for diag, /status and the
// metrics. It names gates and addresses, never a certificate.
type Status struct {
	Gate  string `json:"gate"`
	Group string `json:"group"`
	Addr  string `json:"addr"`
	// Synced: a push/pull with a peer has completed since the node
	// started (at SyncedAt); until then the gate knows only what peers
	// sent it since.
	Synced   bool      `json:"synced"`
	SyncedAt time.Time `json:"synced_at,omitzero"`
	// Isolated: the group has other gates and none is reachable: none is
	// a member, or none has been heard from (LastContact) for ten probe
	// intervals.
	Isolated    bool      `json:"isolated"`
	LastContact time.Time `json:"last_contact,omitzero"`
	// IsolatedSeconds is the time spent isolated since the node started.
	IsolatedSeconds float64 `json:"isolated_seconds"`
	// Expected is the number of other gates in the group, Alive those
	// reachable now.
	Expected int    `json:"expected"`
	Alive    int    `json:"alive"`
	Peers    []Peer `json:"peers"`
	// Entries is the number of grants in the peer-aware state.
	Entries int `json:"entries"`
	// Sent counts this gate's reports by kind (hold, release, passed),
	// each sent to every live peer; Received the peers' reports taken
	// (duplicates from gossip included).
	Sent     map[string]uint64 `json:"sent"`
	Received map[string]uint64 `json:"received"`
	// Dropped counts what was not taken, by reason: unauthenticated
	// (not sealed with a station key for this group), malformed,
	// unknown_gate (a name not in the group's list), future, expired,
	// full, queue_full, busy.
	Dropped map[string]uint64 `json:"dropped"`
	// Unauthenticated lists the hosts whose traffic was dropped as
	// unauthenticated, newest first; Gate or Seed set: a station gate
	// whose key or group differs from this one's.
	Unauthenticated []Source `json:"unauthenticated,omitempty"`
	// Conflicts lists the gate IDs that two or more hosts claim (a
	// copied config), newest first.
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// DoubleUses counts the double uses this gate was part of.
	DoubleUses uint64 `json:"double_uses"`
	// Propagation is the delay from a peer sending its report of a grant,
	// lapse or passage (once that is on its disk) to the report reaching
	// this gate, on the gates' corrected clocks: the station LAN's share of
	// the time a companion has to use the same code at another gate.
	Propagation Latency `json:"propagation"`
}

// Conflict is a gate ID that more than one host claims.
type Conflict struct {
	Gate  string    `json:"gate"`
	Addrs []string  `json:"addrs"` // the addresses seen claiming it
	Count uint64    `json:"count"` // alive messages refused for it
	Last  time.Time `json:"last"`
}

// Peer is one of the group's other gates as this gate sees it.
type Peer struct {
	Gate string `json:"gate"`
	Addr string `json:"addr,omitempty"`
	// State is alive (a member: answering, or not answering but not yet
	// declared dead), gone (declared dead, or stopped) or unknown (never
	// seen since this gate started).
	State string    `json:"state"`
	Since time.Time `json:"since,omitzero"`
	// LastHeard is its last answer to a probe or report; RTT the probe's
	// round trip.
	LastHeard time.Time     `json:"last_heard,omitzero"`
	RTT       time.Duration `json:"rtt,omitempty"`
}

// Alive reports whether the peer is reachable.
func (p *Peer) Alive() bool { return p.State == "alive" }

// Latency is a delay's histogram and recent percentiles.
type Latency struct {
	Count uint64 `json:"count"`
	// Sum is the total of the delays, in seconds.
	Sum float64 `json:"sum_seconds"`
	// Buckets are cumulative: Count of delays at most UpperBound seconds.
	Buckets []Bucket `json:"buckets"`
	// P50, P99 and Max are of the most recent delays (up to 1024).
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
}

// Bucket is one cumulative histogram bucket.
type Bucket struct {
	UpperBound float64 `json:"le"`
	Count      uint64  `json:"count"`
}

// LatencyBuckets are the propagation histogram's upper bounds, in seconds.
var LatencyBuckets = []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5}

const ringLen = 1024

// latency keeps the propagation histogram and the recent delays.
type latency struct {
	mu     sync.Mutex
	counts [14]uint64 // per bucket of LatencyBuckets, then above the last
	count  uint64
	sum    time.Duration
	ring   [ringLen]time.Duration
	next   int
	full   bool
}

func (l *latency) observe(d time.Duration) {
	i := sort.SearchFloat64s(LatencyBuckets, d.Seconds())
	l.mu.Lock()
	l.counts[i]++
	l.count++
	l.sum += d
	l.ring[l.next] = d
	l.next = (l.next + 1) % ringLen
	l.full = l.full || l.next == 0
	l.mu.Unlock()
}

func (l *latency) read() Latency {
	l.mu.Lock()
	out := Latency{Count: l.count, Sum: l.sum.Seconds()}
	var cum uint64
	for i, ub := range LatencyBuckets {
		cum += l.counts[i]
		out.Buckets = append(out.Buckets, Bucket{UpperBound: ub, Count: cum})
	}
	n := l.next
	if l.full {
		n = ringLen
	}
	recent := slices.Clone(l.ring[:n])
	l.mu.Unlock()
	if len(recent) > 0 {
		slices.Sort(recent)
		out.P50 = recent[len(recent)/2]
		out.P99 = recent[min(len(recent)-1, len(recent)*99/100)]
		out.Max = recent[len(recent)-1]
	}
	return out
}

var stateNames = map[memberlist.NodeStateType]string{
	memberlist.StateAlive: "alive", memberlist.StateSuspect: "alive",
	memberlist.StateDead: "gone", memberlist.StateLeft: "gone",
}

// Status returns what the node knows of its group now.
func (n *Node) Status() Status {
	s := Status{Gate: n.cfg.GateID, Group: n.cfg.Group, Addr: n.addr, Synced: n.synced.Load(),
		Isolated: n.isolated.Load(), Expected: len(n.cfg.Gates) - 1, DoubleUses: n.doubleUses.Load(),
		Sent: map[string]uint64{}, Received: map[string]uint64{}, Dropped: map[string]uint64{},
		Propagation: n.lat.read()}
	if at := n.syncedAt.Load(); at != 0 {
		s.SyncedAt = time.Unix(0, at)
	}
	if at := n.contact.Load(); at != 0 {
		s.LastContact = time.Unix(0, at)
	}
	for k := kindHold; k <= maxKind; k++ {
		s.Sent[k.String()], s.Received[k.String()] = n.sent[k].Load(), n.received[k].Load()
	}
	counts, sources := n.drops.read()
	for r := dropUnauthenticated; r < numDrops; r++ {
		s.Dropped[r.String()] = counts[r]
	}
	n.mu.RLock()
	s.Entries = n.st.n
	n.mu.RUnlock()

	now := time.Now()
	n.peersMu.Lock()
	byAddr := map[string]string{}
	for _, g := range n.cfg.Gates {
		if g == n.cfg.GateID {
			continue
		}
		p := n.peers[g]
		peer := Peer{Gate: g, Addr: p.addr, State: "unknown", Since: p.since, LastHeard: p.lastHeard, RTT: p.rtt}
		if p.known {
			peer.State = stateNames[p.state]
		}
		if peer.Alive() {
			s.Alive++
		}
		if peer.Addr != "" {
			byAddr[hostOf(peer.Addr)] = g
		}
		s.Peers = append(s.Peers, peer)
	}
	s.IsolatedSeconds = n.isolatedTotal.Seconds()
	if s.Isolated {
		s.IsolatedSeconds += now.Sub(n.isolatedSince).Seconds()
	}
	for _, c := range n.conflicts {
		cc := *c
		cc.Addrs = slices.Clone(c.Addrs)
		s.Conflicts = append(s.Conflicts, cc)
	}
	n.peersMu.Unlock()

	seeds := map[string]bool{}
	for _, a := range n.seeds {
		seeds[hostOf(a)] = true
	}
	slices.SortFunc(s.Conflicts, func(a, b Conflict) int { return b.Last.Compare(a.Last) })
	for _, src := range sources {
		src.Gate, src.Seed = byAddr[src.Addr], seeds[src.Addr]
		s.Unauthenticated = append(s.Unauthenticated, src)
	}
	slices.SortFunc(s.Unauthenticated, func(a, b Source) int { return b.Last.Compare(a.Last) })
	return s
}

func hostOf(addr string) string {
	if ap, err := parseHostPort(addr, true); err == nil {
		return ap.Addr().String()
	}
	return addr
}
