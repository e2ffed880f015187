package scanner

import (
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{Port: "/dev/gate-scanner"}.WithDefaults()
	want := Config{Port: "/dev/gate-scanner", Baud: 9600, Parity: "none", DataBits: 8, StopBits: 1,
		Terminator: Auto, MaxLine: 512, MinBackoff: 250 * time.Millisecond, MaxBackoff: 5 * time.Second}
	if c != want {
		t.Fatalf("defaults\n got %+v\nwant %+v", c, want)
	}
	s, err := NewSerial(Config{Port: "/dev/gate-scanner", Parity: "EVEN", RepeatWindow: DefaultRepeatWindow}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Config(); got.Parity != "even" || got.Baud != 9600 || got.RepeatWindow != 2*time.Second {
		t.Fatalf("NewSerial config %+v", got)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Port: "/dev/gate-scanner"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("minimal config refused: %v", err)
	}
	for _, c := range []Config{
		{Port: "/dev/ttyS1", Baud: 115200, Parity: "odd", DataBits: 7, StopBits: 2, Terminator: CRLF,
			MaxLine: 64 << 10, RepeatWindow: 0, MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond},
		{Port: "/dev/ttyUSB0", Parity: "None", Terminator: LF, MaxLine: 1},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v refused: %v", c, err)
		}
	}
	for _, tc := range []struct {
		mod  func(*Config)
		want string // in the error
	}{
		{func(c *Config) { c.Port = "" }, "set scanner.port"},
		{func(c *Config) { c.Port = "  " }, "port is empty"},
		{func(c *Config) { c.Baud = -9600 }, "baud -9600: must be positive"},
		{func(c *Config) { c.Parity = "mark" }, `parity "mark" unknown: use none, even or odd`},
		{func(c *Config) { c.DataBits = 5 }, "data bits 5: use 7 or 8"},
		{func(c *Config) { c.DataBits = -1 }, "data bits -1"},
		{func(c *Config) { c.StopBits = 3 }, "stop bits 3: use 1 or 2"},
		{func(c *Config) { c.Terminator = 7 }, "terminator 7 unknown: use auto, cr, lf or crlf"},
		{func(c *Config) { c.MaxLine = 64<<10 + 1 }, "max line 65537 bytes: use 1 to 65536"},
		{func(c *Config) { c.MaxLine = -1 }, "max line -1"},
		{func(c *Config) { c.RepeatWindow = -time.Second }, "repeat window -1s is negative"},
		{func(c *Config) { c.MinBackoff = 10 * time.Second }, "backoff 10s..5s"},
		{func(c *Config) { c.MaxBackoff = -1 }, "backoff"},
	} {
		c := ok
		tc.mod(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%+v accepted, want an error with %q", c, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "scanner: ") {
			t.Errorf("%+v: error %q, want %q in it", c, err, tc.want)
		}
		if _, err := NewSerial(c, Options{}); err == nil {
			t.Errorf("NewSerial accepted %+v", c)
		}
	}
	// Every problem is reported at once.
	err := Config{Parity: "x", DataBits: 9}.Validate()
	for _, want := range []string{"port is empty", "parity", "data bits 9"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}
