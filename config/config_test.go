package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pelletier/go-toml/v2"

	"gateagent/config"
	"gateagent/hw"
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

// TestExampleDocumentsEveryKey: every key the agent reads is set in the
// example, under its section, and the example sets no other.
func TestExampleDocumentsEveryKey(t *testing.T) {
	src, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := toml.Unmarshal(src, &doc); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	var flatten func(m map[string]any, prefix string)
	flatten = func(m map[string]any, prefix string) {
		for k, v := range m {
			if sub, ok := v.(map[string]any); ok {
				flatten(sub, prefix+k+".")
			} else {
				set[prefix+k] = true
			}
		}
	}
	flatten(doc, "")
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
		if !slices.Contains(keys, k) {
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

// fileErrors returns the *config.FileError values in err, in order.
func fileErrors(err error) []*config.FileError {
	var out []*config.FileError
	var walk func(error)
	walk = func(err error) {
		if fe, ok := err.(*config.FileError); ok {
			out = append(out, fe)
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// TestTrustedKeysOverTwoLines: the natural layout during a key rotation,
// one key a line with a comment, is TOML and is read.
func TestTrustedKeysOverTwoLines(t *testing.T) {
	text := strings.Replace(minimal, `trusted_keys = ["k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk="]`, `trusted_keys = [
  "k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk=",  # the current key
  "k2:R4qNlxRBYe2BayXmOtU1WISTUu6WAr3TUPsvXPr4EjA=",  # the next one, from 1 March
]`, 1)
	c, err := config.Load(write(t, text))
	if err != nil {
		t.Fatal(err)
	}
	kr, err := c.Keyring()
	if err != nil || len(kr) != 2 || kr["k1"] == nil || kr["k2"] == nil {
		t.Fatalf("keyring %v, %v: want k1 and k2", kr, err)
	}
}

// TestDurationAsNumberRefused: interval = 10 is not 10 ns, nor 10 s: it is
// refused, naming the key, its line and how to write it.
func TestDurationAsNumberRefused(t *testing.T) {
	for _, tc := range []struct {
		text, key string
		line      int
	}{
		{strings.Replace(minimal, "[scanner]\n", "interval = 10\n[scanner]\n", 1), "feed.interval", 7},
		{minimal + "debounce = 20\n", "hw.debounce", 11},
		{minimal + "[timing]\npulse = 0\n", "timing.pulse", 12},
		{minimal + "[timing]\ndeny = 1.5\n", "timing.deny", 12},
		{minimal + "[timing]\ndeny = true\n", "timing.deny", 12},
		{minimal + "[timing]\ndeny = \"2\"\n", "timing.deny", 12},
		{minimal + "[timing]\ndeny = \"-2s\"\n", "timing.deny", 12},
		{minimal + "[timing]\ndeny = \"soon\"\n", "timing.deny", 12},
	} {
		c, err := config.Parse("gateagent.toml", []byte(tc.text))
		fes := fileErrors(err)
		if c != nil || len(fes) != 1 {
			t.Errorf("%s: got %v, %v: want one error", tc.key, c, err)
			continue
		}
		if fe := fes[0]; fe.File != "gateagent.toml" || fe.Line != tc.line || fe.Key != tc.key || !strings.Contains(fe.Msg, `"10s"`) {
			t.Errorf("%s: got %q, want line %d and a message that says to write \"10s\"", tc.key, fe, tc.line)
		}
	}
	_, err := config.Parse("gateagent.toml", []byte(strings.Replace(minimal, "[scanner]\n", "interval = 10\n[scanner]\n", 1)))
	if want := `config: gateagent.toml:7: feed.interval: got the integer 10, want a duration as a string with its unit, such as "10s" or "250ms"`; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
}

func TestUnknownKeyMessage(t *testing.T) {
	_, err := config.Parse("gateagent.toml", []byte("version = 1\n[gate]\nid = \"G\"\ndirecton = \"exit\"\n"))
	if want := "config: gateagent.toml:4: gate.directon: unknown key; [gate] knows: id, direction, cache"; err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	var fe *config.FileError
	if !errors.As(err, &fe) || fe.Line != 4 || fe.Key != "gate.directon" {
		t.Errorf("errors.As: %#v", fe)
	}
}

// TestSeveralUnknownKeysTogether: every unknown key and section of the
// file is reported at once, in line order, each with its section's keys.
func TestSeveralUnknownKeysTogether(t *testing.T) {
	text := "verison = 1\n" + strings.Replace(minimal, "[hw]\n", "[hw]\nrelay_pin = \"GPIO1\"\n[hw.relay]\npinn = \"GPIO17\"\n[hw.lamp]\n", 1) +
		"[gates]\nid = \"x\"\n"
	_, err := config.Parse("gateagent.toml", []byte(text))
	want := []struct {
		line      int
		key, text string
	}{
		{1, "verison", "unknown key; the top level knows: version, gate, feed, verify, scanner, hw, timing, control, station, log"},
		{11, "hw.relay_pin", "unknown key; [hw] knows: kind, debounce, poll, relay, green, red, buzzer, passage, emergency, approach, trigger"},
		{13, "hw.relay.pinn", "unknown key; [hw.relay] knows: pin, active_low, pull"},
		{14, "hw.lamp", "unknown section; [hw] knows: kind"},
		{16, "gates", "unknown section; the top level knows: version"},
	}
	fes := fileErrors(err)
	if len(fes) != len(want) {
		t.Fatalf("got %d errors, want %d: %v", len(fes), len(want), err)
	}
	for i, w := range want {
		if fe := fes[i]; fe.Line != w.line || fe.Key != w.key || !strings.HasPrefix(fe.Msg, w.text) {
			t.Errorf("error %d: got %q, want line %d %s: %s", i, fe, w.line, w.key, w.text)
		}
	}
}

// TestFileErrors: each problem names its line (when go-toml gives one),
// its key and what the key takes.
func TestFileErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		line       int
		key, msg   string
	}{
		{"string for an integer", "version = \"1\"\n", 1, "version", `got the string "1", want a whole number, without quotes`},
		{"integer for a string", "version = 1\n[gate]\nid = 5\n", 3, "gate.id", "got the integer 5, want a string in quotes"},
		{"string for a bool", minimal + "[hw.relay]\nactive_low = \"yes\"\n", 12, "hw.relay.active_low", `got the string "yes", want true or false`},
		{"string for strings", "version = 1\n[feed]\ntrusted_keys = \"k1:x\"\n", 3, "feed.trusted_keys", `got the string "k1:x", want an array of strings such as ["a", "b"]`},
		{"integer in strings", "version = 1\n[feed]\ntrusted_keys = [\"k1:x\",\n  2]\n", 4, "feed.trusted_keys", "got an array holding the integer 2, want an array of strings"},
		{"table for a key", "version = 1\n[gate.id]\n", 2, "gate.id", "got a table, want a string in quotes"},
		{"value for a section", "version = 1\nhw = \"sim\"\n", 2, "hw", `got the string "sim", want a [hw] section`},
		{"array of tables for a section", "version = 1\n[[hw.relay]]\npin = \"x\"\n", 2, "hw.relay", "got an array of tables, want a [hw.relay] section"},
		{"wrong type inside an inline table", "version = 1\nhw = { kind = \"sim\", relay = { pin = 17 } }\n", 2, "hw.relay.pin", "got the integer 17, want a string in quotes"},
		{"unknown key inside an inline table", "version = 1\n[hw]\nrelay = { pinn = \"x\" }\n", 3, "pinn", "unknown key"},
		{"bare word", "version = 1\n[gate]\nid = G1\n", 3, "", "unexpected character"},
		{"unterminated string", "version = 1\n[gate]\nid = \"G1\n", 3, "", "string"},
		{"key set twice", "version = 1\n[gate]\nid = \"a\"\n\nid = \"b\"\n", 5, "", "already defined"},
		{"section twice", "version = 1\n[gate]\n[hw]\n[gate]\n", 4, "", "already exists"},
		{"invalid UTF-8", "version = 1\n[gate]\nid = \"\xff\"\n", 3, "", "UTF-8"},
		{"number too large", "version = 99999999999999999999\n", 1, "", "too large"},
		{"key in another case", "Version = 1\n", 0, "Version", "case-sensitive, write version"},
		{"section in another case", "version = 1\n[HW]\n", 0, "HW", "case-sensitive, write hw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := config.Parse("gateagent.toml", []byte(tc.text))
			fes := fileErrors(err)
			if c != nil || len(fes) != 1 {
				t.Fatalf("got %v, %v: want one *FileError", c, err)
			}
			fe := fes[0]
			if fe.File != "gateagent.toml" || fe.Line != tc.line || fe.Key != tc.key || !strings.Contains(fe.Msg, tc.msg) {
				t.Errorf("got line %d key %q message %q\nwant line %d key %q message with %q", fe.Line, fe.Key, fe.Msg, tc.line, tc.key, tc.msg)
			}
		})
	}
}

// TestFullTOML: whatever TOML allows is read: comments anywhere, inline
// tables, dotted keys, literal and multi-line strings, sections in any
// order, CRLF line ends, a byte order mark.
func TestFullTOML(t *testing.T) {
	text := "\ufeff" + `# a gate
version = 1 # the format

gate.id = 'GZN-E07'     # a dotted key, a literal string
gate.direction = "exit"

[hw.relay]   # a subsection before its section
pin = "GPIO17"
active_low = true

[hw]
kind = "gpio"
green = { pin = "GPIO27" }
red = { pin = "GPIO22" }
buzzer = { pin = "GPIO23" }
passage = { pin = "GPIO5", active_low = true, pull = "up" }

[feed]
url = """https://keys.station.example/"""
trusted_keys = [
  # the current key
  "k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk=",
]
interval = "1m30s"

[scanner]
port = "/dev/gate-scanner"
`
	for name, src := range map[string]string{"LF": text, "CRLF": strings.ReplaceAll(text, "\n", "\r\n")} {
		c, err := config.Parse("gateagent.toml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Gate.ID != "GZN-E07" || c.Gate.Direction != "exit" || c.Feed.URL != "https://keys.station.example/" ||
			c.Feed.Interval != 90*time.Second || len(c.Feed.TrustedKeys) != 1 ||
			c.HW.Relay != (hw.Line{Pin: "GPIO17", ActiveLow: true}) || c.HW.Green.Pin != "GPIO27" ||
			c.HW.Passage != (hw.Line{Pin: "GPIO5", ActiveLow: true, Pull: "up"}) {
			t.Errorf("%s: read as %+v", name, c)
		}
	}
}

// TestOmittedKeysKeepDefaults: a section that sets one key leaves the
// others at their defaults.
func TestOmittedKeysKeepDefaults(t *testing.T) {
	text := strings.Replace(minimal, "[hw]\n", "baud = 19200\n[hw]\n", 1) + "[timing]\ndeny = \"3s\"\n[hw.emergency]\npin = \"GPIO6\"\n"
	c, err := config.Parse("gateagent.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Default()
	want.Version = 1
	want.Gate.ID = "G1"
	want.Feed.URL = "http://127.0.0.1:8080/"
	want.Feed.TrustedKeys = []string{"k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk="}
	want.Scanner.Port = "/dev/ttyS1"
	want.Scanner.Baud = 19200
	want.HW.Kind = "sim"
	want.HW.Emergency.Pin = "GPIO6"
	want.Timing.Deny = 3 * time.Second
	if !reflect.DeepEqual(*c, want) {
		t.Errorf("got  %+v\nwant %+v", *c, want)
	}
}

// TestFailedParseReturnsNoConfig: whatever step refuses the file, the
// caller gets no config, not part of one.
func TestFailedParseReturnsNoConfig(t *testing.T) {
	for name, text := range map[string]string{
		"syntax":     minimal + "[timing]\ndeny = \n",
		"unknown":    minimal + "[timing]\ndenny = \"3s\"\n",
		"type":       minimal + "[timing]\ndeny = 3\n",
		"duration":   minimal + "[timing]\ndeny = \"3 s\"\n",
		"validation": minimal + "[timing]\ndeny = \"0s\"\n",
	} {
		if c, err := config.Parse("gateagent.toml", []byte(text)); c != nil || err == nil {
			t.Errorf("%s: got %+v, %v", name, c, err)
		}
	}
}

// TestValidationErrorsTogether: once the file reads, every bad value is
// reported at once, by key.
func TestValidationErrorsTogether(t *testing.T) {
	text := strings.NewReplacer(`id = "G1"`, `id = "G1"`+"\ndirection = \"in\"", "http://", "ftp://", `kind = "sim"`, `kind = "sim"`+"\npoll = \"0s\"").Replace(minimal) +
		"[log]\nlevel = \"loud\"\n"
	_, err := config.Parse("gateagent.toml", []byte(text))
	if err == nil || !strings.HasPrefix(err.Error(), "config: gateagent.toml: ") {
		t.Fatalf("got %v", err)
	}
	for _, key := range []string{"gate.direction", "feed.url", "hw.poll", "log.level"} {
		if !strings.Contains("\n"+err.Error(), "\n"+key+": ") && !strings.Contains(err.Error(), " "+key+": ") {
			t.Errorf("%s not reported: %v", key, err)
		}
	}
}

// TestFileSizeLimit: a file of MaxFileSize bytes is read; one byte more is
// refused before it is parsed.
func TestFileSizeLimit(t *testing.T) {
	src := minimal + "#"
	src += strings.Repeat("x", config.MaxFileSize-len(src)-1) + "\n"
	if c, err := config.Load(write(t, src)); err != nil || c.Gate.ID != "G1" {
		t.Fatalf("a file of exactly MaxFileSize bytes: %v", err)
	}
	for _, read := range []func() (*config.Config, error){
		func() (*config.Config, error) { return config.Load(write(t, src+"\n")) },
		func() (*config.Config, error) { return config.Parse("gateagent.toml", []byte(src+"\n")) },
	} {
		if c, err := read(); c != nil || err == nil || !strings.Contains(err.Error(), "larger than 1048576 bytes") {
			t.Errorf("MaxFileSize+1 bytes: %v, %v", c, err)
		}
	}
}

// TestKeysFromTags: Keys follows Config's toml tags, in declaration order,
// and every field of Config is read from a tag: go-toml would read an
// untagged field by its Go name.
func TestKeysFromTags(t *testing.T) {
	keys := config.Keys()
	if want := []string{"version", "gate.id", "gate.direction", "gate.cache", "feed.url"}; !slices.Equal(keys[:5], want) {
		t.Errorf("Keys starts %q, want %q", keys[:5], want)
	}
	if !slices.Contains(keys, "hw.relay.active_low") || !slices.Contains(keys, "timing.alarm") || slices.Contains(keys, "hw.relay") {
		t.Errorf("Keys = %q", keys)
	}
	var check func(t reflect.Type, path string)
	check = func(rt reflect.Type, path string) {
		for i := range rt.NumField() {
			f := rt.Field(i)
			name := f.Tag.Get("toml")
			if name == "" || strings.Contains(name, ",") {
				t.Errorf("%s%s has no plain toml tag", path, f.Name)
				continue
			}
			switch f.Type.Kind() {
			case reflect.Struct:
				check(f.Type, path+name+".")
			case reflect.String, reflect.Bool, reflect.Int, reflect.Int64, reflect.Float64:
			case reflect.Slice:
				if f.Type.Elem().Kind() != reflect.String {
					t.Errorf("%s%s: the messages know no %s", path, name, f.Type)
				}
			default:
				t.Errorf("%s%s: the messages know no %s", path, name, f.Type)
			}
		}
	}
	check(reflect.TypeFor[config.Config](), "")
}

// TestTooManyKeysRefused: a file of thousands of keys is refused before
// go-toml reads it (its duplicate-key check takes time in the square of
// their number); banners of '=' in comments do not count.
func TestTooManyKeysRefused(t *testing.T) {
	var b strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&b, "k%d = 1\n", i)
	}
	c, err := config.Parse("gateagent.toml", []byte(b.String()))
	if c != nil || err == nil || !strings.Contains(err.Error(), "more than 4096: a gate's config sets about 60 keys; is it the right file?") {
		t.Errorf("20000 keys: %v", err)
	}
	banner := "# " + strings.Repeat("=", 70) + "\n"
	if _, err := config.Parse("gateagent.toml", []byte(strings.Repeat(banner, 100)+minimal)); err != nil {
		t.Errorf("7000 '=' in comments: %v", err)
	}
}

// TestManyUnknownKeysListedShort: more unknown keys than a technician
// reads are counted, with a few of them, not each given its line.
func TestManyUnknownKeysListedShort(t *testing.T) {
	var b strings.Builder
	b.WriteString(minimal)
	for i := range 1000 {
		fmt.Fprintf(&b, "k%03d = 1\n", i)
	}
	_, err := config.Parse("gateagent.toml", []byte(b.String()))
	want := "config: gateagent.toml: 1000 unknown keys or sections, such as hw.k000, hw.k001, hw.k002, hw.k003, hw.k004: is it the right file?"
	if err == nil || err.Error() != want {
		t.Errorf("got  %v\nwant %s", err, want)
	}
	// Up to 20 places, each is listed with its line.
	_, err = config.Parse("gateagent.toml", []byte(minimal+"[timing]\nx.y = 1\na = 1\nb = 2\n"))
	if fes := fileErrors(err); len(fes) != 3 || fes[0].Line != 12 || fes[2].Key != "timing.b" {
		t.Errorf("three unknown keys: %v", err)
	}
}

// TestLongNamesCut: a key of junk thousands of bytes long is cut short in
// the message.
func TestLongNamesCut(t *testing.T) {
	long := strings.Repeat("k", 5000)
	_, err := config.Parse("gateagent.toml", []byte("version = 1\n"+long+" = \""+long+"\"\n"))
	fes := fileErrors(err)
	if len(fes) != 1 || fes[0].Key != long || fes[0].Line != 2 || len(err.Error()) > 300 {
		t.Errorf("got %d errors, %d bytes: %.300v", len(fes), len(err.Error()), err)
	}
	_, err = config.Parse("gateagent.toml", []byte("version = 1\n[gate]\nid = 1\ndirection = [\""+long+"\", 2]\n"))
	if err == nil || len(err.Error()) > 300 {
		t.Errorf("%d bytes: %.300v", len(err.Error()), err)
	}
}

// TestUnknownKeysWithATypeError: a value of the wrong type does not hide
// the unknown keys: all are reported, in line order.
func TestUnknownKeysWithATypeError(t *testing.T) {
	text := "version = 1\n[gate]\nid = \"G\"\ndirecton = \"exit\"\n[feed]\ninterval = 10\n[hw.relay]\npinn = \"x\"\n"
	_, err := config.Parse("gateagent.toml", []byte(text))
	fes := fileErrors(err)
	var got []string
	for _, fe := range fes {
		got = append(got, fmt.Sprintf("%d %s", fe.Line, fe.Key))
	}
	if want := []string{"4 gate.directon", "6 feed.interval", "8 hw.relay.pinn"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q: %v", got, want, err)
	}
}
