package metrics

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gateagent/issuer/issuertest"
	"gateagent/station"
)

func peerStatus() station.Status {
	return station.Status{Gate: "G-07", Group: "GZN-entry", Addr: "10.20.0.17:7946", Synced: true, Isolated: false,
		IsolatedSeconds: 12.5, Expected: 7, Alive: 6, Entries: 40,
		Sent:       map[string]uint64{"hold": 10, "release": 2, "passed": 8},
		Received:   map[string]uint64{"hold": 60, "release": 9, "passed": 50},
		Dropped:    map[string]uint64{"unauthenticated": 3, "malformed": 0, "unknown_gate": 1},
		DoubleUses: 1,
		Conflicts:  []station.Conflict{{Gate: "G-03", Addrs: []string{"10.20.0.13:7946", "10.20.0.23:7946"}, Count: 5}, {Gate: "G-07", Count: 2}},
		Peers:      []station.Peer{{Gate: "G-01", Addr: "10.20.0.11:7946", State: "alive"}},
		Propagation: station.Latency{Count: 4, Sum: 0.004, P50: time.Millisecond, P99: 2 * time.Millisecond,
			Buckets: []station.Bucket{{UpperBound: .0005, Count: 0}, {UpperBound: .001, Count: 2}, {UpperBound: .002, Count: 4}}},
	}
}

func TestPeerMetrics(t *testing.T) {
	clk := issuertest.NewClock(t0)
	src := fullSources(clk)
	src.Station = peerStatus
	m := New(Info{GateID: "G-07"}, src, Options{Now: clk.Now})
	srv := newServer(t, m)
	got := scrape(t, srv)
	wantSample(t, got, "gateagent_station_peers_alive", 6)
	wantSample(t, got, "gateagent_station_peers_expected", 7)
	wantSample(t, got, "gateagent_station_synced", 1)
	wantSample(t, got, "gateagent_station_isolated", 0)
	wantSample(t, got, "gateagent_station_isolated_seconds_total", 12.5)
	wantSample(t, got, `gateagent_station_reports_sent_total{kind="passed"}`, 8)
	wantSample(t, got, `gateagent_station_reports_received_total{kind="hold"}`, 60)
	wantSample(t, got, `gateagent_station_dropped_total{reason="unauthenticated"}`, 3)
	wantSample(t, got, "gateagent_station_double_uses_total", 1)
	wantSample(t, got, "gateagent_station_gate_id_conflicts_total", 7)
	wantSample(t, got, "gateagent_station_state_entries", 40)
	wantSample(t, got, `gateagent_station_propagation_seconds_bucket{le="0.001"}`, 2)
	wantSample(t, got, `gateagent_station_propagation_seconds_bucket{le="+Inf"}`, 4)
	wantSample(t, got, "gateagent_station_propagation_seconds_count", 4)

	_, body := get(t, srv.URL+"/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Station == nil || st.Station.Alive != 6 || st.Station.Group != "GZN-entry" || st.Station.Peers[0].Gate != "G-01" {
		t.Fatalf("/status station part %+v", st.Station)
	}

	// Without a station group, no station metric and no station part.
	src.Station = nil
	srv = newServer(t, New(Info{}, src, Options{Now: clk.Now}))
	wantAbsent(t, scrape(t, srv), "gateagent_station_peers_alive", "gateagent_station_propagation_seconds_bucket", "gateagent_station_isolated")
	if _, body := get(t, srv.URL+"/status"); strings.Contains(body, `"station"`) {
		t.Errorf("/status has a station part without a group:\n%s", body)
	}
	// A source that panics is left out of the scrape, which still answers.
	src.Station = func() station.Status { panic("broken") }
	wantAbsent(t, scrape(t, newServer(t, New(Info{}, src, Options{Now: clk.Now}))), "gateagent_station_peers_alive")
}
