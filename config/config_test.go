package config_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gateagent/config"
)

const example = "../configs/gateagent.example.toml"

func TestExampleParses(t *testing.T) {
	c, err := config.Load(example)
	if err != nil {
		t.Fatal(err)
	}
	if c.Gate.ID != "GZN-E07" || c.HW.Relay.Pin != "GPIO17" || !c.HW.Relay.ActiveLow || c.Scanner.RepeatWindow != 2*time.Second {
		t.Fatalf("example read as %+v", c)
	}
	if d := config.Default(); c.Timing != d.Timing || c.Verify != d.Verify || c.Log != d.Log {
		t.Error("the example's values differ from the defaults it says it shows")
	}
}

// TestExampleDocumentsEveryKey: every key the agent reads is set, with a
// comment, in the example, under its section.
func TestExampleDocumentsEveryKey(t *testing.T) {
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	section := ""
	hdr := regexp.MustCompile(`^\[([a-z_.]+)\]`)
	kv := regexp.MustCompile(`^([a-z_]+)\s*=`)
	for _, line := range strings.Split(string(src), "\n") {
		if m := hdr.FindStringSubmatch(line); m != nil {
			section = m[1] + "."
		} else if m := kv.FindStringSubmatch(line); m != nil {
			set[section+m[1]] = true
		}
	}
	keys := config.Keys()
	if len(keys) < 40 {
		t.Fatalf("only %d keys: %v", len(keys), keys)
	}
	for _, k := range keys {
		if !set[k] {
			t.Errorf("%s is not in %s", k, example)
		}
	}
	for k := range set {
		found := false
		for _, kk := range keys {
			found = found || kk == k
		}
		if !found {
			t.Errorf("%s in the example is not a key the agent reads", k)
		}
	}
}

func write(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "gateagent.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const minimal = `version = 1
[gate]
id = "G1"
[feed]
url = "http://127.0.0.1:8080/"
trusted_keys = ["k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk="]
[scanner]
port = "/dev/ttyS1"
[hw]
kind = "sim"
`

func TestMinimalTakesDefaults(t *testing.T) {
	c, err := config.Load(write(t, minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.Gate.Cache != "/var/lib/gateagent/cache.db" || c.Scanner.Baud != 9600 || c.Feed.Interval != 10*time.Second || c.Timing.PassTimeout != 8*time.Second {
		t.Fatalf("defaults not applied: %+v", c)
	}
}

func TestRefusals(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string // every one must appear in the message
	}{
		{"unknown key with its line", strings.Replace(minimal, "[hw]\n", "[hw]\nrelay_pin = \"GPIO1\"\n", 1), []string{":10:", "relay_pin", "unknown"}},
		{"unknown section", minimal + "[gates]\nid = \"x\"\n", []string{":11:", "gates"}},
		{"no version", strings.Replace(minimal, "version = 1\n", "", 1), []string{"version", "missing"}},
		{"future version", strings.Replace(minimal, "version = 1", "version = 2", 1), []string{"version", "2"}},
		{"bad direction", strings.Replace(minimal, `id = "G1"`, "id = \"G1\"\ndirection = \"sideways\"", 1), []string{"gate.direction", "entry or exit"}},
		{"bad url", strings.Replace(minimal, "http://127.0.0.1:8080/", "ftp://x", 1), []string{"feed.url"}},
		{"bad key", strings.Replace(minimal, "7mGX", "!!", 1), []string{"feed.trusted_keys"}},
		{"bad duration", strings.Replace(minimal, "[hw]\n", "[hw]\ndebounce = \"soon\"\n", 1), []string{":10:", "debounce"}},
		{"bad terminator", strings.Replace(minimal, "port = \"/dev/ttyS1\"", "port = \"/dev/ttyS1\"\nterminator = \"nul\"", 1), []string{"terminator"}},
		{"gpio without pins", strings.Replace(minimal, `kind = "sim"`, `kind = "gpio"`, 1), []string{"hw.relay.pin", "hw.passage.pin"}},
		{"exit grace at an entry gate", minimal + "[verify]\nexit_grace = \"1h\"\n", []string{"verify", "grace"}},
		{"pulse longer than timeout", minimal + "[timing]\npulse = \"9s\"\npass_timeout = \"5s\"\n", []string{"timing", "pulse"}},
		{"metrics on the network", minimal + "[control]\nmetrics = \"0.0.0.0:9750\"\n", []string{"control.metrics", "loopback"}},
		{"metrics without port", minimal + "[control]\nmetrics = \"127.0.0.1\"\n", []string{"control.metrics", "host:port"}},
		{"relative socket", minimal + "[control]\nsocket = \"control.sock\"\n", []string{"control.socket", "absolute"}},
		{"cache named as the journal", strings.Replace(minimal, `id = "G1"`, "id = \"G1\"\ncache = \"/var/lib/gateagent/journal.db\"", 1), []string{"gate.cache", "journal"}},
		{"garbage", "\x00\xff\xfe{{{", []string{"gateagent.toml:1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Load(write(t, tc.text))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestHugeFileRefused(t *testing.T) {
	_, err := config.Load(write(t, minimal+strings.Repeat("#", config.MaxFileSize)))
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("got %v", err)
	}
}

func TestMissingFile(t *testing.T) {
	_, err := config.Load(filepath.Join(t.TempDir(), "none.toml"))
	if err == nil || !strings.Contains(err.Error(), "none.toml") {
		t.Fatalf("got %v", err)
	}
}

func TestZeroTimingsRefused(t *testing.T) {
	for _, key := range []string{"pass_timeout", "pass_max", "deny", "alarm"} {
		_, err := config.Load(write(t, minimal+"[timing]\n"+key+" = \"0s\"\n"))
		if err == nil || !strings.Contains(err.Error(), "timing."+key) {
			t.Errorf("%s = 0s: %v", key, err)
		}
	}
	if _, err := config.Load(write(t, minimal+"[timing]\npulse = \"1ms\"\n")); err == nil {
		t.Error("a 1 ms relay pulse accepted")
	}
	if _, err := config.Load(write(t, minimal+"poll = \"0s\"\n")); err == nil || !strings.Contains(err.Error(), "hw.poll") {
		t.Errorf("poll 0: %v", err)
	}
}
