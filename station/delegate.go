package station

import (
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/memberlist"
)

// broadcast is one message in memberlist's gossip queue.
type broadcast struct{ msg []byte }

func (b *broadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b *broadcast) Message() []byte                       { return b.msg }
func (b *broadcast) Finished()                             {}

// delegate is the node as memberlist's delegates see it.
type delegate struct{ n *Node }

func (d *delegate) NodeMeta(limit int) []byte { return nil }

// NotifyMsg takes a peer's message: memberlist has checked its seal.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) > MaxMessage {
		d.n.drops.count(dropMalformed)
		return
	}
	d.n.receive(b)
}

func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte {
	return d.n.queue.GetBroadcasts(overhead, limit)
}

func (d *delegate) LocalState(join bool) []byte {
	d.n.mu.RLock()
	gates, grants := d.n.st.snapshot()
	d.n.mu.RUnlock()
	return encodeState(gates, grants)
}

func (d *delegate) MergeRemoteState(b []byte, join bool) {
	d.n.contact.Store(time.Now().UnixNano())
	d.n.mergeState(b)
}

// NotifyAlive refuses a peer whose name is not one of the group's gates.
func (d *delegate) NotifyAlive(peer *memberlist.Node) error {
	n := d.n
	if n.gates[peer.Name] {
		return nil
	}
	n.drops.count(dropUnknownGate)
	n.peersMu.Lock()
	last, ok := n.refusedAt[peer.Name]
	if !ok || time.Since(last) > time.Minute {
		if len(n.refusedAt) > maxSources {
			clear(n.refusedAt)
		}
		n.refusedAt[peer.Name] = time.Now()
		n.log.Warn("station: refused a peer that claims a gate ID not in station.gates", "name", peer.Name, "addr", peer.Address())
	}
	n.peersMu.Unlock()
	return fmt.Errorf("gate %q is not one of this group's gates", peer.Name)
}

// NotifyConflict hears from memberlist that a host at other claims the
// name (gate ID) of existing, alive at another address: two gates share a
// gate.id (a copied config), or a board was replaced while the old one
// still runs. memberlist keeps the first and refuses the other, so one of
// the two gates' reports is not heard here. It is logged (once a minute
// for each pair) and kept for Status, so diag names the ID and both
// addresses.
func (d *delegate) NotifyConflict(existing, other *memberlist.Node) {
	n := d.n
	a, b := existing.Address(), other.Address()
	now := time.Now()
	n.peersMu.Lock()
	c := n.conflicts[existing.Name]
	if c == nil {
		if len(n.conflicts) >= maxSources {
			n.peersMu.Unlock()
			return
		}
		c = &Conflict{Gate: existing.Name}
		n.conflicts[existing.Name] = c
	}
	fresh := false
	for _, addr := range []string{a, b} {
		if !slices.Contains(c.Addrs, addr) && len(c.Addrs) < maxConflictAddrs {
			c.Addrs = append(c.Addrs, addr)
			fresh = true
		}
	}
	c.Count++
	log := fresh || now.Sub(c.Last) > time.Minute
	c.Last = now
	n.peersMu.Unlock()
	if !log {
		return
	}
	whose := "a peer's"
	if existing.Name == n.cfg.GateID {
		whose = "this gate's own"
	}
	n.log.Error("station: two hosts claim gate ID "+existing.Name+" ("+whose+" ID): give each gate its own gate.id; until then one of them is not heard, and a certificate used there is not refused here",
		"gate", existing.Name, "known_at", a, "also_at", b)
}

// maxConflictAddrs bounds the addresses kept for one conflicting gate ID.
const maxConflictAddrs = 8

func (d *delegate) NotifyJoin(node *memberlist.Node) {
	n := d.n
	if node.Name == n.cfg.GateID {
		return
	}
	n.peersMu.Lock()
	p := n.peers[node.Name]
	if p != nil {
		p.node = copyNode(node)
		p.addr, p.state, p.known, p.since = node.Address(), memberlist.StateAlive, true, time.Now()
		p.lastHeard = p.since
		n.contact.Store(p.since.UnixNano())
	}
	n.setIsolation(time.Now())
	n.peersMu.Unlock()
	n.log.Info("station: peer gate joined", "peer", node.Name, "addr", node.Address())
	// A peer back from a partition or a restart: exchange the whole
	// state with it, so that what either side did meanwhile is known on
	// both within one round trip, not at the next random push/pull.
	select {
	case n.exchange <- node.Address():
	default:
	}
}

// NotifyLeave: the peer is declared dead, or said it leaves. (The node's
// State field is not memberlist's current state, so the two are not told
// apart.)
func (d *delegate) NotifyLeave(node *memberlist.Node) {
	n := d.n
	if node.Name == n.cfg.GateID {
		return
	}
	n.peersMu.Lock()
	if p := n.peers[node.Name]; p != nil {
		p.state, p.since = memberlist.StateDead, time.Now()
	}
	n.setIsolation(time.Now())
	n.peersMu.Unlock()
	n.log.Warn("station: peer gate gone: unreachable or stopped", "peer", node.Name, "addr", node.Address())
}

func (d *delegate) NotifyUpdate(node *memberlist.Node) {
	n := d.n
	n.peersMu.Lock()
	if p := n.peers[node.Name]; p != nil {
		p.node, p.addr = copyNode(node), node.Address()
	}
	n.peersMu.Unlock()
}

// copyNode copies what sending to a node needs.
func copyNode(node *memberlist.Node) memberlist.Node {
	return memberlist.Node{Name: node.Name, Addr: slices.Clone(node.Addr), Port: node.Port}
}

func (d *delegate) AckPayload() []byte { return nil }

func (d *delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	n := d.n
	now := time.Now()
	n.contact.Store(now.UnixNano())
	n.peersMu.Lock()
	if p := n.peers[other.Name]; p != nil {
		p.lastHeard, p.rtt = now, rtt
	}
	n.peersMu.Unlock()
}
