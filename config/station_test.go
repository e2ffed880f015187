package config_test

import (
	"strings"
	"testing"
	"time"

	"gateagent/config"
)

const withStation = minimal + `[station]
group = "GZN-entry"
gates = ["G1", "G2", "G3"]
bind = "10.20.0.11:7946"
seeds = ["10.20.0.11:7946", "10.20.0.12:7946", "10.20.0.13:7946"]
key_files = ["/etc/gateagent/station.key"]
`

func TestStationSection(t *testing.T) {
	c, err := config.Load(write(t, withStation))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Station.On() || c.Station.JoinTimeout != 5*time.Second || c.Station.Probe != time.Second {
		t.Fatalf("station read as %+v", c.Station)
	}
	sc := c.StationConfig([][]byte{make([]byte, 32)}, time.Now, nil, nil)
	if err := sc.Validate(); err != nil {
		t.Fatalf("a config that passes config.Validate gives a station config that does not: %v", err)
	}
	if sc.GateID != "G1" || sc.Window != 30*time.Minute || len(sc.Seeds) != 3 {
		t.Fatalf("station config %+v", sc)
	}
	off, err := config.Load(write(t, minimal))
	if err != nil || off.Station.On() {
		t.Fatalf("station on by default: %+v, %v", off.Station, err)
	}
}

func TestStationRefusals(t *testing.T) {
	set := func(old, new string) string { return strings.Replace(withStation, old, new, 1) }
	for _, c := range []struct {
		name, text string
		want       []string
	}{
		{"keys without a group", set(`group = "GZN-entry"`, `group = ""`), []string{"station.group", "empty"}},
		{"group with a space", set(`"GZN-entry"`, `"GZN entry"`), []string{"station.group"}},
		{"this gate not listed", set(`["G1", "G2", "G3"]`, `["G2", "G3"]`), []string{"station.gates", `"G1"`}},
		{"a gate twice", set(`["G1", "G2", "G3"]`, `["G1", "G2", "G2"]`), []string{"station.gates", "twice"}},
		{"bind a name", set(`"10.20.0.11:7946"`, `"gate1:7946"`), []string{"station.bind", "IP:port"}},
		{"seed without port", set(`"10.20.0.12:7946"`, `"10.20.0.12"`), []string{"station.seeds", "10.20.0.12"}},
		{"seed port 0", set(`"10.20.0.12:7946"`, `"10.20.0.12:0"`), []string{"station.seeds", "port 0"}},
		{"no seeds", set(`seeds = ["10.20.0.11:7946", "10.20.0.12:7946", "10.20.0.13:7946"]`, `seeds = []`), []string{"station.seeds", "empty"}},
		{"no key", set(`["/etc/gateagent/station.key"]`, `[]`), []string{"station.key_files", "empty"}},
		{"three keys", set(`["/etc/gateagent/station.key"]`, `["/a", "/b", "/c"]`), []string{"station.key_files", "rotation"}},
		{"relative key", set(`["/etc/gateagent/station.key"]`, `["station.key"]`), []string{"station.key_files", "absolute"}},
		{"advertise 0.0.0.0", withStation + "advertise = \"0.0.0.0:7946\"\n", []string{"station.advertise"}},
		{"no bind", set(`bind = "10.20.0.11:7946"`, `bind = ""`), []string{"station.bind", "empty"}},
		{"bind 0.0.0.0 without advertise", set(`"10.20.0.11:7946"`, `"0.0.0.0:7946"`), []string{"station.advertise", "0.0.0.0:7946"}},
		{"probe too short", withStation + "probe = \"1ms\"\n", []string{"station.probe"}},
		{"unknown key", withStation + "peers = []\n", []string{"peers", "unknown"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := config.Load(write(t, c.text))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}
