package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"gateagent/station"
)

// Station is the gate's station peer group (package station): the gates
// of one station or gate line that refuse, together, a certificate any of
// them has just let through. Off while Group is empty.
type Station struct {
	Group       string        `toml:"group"`
	Gates       []string      `toml:"gates"`
	Bind        string        `toml:"bind"`
	Advertise   string        `toml:"advertise"`
	Seeds       []string      `toml:"seeds"`
	KeyFiles    []string      `toml:"key_files"`
	JoinTimeout time.Duration `toml:"join_timeout"`
	PushPull    time.Duration `toml:"push_pull"`
	Probe       time.Duration `toml:"probe"`
	Reconnect   time.Duration `toml:"reconnect"`
}

// DefaultStationPort is the station peers' UDP and TCP port.
const DefaultStationPort = 7946

func defaultStation() Station {
	return Station{JoinTimeout: station.DefaultJoinTimeout,
		PushPull: station.DefaultPushPull, Probe: station.DefaultProbe, Reconnect: station.DefaultReconnect}
}

// On reports whether the gate has station peers.
func (s *Station) On() bool { return s.Group != "" }

// validateStation checks the [station] section; bad reports a problem
// with a key.
func (c *Config) validateStation(bad func(key, format string, a ...any)) {
	s := c.Station
	if !s.On() {
		if len(s.Gates)+len(s.Seeds)+len(s.KeyFiles) > 0 {
			bad("station.group", "empty, but gates, seeds or key_files are set: give the group's name to turn station peers on, or leave the section out")
		}
		return
	}
	if !station.ValidGateID(s.Group) {
		bad("station.group", "%q: 1 to 64 characters without spaces or quotes, the same on every gate of the group (e.g. GZN-entry)", s.Group)
	}
	if !station.ValidGateID(c.Gate.ID) {
		bad("gate.id", "%q: with station peers, a gate ID is 1 to 64 ASCII characters without spaces or quotes", c.Gate.ID)
	}
	switch {
	case len(s.Gates) == 0:
		bad("station.gates", "empty: list every gate of the group by its gate.id, this one included")
	case len(s.Gates) > station.MaxGates:
		bad("station.gates", "%d gates: at most %d in one group (split the station into groups, e.g. by gate line)", len(s.Gates), station.MaxGates)
	case !slices.Contains(s.Gates, c.Gate.ID):
		bad("station.gates", "does not list this gate, %q: list every gate of the group, this one included", c.Gate.ID)
	}
	seen := map[string]bool{}
	for _, g := range s.Gates {
		if !station.ValidGateID(g) {
			bad("station.gates", "%q: a gate ID is 1 to 64 ASCII characters without spaces or quotes", g)
		} else if seen[g] {
			bad("station.gates", "%q is listed twice", g)
		}
		seen[g] = true
	}
	switch err := checkAddr(s.Bind); {
	case s.Bind == "":
		bad("station.bind", "empty: give this gate's address on the station LAN and the port, e.g. 10.20.0.11:%d", DefaultStationPort)
	case err != nil:
		bad("station.bind", "%q: %v", s.Bind, err)
	default:
		// With 0.0.0.0 memberlist would look for this board's address
		// among its interfaces, which the agent's sandbox does not list
		// (no netlink): the address the other gates use must be given.
		if ap, _ := netip.ParseAddrPort(s.Bind); ap.Addr().IsUnspecified() && s.Advertise == "" {
			bad("station.advertise", "empty while station.bind is %s: give the address the other gates reach this one at (or bind to it)", s.Bind)
		}
	}
	if s.Advertise != "" {
		if err := checkAddr(s.Advertise); err != nil {
			bad("station.advertise", "%q: %v", s.Advertise, err)
		} else if ap, _ := netip.ParseAddrPort(s.Advertise); ap.Addr().IsUnspecified() {
			bad("station.advertise", "%q: give the address the other gates reach this one at, not 0.0.0.0", s.Advertise)
		}
	}
	if len(s.Seeds) == 0 && len(s.Gates) > 1 {
		bad("station.seeds", "empty: list the other gates' addresses (IP:port); the same list on every gate works, this gate's own address is skipped")
	}
	for _, a := range s.Seeds {
		if err := checkAddr(a); err != nil {
			bad("station.seeds", "%q: %v", a, err)
		}
	}
	switch {
	case len(s.KeyFiles) == 0:
		bad("station.key_files", "empty: give the station key file (e.g. /etc/gateagent/station.key); peer traffic is always sealed")
	case len(s.KeyFiles) > 2:
		bad("station.key_files", "%d files: the primary key, and during a rotation one other; no more", len(s.KeyFiles))
	}
	for _, f := range s.KeyFiles {
		if !strings.HasPrefix(f, "/") {
			bad("station.key_files", "%q: give an absolute path", f)
		}
	}
	for _, d := range []struct {
		key    string
		v      time.Duration
		lo, hi time.Duration
	}{
		{"station.join_timeout", s.JoinTimeout, 100 * time.Millisecond, 5 * time.Minute},
		{"station.push_pull", s.PushPull, time.Second, time.Hour},
		{"station.probe", s.Probe, 50 * time.Millisecond, time.Minute},
		{"station.reconnect", s.Reconnect, 50 * time.Millisecond, 10 * time.Minute},
	} {
		if d.v < d.lo || d.v > d.hi {
			bad(d.key, "%v: use %v to %v", d.v, d.lo, d.hi)
		}
	}
}

// checkAddr checks "IP:port" with a port of 1 to 65535.
func checkAddr(a string) error {
	ap, err := netip.ParseAddrPort(a)
	switch {
	case err != nil:
		return fmt.Errorf("want IP:port, e.g. 10.20.0.11:%d (names are not resolved: give the address)", DefaultStationPort)
	case ap.Port() == 0:
		return fmt.Errorf("port 0: use 1 to 65535 (the default is %d)", DefaultStationPort)
	}
	return nil
}

// StationConfig is the station node's config, with keys read from
// station.key_files (station.LoadKeys), now the gate's corrected clock
// and onDoubleUse called for each double use.
func (c *Config) StationConfig(keys [][]byte, now func() time.Time, log *slog.Logger, onDoubleUse func(station.DoubleUse)) station.Config {
	s := c.Station
	return station.Config{GateID: c.Gate.ID, Group: s.Group, Gates: s.Gates, Bind: s.Bind, Advertise: s.Advertise,
		Seeds: s.Seeds, Keys: keys, Window: c.Verify.PassbackWindow, JoinTimeout: s.JoinTimeout, PushPull: s.PushPull,
		Probe: s.Probe, Reconnect: s.Reconnect, Now: now, Logger: log, OnDoubleUse: onDoubleUse}
}
