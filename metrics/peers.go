package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"gateagent/station"
)

// The station peers' metrics, read from Sources.Station at scrape time.
// Reports are counted by kind (hold: a grant, release: a lapse, passed: a
// passage), drops by reason; no label names a certificate or a gate.
var (
	descPeersAlive    = newDesc("station_peers_alive", "Other gates of the station group reachable now.")
	descPeersExpected = newDesc("station_peers_expected", "Other gates in the station group's list.")
	descPeersSynced   = newDesc("station_synced", "1 once a state exchange (push/pull) with a peer has completed since the agent started.")
	descIsolated      = newDesc("station_isolated", "1 while none of the group's other gates is reachable: anti-passback knows only this gate's passages.")
	descIsolatedSecs  = newDesc("station_isolated_seconds_total", "Seconds spent isolated from every peer since the agent started.")
	descPeerSent      = newDesc("station_reports_sent_total", "This gate's reports to its peers, by kind (hold: a grant, release: a lapse, passed: a passage); each goes to every live peer.", "kind")
	descPeerReceived  = newDesc("station_reports_received_total", "Peers' reports taken, by kind (gossiped duplicates included).", "kind")
	descPeerDropped   = newDesc("station_dropped_total", "Peer traffic not taken, by reason: unauthenticated (not sealed with the station key for this group), malformed, unknown_gate, future, expired, full, queue_full, busy.", "reason")
	descDoubleUses    = newDesc("station_double_uses_total", "Certificates granted here that were granted at another gate of the group while one grant stood (double_use alarm events).")
	descIDConflicts   = newDesc("station_gate_id_conflicts_total", "Peers' alive messages refused because another host already holds their gate ID (two gates configured with one gate.id): diag peers names them.")
	descPeerEntries   = newDesc("station_state_entries", "Grants in the peer-aware anti-passback state.")
	descPropagation   = newDesc("station_propagation_seconds", "From a peer's grant, lapse or passage to its report reaching this gate, on the gates' issuer-corrected clocks.")
)

var peerDescs = []*prometheus.Desc{descPeersAlive, descPeersExpected, descPeersSynced, descIsolated, descIsolatedSecs,
	descPeerSent, descPeerReceived, descPeerDropped, descDoubleUses, descIDConflicts, descPeerEntries, descPropagation}

// peerCollector turns Sources.Station into metrics at scrape time; without
// a station group it reports nothing.
type peerCollector struct{ m *Metrics }

func (c peerCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, peerDescs)
}

func (c peerCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter(ch)
	st, ok := c.m.station()
	if !ok {
		return
	}
	e.gauge(descPeersAlive, float64(st.Alive))
	e.gauge(descPeersExpected, float64(st.Expected))
	e.gauge(descPeersSynced, bool01(st.Synced))
	e.gauge(descIsolated, bool01(st.Isolated))
	e.counter(descIsolatedSecs, st.IsolatedSeconds)
	for k, v := range st.Sent {
		e.counter(descPeerSent, float64(v), k)
	}
	for k, v := range st.Received {
		e.counter(descPeerReceived, float64(v), k)
	}
	for r, v := range st.Dropped {
		e.counter(descPeerDropped, float64(v), r)
	}
	e.counter(descDoubleUses, float64(st.DoubleUses))
	var conflicts uint64
	for _, k := range st.Conflicts {
		conflicts += k.Count
	}
	e.counter(descIDConflicts, float64(conflicts))
	e.gauge(descPeerEntries, float64(st.Entries))
	p := st.Propagation
	buckets := make(map[float64]uint64, len(p.Buckets))
	for _, b := range p.Buckets {
		buckets[b.UpperBound] = b.Count
	}
	ch <- prometheus.MustNewConstHistogram(descPropagation, p.Count, p.Sum, buckets)
}

// station reads Sources.Station; false without one (or when it panicked).
func (m *Metrics) station() (station.Status, bool) {
	if m.src.Station == nil {
		return station.Status{}, false
	}
	var st station.Status
	ok := m.safely("station", func() { st = m.src.Station() })
	return st, ok
}
