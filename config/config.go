// Package config is the gate's configuration: its types, its defaults, and
// the reading of its file, a versioned, strict TOML file (read with
// github.com/pelletier/go-toml/v2) in which an unknown key is an error that
// names its line, so a typo never leaves a default silently in force.
// configs/gateagent.example.toml documents every option.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gateagent/feed"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/internal/instance"
	"gateagent/internal/regfile"
	"gateagent/keysync"
	"gateagent/scanner"
	"gateagent/verify"
)

// Version is the config format this agent reads.
const Version = 1

// MaxFileSize bounds the config file.
const MaxFileSize = 1 << 20

// MaxMarks bounds the '=' and '[' of the file outside comment lines, and so
// its keys and section headers: go-toml checks that each key is new in its
// table by comparing it with the others, which takes seconds for tens of
// thousands of keys.
const MaxMarks = 4096

// Config is the whole configuration of one gate. Read it with Load or
// Parse: the file writes its durations as strings ("10s"), which go-toml
// alone would not read into a time.Duration.
type Config struct {
	Version int        `toml:"version"`
	Gate    Gate       `toml:"gate"`
	Feed    Feed       `toml:"feed"`
	Verify  Verify     `toml:"verify"`
	Scanner Scanner    `toml:"scanner"`
	HW      HW         `toml:"hw"`
	Timing  Timing     `toml:"timing"`
	Control Control    `toml:"control"`
	Station Station    `toml:"station"`
	Log     Log        `toml:"log"`
	Keys    KeySources `toml:"keys"`
	Storage Storage    `toml:"storage"`
}

// Gate names the gate and where it keeps its state.
type Gate struct {
	ID        string `toml:"id"`
	Direction string `toml:"direction"`
	Cache     string `toml:"cache"`
}

// Feed is the key feed from the issuer.
type Feed struct {
	URL             string        `toml:"url"`
	TrustedKeys     []string      `toml:"trusted_keys"`
	Interval        time.Duration `toml:"interval"`
	RefuseWhenStale bool          `toml:"refuse_when_stale"`
	CAFile          string        `toml:"ca_file"`
	CertFile        string        `toml:"cert_file"`
	KeyFile         string        `toml:"key_file"`
	ServerName      string        `toml:"server_name"`
}

// Verify is what the gate accepts.
type Verify struct {
	MaxPastSteps   int           `toml:"max_past_steps"`
	MaxFutureSteps int           `toml:"max_future_steps"`
	ExitGrace      time.Duration `toml:"exit_grace"`
	PassbackWindow time.Duration `toml:"passback_window"`
}

// Scanner is where scans come from.
type Scanner struct {
	Kind         string        `toml:"kind"`
	Port         string        `toml:"port"`
	Baud         int           `toml:"baud"`
	Parity       string        `toml:"parity"`
	DataBits     int           `toml:"data_bits"`
	StopBits     int           `toml:"stop_bits"`
	Terminator   string        `toml:"terminator"`
	MaxLine      int           `toml:"max_line"`
	RepeatWindow time.Duration `toml:"repeat_window"`
	ImageDir     string        `toml:"image_dir"`
	TriggerPulse time.Duration `toml:"trigger_pulse"`
}

// HW is the gate's hardware: its kind and, for GPIO, each line's wiring.
type HW struct {
	Kind      string        `toml:"kind"`
	Debounce  time.Duration `toml:"debounce"`
	Poll      time.Duration `toml:"poll"`
	Relay     hw.Line       `toml:"relay"`
	Green     hw.Line       `toml:"green"`
	Red       hw.Line       `toml:"red"`
	Buzzer    hw.Line       `toml:"buzzer"`
	Passage   hw.Line       `toml:"passage"`
	Emergency hw.Line       `toml:"emergency"`
	Approach  hw.Line       `toml:"approach"`
	Trigger   hw.Line       `toml:"trigger"`
}

// Timing is how long the gate holds each state (see gate.Timing).
type Timing struct {
	Pulse       time.Duration `toml:"pulse"`
	PassTimeout time.Duration `toml:"pass_timeout"`
	PassMax     time.Duration `toml:"pass_max"`
	Deny        time.Duration `toml:"deny"`
	Alarm       time.Duration `toml:"alarm"`
}

// Control is how technicians and monitoring reach the running agent.
type Control struct {
	// Socket is the control socket (a Unix socket, mode 0660): diag,
	// status and metrics. Its directory must exist (systemd's
	// RuntimeDirectory=gateagent makes /run/gateagent).
	Socket string `toml:"socket"`
	// Metrics, when set, also serves /healthz, /status and /metrics (read
	// only) over HTTP on this loopback address, for a Prometheus scraper.
	Metrics string `toml:"metrics"`
}

// Log is the agent's logging.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Default returns the defaults every file starts from: each package's own.
func Default() Config {
	p := verify.DefaultPolicy(verify.Entry)
	t := gate.DefaultTiming()
	return Config{
		Gate: Gate{Direction: "entry", Cache: "/var/lib/gateagent/cache.db"},
		Feed: Feed{Interval: 10 * time.Second},
		Verify: Verify{MaxPastSteps: int(p.MaxPastSteps), MaxFutureSteps: int(p.MaxFutureSteps),
			PassbackWindow: p.PassbackWindow},
		Scanner: Scanner{Kind: "serial", Baud: scanner.DefaultBaud, Parity: "none", DataBits: 8, StopBits: 1,
			Terminator: scanner.Auto.String(), MaxLine: scanner.DefaultMaxLine, RepeatWindow: scanner.DefaultRepeatWindow,
			TriggerPulse: 500 * time.Millisecond},
		HW:      HW{Kind: "gpio", Debounce: hw.DefaultDebounce, Poll: hw.DefaultPoll},
		Timing:  Timing{Pulse: t.Pulse, PassTimeout: t.PassTimeout, PassMax: t.PassMax, Deny: t.Deny, Alarm: t.Alarm},
		Control: Control{Socket: DefaultSocket},
		Station: defaultStation(),
		Log:     Log{Level: "info", Format: "text"},
		Keys:    defaultKeys(),
		Storage: defaultStorage(),
	}
}

// DefaultSocket is where the agent's control socket is unless the config
// says otherwise; `gateagent diag` looks there first.
const DefaultSocket = "/run/gateagent/control.sock"

// Load reads and checks the config file at path.
func Load(path string) (*Config, error) {
	f, _, err := regfile.Open(path) // a FIFO in its place must not block
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", path, err)
	}
	return Parse(path, src)
}

// Parse decodes and checks a config file's contents; name is the file's,
// for messages. A file over MaxFileSize bytes or MaxMarks keys is refused
// unread. A problem in the file is a *FileError, or errors.Join of several
// (every unknown key at once; any other problem of the file alone, as
// go-toml stops at the first); then Validate's errors, all at once. On
// error it returns no config.
func Parse(name string, src []byte) (*Config, error) {
	if len(src) > MaxFileSize {
		return nil, fmt.Errorf("config: %s is larger than %d bytes: is it the right file?", name, MaxFileSize)
	}
	if n := marks(src); n > MaxMarks {
		return nil, fmt.Errorf("config: %s has %d '=' and '[' outside comments, more than %d: a gate's config sets about 60 keys; is it the right file?", name, n, MaxMarks)
	}
	c := Default()
	c.Version = 0
	if err := decode(name, src, &c); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	return &c, nil
}

// Validate checks every value, so the agent refuses to start on a config
// it would misread; each message names the key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	switch {
	case c.Version == 0:
		bad("version", "missing: the file must start with version = %d", Version)
	case c.Version != Version:
		bad("version", "%d is not a version this agent reads (it reads %d): use the example config of this release", c.Version, Version)
	}
	if c.Gate.ID == "" || len(c.Gate.ID) > 64 || strings.ContainsAny(c.Gate.ID, " \t\r\n\"") {
		bad("gate.id", "%q: give the gate a name of 1 to 64 characters without spaces or quotes", c.Gate.ID)
	}
	if _, err := verify.ParseDirection(c.Gate.Direction); err != nil {
		bad("gate.direction", "%q: use entry or exit", c.Gate.Direction)
	}
	if c.Gate.Cache == "" {
		bad("gate.cache", "empty: give the path of the cache file (e.g. /var/lib/gateagent/cache.db)")
	} else if b := filepath.Base(c.Gate.Cache); b == "journal" || b == "journal.db" {
		bad("gate.cache", "%q: %s is the name of the journal the agent keeps beside the cache: name the cache otherwise (e.g. cache.db)", c.Gate.Cache, b)
	}
	if u, err := url.Parse(c.Feed.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("feed.url", "%q: give the issuer's http:// or https:// address", c.Feed.URL)
	}
	if _, err := c.Keyring(); err != nil {
		bad("feed.trusted_keys", "%v", err)
	}
	if c.Feed.Interval < time.Second || c.Feed.Interval > time.Hour {
		bad("feed.interval", "%v: use 1s to 1h", c.Feed.Interval)
	}
	if (c.Feed.CertFile == "") != (c.Feed.KeyFile == "") {
		bad("feed.cert_file", "cert_file and key_file come together: set both for a client certificate, or neither")
	}
	if _, err := c.Policy(); err != nil {
		bad("verify", "%v", err)
	}
	switch c.Scanner.Kind {
	case "serial":
		if _, err := c.SerialConfig(); err != nil {
			bad("scanner", "%v", err)
		}
	case "images":
		if c.Scanner.ImageDir == "" {
			bad("scanner.image_dir", "empty: scanner.kind = \"images\" needs the directory the camera writes frames to")
		}
	default:
		bad("scanner.kind", "%q: use serial or images", c.Scanner.Kind)
	}
	if c.Scanner.TriggerPulse <= 0 || c.Scanner.TriggerPulse > 10*time.Second {
		bad("scanner.trigger_pulse", "%v: use 1ms to 10s", c.Scanner.TriggerPulse)
	}
	switch c.HW.Kind {
	case "gpio":
		for _, l := range []struct {
			key  string
			line hw.Line
		}{{"relay", c.HW.Relay}, {"green", c.HW.Green}, {"red", c.HW.Red}, {"buzzer", c.HW.Buzzer}, {"passage", c.HW.Passage}} {
			if l.line.Pin == "" {
				bad("hw."+l.key+".pin", "empty: every gate needs its %s line wired", l.key)
			}
		}
		if (c.HW.Approach.Pin == "") != (c.HW.Trigger.Pin == "") {
			bad("hw.trigger.pin", "approach and trigger come together: set both hw.approach.pin and hw.trigger.pin, or neither")
		}
		for key, l := range map[string]hw.Line{"passage": c.HW.Passage, "emergency": c.HW.Emergency, "approach": c.HW.Approach} {
			if _, err := hw.ParsePull(l.Pull); err != nil {
				bad("hw."+key+".pull", "%q: use none, up or down", l.Pull)
			}
		}
	case "sim":
	default:
		bad("hw.kind", "%q: use gpio (the board's pins) or sim (simulated, for bench tests)", c.HW.Kind)
	}
	if c.HW.Debounce < 0 || c.HW.Debounce > time.Second {
		bad("hw.debounce", "%v: use 0s (off) to 1s", c.HW.Debounce)
	}
	if c.HW.Poll < time.Millisecond || c.HW.Poll > time.Second {
		bad("hw.poll", "%v: use 1ms to 1s", c.HW.Poll)
	}
	// The controller reads a zero timing as its default; in the file every
	// timing but pulse is explicit, so zero is a mistake, not "default".
	for key, d := range map[string]time.Duration{"timing.pass_timeout": c.Timing.PassTimeout,
		"timing.pass_max": c.Timing.PassMax, "timing.deny": c.Timing.Deny, "timing.alarm": c.Timing.Alarm} {
		if d <= 0 {
			bad(key, "%v: must be more than 0 (see the example config for its range)", d)
		}
	}
	if err := c.GateTiming().Validate(); err != nil {
		bad("timing", "%v", err)
	}
	if c.Control.Socket == "" || !strings.HasPrefix(c.Control.Socket, "/") || len(c.Control.Socket) > 100 {
		bad("control.socket", "%q: give an absolute path of at most 100 bytes (e.g. %s)", c.Control.Socket, DefaultSocket)
	}
	if c.Control.Metrics != "" {
		if err := loopback(c.Control.Metrics); err != nil {
			bad("control.metrics", "%q: %v", c.Control.Metrics, err)
		}
	}
	c.validateStation(bad)
	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "%q: use text or json", c.Log.Format)
	}
	c.validateKeys(bad)
	c.validateStorage(bad)
	return errors.Join(errs...)
}

// loopback checks that addr is host:port on a loopback address: metrics
// and status are for the board's own scraper, never the station network.
func loopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, e.g. 127.0.0.1:9750")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("port %q: use 1 to 65535", port)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("host %q is not a loopback address: use 127.0.0.1 or [::1] (status and metrics are not served to the network)", host)
	}
	return nil
}

// Keyring returns the trusted issuer keys.
func (c *Config) Keyring() (feed.Keyring, error) {
	if len(c.Feed.TrustedKeys) == 0 {
		return nil, errors.New("empty: add the issuer's public key as printed by `issuer pubkey` (\"ID:BASE64\")")
	}
	var keys []feed.TrustedKey
	for _, s := range c.Feed.TrustedKeys {
		k, err := feed.ParseTrustedKey(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return feed.NewKeyring(keys...)
}

// Direction is the gate's direction.
func (c *Config) Direction() verify.Direction {
	d, _ := verify.ParseDirection(c.Gate.Direction)
	return d
}

// Policy is what the verifier accepts.
func (c *Config) Policy() (verify.Policy, error) {
	v := c.Verify
	if v.MaxPastSteps < 0 || v.MaxFutureSteps < 0 || v.MaxPastSteps > verify.MaxStepWindow || v.MaxFutureSteps > verify.MaxStepWindow {
		return verify.Policy{}, fmt.Errorf("max_past_steps %d / max_future_steps %d: use 0 to %d", v.MaxPastSteps, v.MaxFutureSteps, verify.MaxStepWindow)
	}
	p := verify.Policy{MaxPastSteps: uint32(v.MaxPastSteps), MaxFutureSteps: uint32(v.MaxFutureSteps),
		ExitGrace: v.ExitGrace, PassbackWindow: v.PassbackWindow, Direction: c.Direction()}
	return p, p.Validate()
}

// SerialConfig is the serial scanner's settings.
func (c *Config) SerialConfig() (scanner.Config, error) {
	s := c.Scanner
	term, err := scanner.ParseTerminator(s.Terminator)
	if err != nil {
		return scanner.Config{}, fmt.Errorf("terminator: %w", err)
	}
	sc := scanner.Config{Port: s.Port, Baud: s.Baud, Parity: s.Parity, DataBits: s.DataBits, StopBits: s.StopBits,
		Terminator: term, MaxLine: s.MaxLine, RepeatWindow: s.RepeatWindow}
	return sc, sc.Validate()
}

// LockFile is the gate's single-instance lock (see internal/instance): in
// the state directory, beside the cache file.
func (c *Config) LockFile() string { return instance.PathFor(c.Gate.Cache) }

// TLSOptions are how the gate reaches an HTTPS issuer.
func (c *Config) TLSOptions() keysync.TLSOptions {
	f := c.Feed
	return keysync.TLSOptions{CAFile: f.CAFile, CertFile: f.CertFile, KeyFile: f.KeyFile, ServerName: f.ServerName}
}

// Pins is the GPIO wiring.
func (c *Config) Pins() hw.Pins {
	h := c.HW
	d := h.Debounce
	if d == 0 {
		d = -1 // 0 in the file means off; hw reads 0 as its default
	}
	return hw.Pins{Relay: h.Relay, Green: h.Green, Red: h.Red, Buzzer: h.Buzzer, Trigger: h.Trigger,
		Passage: h.Passage, Emergency: h.Emergency, Approach: h.Approach, Debounce: d, Poll: h.Poll}
}

// GateTiming is the controller's timing.
func (c *Config) GateTiming() gate.Timing {
	t := c.Timing
	return gate.Timing{Pulse: t.Pulse, PassTimeout: t.PassTimeout, PassMax: t.PassMax, Deny: t.Deny, Alarm: t.Alarm}
}

// ParseLevel reads a log level: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: use debug, info, warn or error", s)
}
