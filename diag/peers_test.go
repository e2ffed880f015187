package diag

import (
	"strings"
	"testing"
	"time"

	"gateagent/config"
	"gateagent/station"
)

// TestJudgePeers: the peers check from the running agent's view of its
// group: what is wrong decides, worst first.
func TestJudgePeers(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	on := &config.Config{Station: config.Station{Group: "GZN-entry"}}
	healthy := func() *station.Status {
		return &station.Status{Gate: "E01", Group: "GZN-entry", Addr: "10.20.0.11:7946", Synced: true, Expected: 2, Alive: 2,
			Peers: []station.Peer{
				{Gate: "E02", Addr: "10.20.0.12:7946", State: "alive", LastHeard: now.Add(-400 * time.Millisecond)},
				{Gate: "E03", Addr: "10.20.0.13:7946", State: "alive", LastHeard: now.Add(-3 * time.Second)},
			},
			Propagation: station.Latency{Count: 120, P50: 400 * time.Microsecond, P99: 1200 * time.Microsecond}}
	}
	for _, c := range []struct {
		name   string
		cfg    *config.Config
		st     func() *station.Status
		status Status
		want   []string
	}{
		{"off", &config.Config{}, func() *station.Status { return nil }, Skip, []string{"station peers off"}},
		{"healthy", on, healthy, Pass, []string{"2 of 2 peers alive", "p50 0.400ms, p99 1.200ms over 120 reports", "last heard 3s ago at the latest"}},
		{"one missing", on, func() *station.Status {
			s := healthy()
			s.Alive, s.Peers[1].State, s.Peers[1].LastHeard = 1, "gone", now.Add(-2*time.Minute)
			return s
		}, Warn, []string{"missing E03 (gone, last heard 2m0s ago)", "1 of 2 peers alive"}},
		{"never seen", on, func() *station.Status {
			s := healthy()
			s.Alive, s.Peers[1].State, s.Peers[1].LastHeard = 1, "unknown", time.Time{}
			return s
		}, Warn, []string{"E03 (never seen since the agent started)"}},
		{"isolated", on, func() *station.Status {
			s := healthy()
			s.Alive, s.Isolated, s.LastContact = 0, true, now.Add(-30*time.Second)
			s.Peers[0].State, s.Peers[1].State = "gone", "gone"
			return s
		}, Warn, []string{"isolated: none of the 2 other gates answers (last heard 30s ago)", "network cable"}},
		{"isolated, not yet declared", on, func() *station.Status {
			s := healthy()
			s.Isolated, s.LastContact = true, now.Add(-12*time.Second)
			return s
		}, Warn, []string{"isolated", "last heard 12s ago"}},
		{"key mismatch", on, func() *station.Status {
			s := healthy()
			s.Alive, s.Peers[1].State = 1, "unknown"
			s.Unauthenticated = []station.Source{{Addr: "10.20.0.13", Packets: 40, Last: now.Add(-time.Second), Seed: true}}
			return s
		}, Fail, []string{"key mismatch: the seed 10.20.0.13", "same station.key_files"}},
		{"key mismatch, named", on, func() *station.Status {
			s := healthy()
			s.Unauthenticated = []station.Source{{Addr: "10.20.0.12", Packets: 4, Last: now.Add(-time.Second), Gate: "E02"}}
			return s
		}, Fail, []string{"gate E02 at 10.20.0.12"}},
		{"a gate ID claimed twice", on, func() *station.Status {
			s := healthy()
			s.Unauthenticated = []station.Source{{Addr: "10.20.0.99", Packets: 4, Last: now.Add(-time.Minute)}}
			s.Conflicts = []station.Conflict{{Gate: "E02", Addrs: []string{"10.20.0.12:7946", "10.20.0.22:7946"}, Count: 7, Last: now.Add(-2 * time.Second)}}
			return s
		}, Fail, []string{"gate ID claimed by two hosts: E02 at 10.20.0.12:7946 and 10.20.0.22:7946", "its own gate.id"}},
		{"a gate ID claimed twice long ago", on, func() *station.Status {
			s := healthy()
			s.Conflicts = []station.Conflict{{Gate: "E02", Addrs: []string{"10.20.0.12:7946", "10.20.0.22:7946"}, Count: 7, Last: now.Add(-time.Hour)}}
			return s
		}, Pass, []string{"2 of 2 peers alive"}},
		{"a foreign host", on, func() *station.Status {
			s := healthy()
			s.Unauthenticated = []station.Source{{Addr: "10.20.0.99", Packets: 4, Last: now.Add(-time.Minute)}}
			return s
		}, Warn, []string{"dropped traffic from 10.20.0.99", "not a gate of this group"}},
		{"a foreign host long ago", on, func() *station.Status {
			s := healthy()
			s.Unauthenticated = []station.Source{{Addr: "10.20.0.99", Packets: 4, Last: now.Add(-time.Hour)}}
			return s
		}, Pass, []string{"2 of 2 peers alive"}},
		{"slow", on, func() *station.Status {
			s := healthy()
			s.Propagation.P99 = 300 * time.Millisecond
			return s
		}, Warn, []string{"slow:", "p99 300.000ms"}},
		{"double uses", on, func() *station.Status {
			s := healthy()
			s.DoubleUses = 2
			return s
		}, Pass, []string{"double uses found since the agent started: 2 (double_use events)"}},
		{"node missing", on, func() *station.Status { return nil }, Fail, []string{"no station node"}},
	} {
		ch := judgePeers(c.cfg, c.st(), now)
		if ch.Status != c.status || ch.Name != NamePeers {
			t.Errorf("%s: %s %s, want %s", c.name, ch.Name, ch.Status, c.status)
		}
		for _, w := range c.want {
			if !strings.Contains(ch.Line, w) {
				t.Errorf("%s: %q does not say %q", c.name, ch.Line, w)
			}
		}
		if st := c.st(); st != nil {
			var b strings.Builder
			if err := writePeers(&b, ch, st, now); err != nil {
				t.Fatal(err)
			}
			for _, p := range st.Peers {
				if !strings.Contains(b.String(), p.Gate) {
					t.Errorf("%s: diag peers does not list %s:\n%s", c.name, p.Gate, b.String())
				}
			}
		}
	}
}
