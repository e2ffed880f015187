package agent_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gateagent/config"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/internal/eventually"
	stn "gateagent/station"
	"gateagent/station/stationtest"
	"gateagent/verify"
)

// TestPeersInTheAgent: the whole agent with one station peer beside it (a
// station.Node, as the other gate runs it): the peer's hold refuses the
// certificate here and its lapse frees it; this gate's passage reaches the
// peer; a grant the peer made while this gate's stood is recorded as a
// double_use event; diag peers shows the group; and with the peer gone,
// the gate is isolated, diag warns and its events say so.
func TestPeersInTheAgent(t *testing.T) {
	key := stationtest.Key(t)
	gates := []string{"E2E-01", "E2E-02"}
	gateAddr := stationtest.FreeAddr(t, "127.0.0.70")
	peer, err := stn.Start(stn.Config{GateID: "E2E-02", Group: "TWO", Gates: gates, Bind: "127.0.0.71:0",
		Seeds: []string{gateAddr}, Keys: [][]byte{key}, Window: 30 * time.Minute, Probe: 100 * time.Millisecond, JoinTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	st, sock := diagStation(t, func(c *config.Config) {
		c.Station = config.Station{Group: "TWO", Gates: gates, Bind: gateAddr, Seeds: []string{peer.Addr()},
			KeyFiles: []string{stationtest.KeyFile(t, key)}, JoinTimeout: 5 * time.Second, PushPull: 15 * time.Second,
			Probe: 100 * time.Millisecond, Reconnect: 100 * time.Millisecond}
	})
	if !st.ag.Station().Synced() {
		t.Fatal("the agent took scans before it synced with its live peer")
	}

	// The peer holds a certificate: refused here, naming it.
	c := st.issue()
	now := st.ag.Feed().Now()
	peer.Hold(c.ID, verify.Entry, now, now.Add(8*time.Second))
	eventually.True(t, 10*time.Second, "the peer's hold", func() bool { _, ok := st.ag.Station().Seen(c.ID, verify.Entry); return ok })
	st.write(st.token(c.ID, time.Now()) + "\r")
	o := st.want(gate.Denied)
	if o.Decision.Reason != verify.Passback || o.Decision.SeenAt != "E2E-02" || !o.Decision.Held {
		t.Fatalf("decision %+v, want PASSBACK held at E2E-02", o.Decision)
	}
	if got := levels(st.relayOuts()); got != "L" {
		t.Fatalf("relay driven %s on a refusal", got)
	}
	// Its passenger stepped back: the grant lapsed there, and here the
	// same code now opens the gate; the passage reaches the peer.
	peer.Release(c.ID, verify.Entry, st.ag.Feed().Now())
	eventually.True(t, 10*time.Second, "the peer's lapse", func() bool { _, ok := st.ag.Station().Seen(c.ID, verify.Entry); return !ok })
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	st.walkThrough()
	eventually.True(t, 10*time.Second, "this gate's passage at the peer", func() bool { s, ok := peer.Seen(c.ID, verify.Entry); return ok && s.Gate == "E2E-01" && !s.Held })

	// The peer granted the same certificate 50 ms after this gate did
	// (its report of this gate's grant not there yet): a double use.
	c2 := st.issue()
	st.write(st.token(c2.ID, time.Now()) + "\r")
	g := st.want(gate.Granted)
	there := g.Decision.At.Add(50 * time.Millisecond)
	peer.Hold(c2.ID, verify.Entry, there, there.Add(8*time.Second))
	st.walkThrough()
	eventually.True(t, 10*time.Second, "the double_use event", func() bool {
		for _, e := range st.events() {
			if e.Kind == event.DoubleUse && e.CertID == c2.ID && strings.Contains(e.Detail, "also granted at gate E2E-02 50ms after") {
				return true
			}
		}
		return false
	})

	// diag peers, as a technician asks the running agent.
	code, out, errs := runDiag(t, sock, "peers")
	if code != 0 || !strings.Contains(out, "PASS  group TWO: 1 of 1 peers alive") || !strings.Contains(out, "E2E-02") || !strings.Contains(out, "double uses found since the agent started: 1") {
		t.Fatalf("diag peers: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runDiag(t, sock, "--json")
	var r diag.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if ch, ok := r.Find(diag.NamePeers); !ok || ch.Status != diag.Pass || code != 0 {
		t.Fatalf("diag's peers check %+v (exit %d)", ch, code)
	}

	// The peer goes: isolated, diag warns, events say so.
	peer.Close()
	eventually.True(t, 10*time.Second, "isolated with the peer gone", st.ag.Station().Isolated)
	code, out, _ = runDiag(t, sock, "peers")
	if code != 1 || !strings.Contains(out, "WARN  isolated: none of the 1 other gates answers") {
		t.Fatalf("diag peers with the peer gone: exit %d\n%s", code, out)
	}
	c3 := st.issue()
	st.write(st.token(c3.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	var marked bool
	for _, e := range st.events() {
		marked = marked || e.CertID == c3.ID && e.Kind == event.Decision && strings.HasSuffix(e.Detail, gate.IsolatedNote)
	}
	if !marked {
		t.Fatal("a grant recorded while isolated does not say so")
	}
}

// TestPassagesSurviveAStationRestart: every gate of a station restarts at
// once (a power cut), so no peer remembers what another gate saw. The
// agent gives its peers the passages in its journal within the window
// when it starts again: the peer, started afresh, refuses the passenger
// who passed here before the cut.
func TestPassagesSurviveAStationRestart(t *testing.T) {
	key := stationtest.Key(t)
	gates := []string{"E2E-01", "E2E-02"}
	gateAddr := stationtest.FreeAddr(t, "127.0.0.72")
	peerAddr := stationtest.FreeAddr(t, "127.0.0.73")
	st, _ := diagStation(t, func(c *config.Config) {
		c.Station = config.Station{Group: "TWO", Gates: gates, Bind: gateAddr, Seeds: []string{peerAddr},
			KeyFiles: []string{stationtest.KeyFile(t, key)}, JoinTimeout: 200 * time.Millisecond, PushPull: 15 * time.Second,
			Probe: 100 * time.Millisecond, Reconnect: 100 * time.Millisecond}
	})
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	st.walkThrough()

	st.stop() // the power goes; the peer, never up, knows nothing
	peer, err := stn.Start(stn.Config{GateID: "E2E-02", Group: "TWO", Gates: gates, Bind: peerAddr,
		Seeds: []string{gateAddr}, Keys: [][]byte{key}, Window: 30 * time.Minute, Probe: 100 * time.Millisecond, JoinTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	st.start(nil, nil)
	eventually.True(t, 10*time.Second, "the passage from before the restart at the peer", func() bool {
		s, ok := peer.Seen(c.ID, verify.Entry)
		return ok && s.Gate == "E2E-01" && !s.Held
	})
}
