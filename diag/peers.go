package diag

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	"gateagent/config"
	"gateagent/station"
)

// NamePeers is the station peers' check.
const NamePeers = "peers"

// Thresholds of the peers' judge.
const (
	// PropagationWarn: a p99 from a peer's grant to its report reaching
	// this gate above this leaves a companion time to use the code at
	// another gate.
	PropagationWarn = 100 * time.Millisecond
	// ForeignRecent: unauthenticated traffic older than this is history,
	// not a present problem.
	ForeignRecent = 10 * time.Minute
)

// judgePeers judges the running agent's view of its station group.
func judgePeers(cfg *config.Config, st *station.Status, now time.Time) Check {
	c := Check{Name: NamePeers}
	if !cfg.Station.On() {
		c.Status, c.Line = Skip, "station peers off (no [station] group): anti-passback knows only this gate's own passages"
		return c
	}
	if st == nil {
		c.Status, c.Line = Fail, "the agent has a [station] group but no station node: restart it and see journalctl -u gateagent"
		return c
	}
	var missing []string
	for _, p := range st.Peers {
		if !p.Alive() {
			missing = append(missing, fmt.Sprintf("%s (%s)", p.Gate, peerSince(now, p)))
		}
	}
	var mismatch, foreign []string
	for _, s := range st.Unauthenticated {
		if now.Sub(s.Last) > ForeignRecent {
			continue
		}
		switch {
		case s.Gate != "":
			mismatch = append(mismatch, fmt.Sprintf("gate %s at %s", s.Gate, s.Addr))
		case s.Seed:
			mismatch = append(mismatch, "the seed "+s.Addr)
		default:
			foreign = append(foreign, s.Addr)
		}
	}
	var twins []string
	for _, k := range st.Conflicts {
		if now.Sub(k.Last) <= ForeignRecent {
			twins = append(twins, fmt.Sprintf("%s at %s", k.Gate, strings.Join(k.Addrs, " and ")))
		}
	}
	p := st.Propagation
	c.Facts = map[string]any{"duplicate_ids": twins, "group": st.Group, "addr": st.Addr, "alive": st.Alive, "expected": st.Expected, "synced": st.Synced,
		"isolated": st.Isolated, "isolated_seconds": st.IsolatedSeconds, "missing": missing, "key_mismatch": mismatch,
		"foreign": foreign, "dropped": st.Dropped, "double_uses": st.DoubleUses,
		"propagation_p50_seconds": p.P50.Seconds(), "propagation_p99_seconds": p.P99.Seconds(), "propagation_count": p.Count}
	prop := "no peer report received yet"
	if p.Count > 0 {
		prop = fmt.Sprintf("propagation p50 %s, p99 %s over %d reports", ms(p.P50), ms(p.P99), p.Count)
	}
	summary := fmt.Sprintf("group %s: %d of %d peers alive; %s", st.Group, st.Alive, st.Expected, prop)
	if st.DoubleUses > 0 {
		summary += fmt.Sprintf("; double uses found since the agent started: %d (double_use events)", st.DoubleUses)
	}
	switch {
	case len(twins) > 0:
		c.Status = Fail
		c.Line = fmt.Sprintf("gate ID claimed by two hosts: %s: one of them is not heard, so a certificate used there is not refused here; give each gate its own gate.id (%s)",
			strings.Join(twins, "; "), summary)
	case len(mismatch) > 0:
		c.Status = Fail
		c.Line = fmt.Sprintf("key mismatch: %s sends traffic this gate cannot authenticate: the station key (or group) differs; give every gate of the group the same station.key_files and station.group (%s)",
			strings.Join(mismatch, ", "), summary)
	case st.Isolated:
		c.Status = Warn
		heard := "never since the agent started"
		if !st.LastContact.IsZero() {
			heard = ago(now, st.LastContact)
		}
		c.Line = fmt.Sprintf("isolated: none of the %d other gates answers (last heard %s): each gate refuses only what it saw itself, and its events say so; check this gate's network cable and the station LAN switch",
			st.Expected, heard)
	case len(missing) > 0:
		c.Status = Warn
		c.Line = fmt.Sprintf("missing %s: a passenger may use a certificate once there and once here; check those gates and their network (%s)", strings.Join(missing, ", "), summary)
	case len(foreign) > 0:
		c.Status = Warn
		c.Line = fmt.Sprintf("dropped traffic from %s, not sealed with the station key: a host on the station LAN that is not a gate of this group (%s)", strings.Join(foreign, ", "), summary)
	case p.Count > 0 && p.P99 > PropagationWarn:
		c.Status = Warn
		c.Line = fmt.Sprintf("slow: %s; a companion has that long to use the same code at another gate: check the station LAN (switch, cabling, load)", summary)
	default:
		c.Status, c.Line = Pass, summary
		if st.Expected > 0 {
			c.Line += "; last heard " + lastHeard(now, st.Peers)
		}
	}
	return c
}

// peerSince says since when a peer is missing.
func peerSince(now time.Time, p station.Peer) string {
	switch {
	case p.State == "unknown":
		return "never seen since the agent started"
	case !p.LastHeard.IsZero():
		return "gone, last heard " + ago(now, p.LastHeard)
	}
	return "gone " + ago(now, p.Since)
}

// lastHeard is the longest time since any live peer was heard from.
func lastHeard(now time.Time, peers []station.Peer) string {
	var oldest time.Time
	for _, p := range peers {
		if p.Alive() && !p.LastHeard.IsZero() && (oldest.IsZero() || p.LastHeard.Before(oldest)) {
			oldest = p.LastHeard
		}
	}
	if oldest.IsZero() {
		return "-"
	}
	return ago(now, oldest) + " at the latest"
}

// standalonePeers is the peers' check with the agent stopped: its view of
// the group lives in its memory, but the key files can be read here.
func standalonePeers(cfg *config.Config) Check {
	c := Check{Name: NamePeers}
	if !cfg.Station.On() {
		c.Status, c.Line = Skip, "station peers off (no [station] group): anti-passback knows only this gate's own passages"
		return c
	}
	if _, err := station.LoadKeys(cfg.Station.KeyFiles); err != nil {
		c.Status, c.Line = Fail, fmt.Sprintf("%v: %s", oneLine(err), stationKeyAdvice(err))
		return c
	}
	c.Status, c.Line = Skip, fmt.Sprintf("group %s, key files readable; the peers' state lives in the running agent, which is not running", cfg.Station.Group)
	return c
}

// stationKeyAdvice says what to do about a station key file that cannot
// be used.
func stationKeyAdvice(err error) string {
	var kf *station.KeyFileError
	if !errors.As(err, &kf) {
		return "check station.key_files"
	}
	switch {
	case errors.Is(err, station.ErrKeyMode):
		return fmt.Sprintf("let only the agent's user read it: chown gateagent %s && chmod 0600 %s", kf.Path, kf.Path)
	case errors.Is(err, fs.ErrNotExist):
		return "copy the group's station key there, or correct station.key_files"
	case errors.Is(err, fs.ErrPermission):
		return "run diag as root, or as the agent's user"
	}
	return "put the group's key there: one key in base64, made once with `head -c 32 /dev/urandom | base64` and copied to every gate"
}

// peersCheck is the running agent's peers check.
func (l *Live) peersCheck() Check {
	var st *station.Status
	if l.Station != nil {
		s := l.Station.Status()
		st = &s
	}
	return judgePeers(l.Config, st, time.Now())
}

// servePeers answers GET /diag/peers: the station node's status.
func (l *Live) servePeers(w http.ResponseWriter, r *http.Request) {
	if l.Station == nil {
		http.Error(w, "station peers off: the config has no [station] group", http.StatusNotFound)
		return
	}
	writeJSON(w, l.Station.Status())
}

// peersOff is the check of a gate without a station group.
var peersOff = Check{Name: NamePeers, Status: Skip, Line: "station peers off (no [station] group): anti-passback knows only this gate's own passages"}

// peers asks the running agent for its station node's status and judges it.
func (a agentBackend) peers(ctx context.Context) (Check, *station.Status, error) {
	var st station.Status
	if err := a.call(ctx, http.MethodGet, "/diag/peers", nil, &st); err != nil {
		var ae *agentError
		if errors.As(err, &ae) && ae.status == http.StatusNotFound {
			return peersOff, nil, nil
		}
		return Check{}, nil, err
	}
	// The running agent's group decides, whatever the config here says.
	cfg := &config.Config{Station: config.Station{Group: st.Group}}
	return judgePeers(cfg, &st, time.Now()), &st, nil
}

// peers with the agent stopped: the key files can be read, the peers'
// state lives in the agent.
func (l *localBackend) peers(context.Context) (Check, *station.Status, error) {
	if l.err != nil {
		return Check{}, nil, l.err
	}
	return standalonePeers(l.cfg), nil, nil
}

// writePeers prints the group for a person: the check, a line per peer,
// then the counters.
func writePeers(w io.Writer, c Check, st *station.Status, now time.Time) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s  %s\n\n", c.Status, c.Line)
	fmt.Fprintf(&b, "this gate %s at %s, group %s, synced %v, isolated %v (%.0fs in all)\n\n", st.Gate, st.Addr, st.Group, st.Synced, st.Isolated, st.IsolatedSeconds)
	fmt.Fprintf(&b, "%-16s %-8s %-22s %-14s %-14s %s\n", "gate", "state", "address", "since", "last heard", "rtt")
	for _, p := range st.Peers {
		since, heard, rtt := "-", "-", "-"
		if !p.Since.IsZero() {
			since = ago(now, p.Since)
		}
		if !p.LastHeard.IsZero() {
			heard = ago(now, p.LastHeard)
		}
		if p.RTT > 0 {
			rtt = ms(p.RTT)
		}
		fmt.Fprintf(&b, "%-16s %-8s %-22s %-14s %-14s %s\n", p.Gate, p.State, orDash(p.Addr), since, heard, rtt)
	}
	counts := func(m map[string]uint64) string {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var parts []string
		for _, k := range keys {
			if m[k] > 0 {
				parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
			}
		}
		if len(parts) == 0 {
			return "none"
		}
		return strings.Join(parts, ", ")
	}
	fmt.Fprintf(&b, "\nsent %s; received %s; dropped %s\n", counts(st.Sent), counts(st.Received), counts(st.Dropped))
	for _, k := range st.Conflicts {
		fmt.Fprintf(&b, "  gate ID %s claimed by %s: %d refused, last %s\n", k.Gate, strings.Join(k.Addrs, " and "), k.Count, ago(now, k.Last))
	}
	for _, s := range st.Unauthenticated {
		who := "not a gate of this group"
		switch {
		case s.Gate != "":
			who = "gate " + s.Gate + ": key or group differs"
		case s.Seed:
			who = "a seed: key or group differs"
		}
		fmt.Fprintf(&b, "  unauthenticated from %s: %d, last %s (%s)\n", s.Addr, s.Packets, ago(now, s.Last), who)
	}
	p := st.Propagation
	fmt.Fprintf(&b, "propagation p50 %s, p99 %s, max %s over %d reports; grants in the state: %d; double uses: %d\n",
		ms(p.P50), ms(p.P99), ms(p.Max), p.Count, st.Entries, st.DoubleUses)
	_, err := io.WriteString(w, b.String())
	return err
}
