package gate_test

import (
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"gateagent/event"
	"gateagent/gate"
	"gateagent/hw/hwtest"
	"gateagent/verify"
)

// fakePeers records what the controller tells the station's other gates,
// with the relay's level at each call.
type fakePeers struct {
	relay    *hwtest.Pin
	isolated atomic.Bool
	mu       sync.Mutex
	calls    []peerCall
}

type peerCall struct {
	kind      string
	id        verify.CertID
	dir       verify.Direction
	at, until time.Time
	relay     gpio.Level
}

func (p *fakePeers) add(c peerCall) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c.relay = p.relay.Level()
	p.calls = append(p.calls, c)
}

func (p *fakePeers) Hold(id verify.CertID, dir verify.Direction, at, until time.Time) {
	p.add(peerCall{kind: "hold", id: id, dir: dir, at: at, until: until})
}
func (p *fakePeers) Release(id verify.CertID, dir verify.Direction, at time.Time) {
	p.add(peerCall{kind: "release", id: id, dir: dir, at: at})
}
func (p *fakePeers) Passed(id verify.CertID, dir verify.Direction, at time.Time) {
	p.add(peerCall{kind: "passed", id: id, dir: dir, at: at})
}
func (p *fakePeers) Isolated() bool { return p.isolated.Load() }

func (p *fakePeers) kinds() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var k []string
	for _, c := range p.calls {
		k = append(k, c.kind)
	}
	return strings.Join(k, ",")
}

func newPeerRig(t *testing.T, timing gate.Timing) (*rig, *fakePeers) {
	t.Helper()
	peers := &fakePeers{}
	r := newRigFull(t, timing, nil, nil, nil, func(c *gate.Config) { c.Peers = peers })
	peers.relay = r.pins.Pins[hwtest.Relay]
	return r, peers
}

// TestPeersHearOfGrantLapseAndPassage: a grant is told after the relay is
// set, with its time and the pass timeout; a lapse releases it; a passage
// is told with its time.
func TestPeersHearOfGrantLapseAndPassage(t *testing.T) {
	timing := gate.Timing{PassTimeout: 5 * time.Second}
	r, peers := newPeerRig(t, timing)
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.ctrl.Ping(time.Second)
	if k := peers.kinds(); k != "hold" {
		t.Fatalf("peers told %q, want hold", k)
	}
	h := peers.calls[0]
	if h.id != r.certs[0].ID || h.dir != verify.Entry || !h.at.Equal(now0) || !h.until.Equal(now0.Add(5*time.Second)) {
		t.Fatalf("hold %+v", h)
	}
	if h.relay != unlocked {
		t.Fatal("peers told of the grant before the relay was set")
	}
	r.clock.Advance(5 * time.Second)
	r.want(gate.Lapsed)
	if k := peers.kinds(); k != "hold,release" || peers.calls[1].id != r.certs[0].ID || !peers.calls[1].at.Equal(now0.Add(5*time.Second)) {
		t.Fatalf("peers told %q (%+v), want hold,release at the lapse", k, peers.calls)
	}
	r.scan(r.token(1, verify.StepOf(r.clock.Now())))
	r.want(gate.Granted)
	r.clock.Advance(time.Second)
	r.input(hwtest.Passage, true)
	r.want(gate.Passed)
	r.ctrl.Ping(time.Second)
	if k := peers.kinds(); k != "hold,release,hold,passed" {
		t.Fatalf("peers told %q", k)
	}
	if p := peers.calls[3]; p.id != r.certs[1].ID || !p.at.Equal(now0.Add(6*time.Second)) {
		t.Fatalf("passed %+v", p)
	}
	// Denials tell the peers nothing.
	r.input(hwtest.Passage, false)
	r.want(gate.Closed)
	r.scan(r.token(1, verify.StepOf(r.clock.Now())))
	r.want(gate.Denied)
	r.ctrl.Ping(time.Second)
	if k := peers.kinds(); k != "hold,release,hold,passed" {
		t.Fatalf("a denial was told to the peers: %q", k)
	}
}

// TestEmergencyAndShutdownReleaseTheHold: a grant cut short by the
// emergency input, or by the agent stopping, is released at once.
func TestEmergencyAndShutdownReleaseTheHold(t *testing.T) {
	r, peers := newPeerRig(t, gate.Timing{})
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.input(hwtest.Emergency, true)
	r.want(gate.EmergencyOn)
	if k := peers.kinds(); k != "hold,release" {
		t.Fatalf("emergency during a grant: peers told %q", k)
	}
	r.input(hwtest.Emergency, false)
	r.want(gate.EmergencyOff)

	r2, peers2 := newPeerRig(t, gate.Timing{})
	r2.scan(r2.token(0, verify.StepOf(now0)))
	r2.want(gate.Granted)
	r2.stop()
	if k := peers2.kinds(); k != "hold,release" {
		t.Fatalf("shutdown during a grant: peers told %q", k)
	}
}

// seenVerifier refuses every code as a passage seen at another gate.
type seenVerifier struct {
	gate.Verifier
	held bool
}

func (v seenVerifier) Verify(tok []byte) (verify.Decision, error) {
	d, err := v.Verifier.Verify(tok)
	d.Reason, d.SeenAt, d.Held = verify.Passback, "GZN-E01", v.held
	return d, err
}

// TestRefusalNamesTheGate: a refusal for a passage or a hold at another
// gate records which gate.
func TestRefusalNamesTheGate(t *testing.T) {
	for _, held := range []bool{false, true} {
		r := newRigFull(t, gate.Timing{}, nil, nil, func(v gate.Verifier) gate.Verifier { return seenVerifier{v, held} })
		r.scan(r.token(0, verify.StepOf(now0)))
		o := r.want(gate.Denied)
		if o.Decision.SeenAt != "GZN-E01" {
			t.Fatalf("outcome %+v", o.Decision)
		}
		ev := r.events()
		want := "seen at gate GZN-E01"
		if held {
			want = "held at gate GZN-E01: its passenger has a grant there"
		}
		if len(ev) != 1 || ev[0].Reason != verify.Passback || ev[0].Detail != want {
			t.Fatalf("events %+v, want one PASSBACK %q", ev, want)
		}
	}
}

// TestIsolatedEventsSayIt: while the gate reaches none of its peers, every
// event it records says so, a long detail included.
func TestIsolatedEventsSayIt(t *testing.T) {
	r, peers := newPeerRig(t, gate.Timing{})
	peers.isolated.Store(true)
	r.scan(r.token(0, verify.StepOf(now0)))
	r.want(gate.Granted)
	r.walkThrough()
	r.scan([]byte(strings.Repeat("x", 400)))
	r.want(gate.Denied)
	peers.isolated.Store(false)
	r.clock.Advance(2 * time.Second)
	r.scan(r.token(0, verify.StepOf(r.clock.Now())))
	r.want(gate.Denied)
	ev := r.events()
	if len(ev) != 4 {
		t.Fatalf("%d events: %+v", len(ev), ev)
	}
	for i, e := range ev[:3] {
		if !strings.HasSuffix(e.Detail, gate.IsolatedNote) || len(e.Detail) > event.MaxDetail {
			t.Errorf("event %d (%v) recorded while isolated: detail %q", i, e.Kind, e.Detail)
		}
	}
	if len(ev[2].Detail) <= len(gate.IsolatedNote)+2 {
		t.Errorf("the malformed scan's own detail was lost: %q", ev[2].Detail)
	}
	if strings.Contains(ev[3].Detail, gate.IsolatedNote) {
		t.Errorf("event recorded with peers back says isolated: %q", ev[3].Detail)
	}
}
