package conf

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

// level is a TextUnmarshaler.
type level int

var errLevel = errors.New("level must be low or high")

func (l *level) UnmarshalText(b []byte) error {
	switch string(b) {
	case "low":
		*l = 1
	case "high":
		*l = 2
	default:
		return errLevel
	}
	return nil
}

type name string

type gateConf struct {
	ID      string        `conf:"id"`
	Lanes   []string      `conf:"lanes"`
	Codes   []int         `conf:"codes"`
	OpenFor time.Duration `conf:"open_for"`
	Addr    netip.Addr    `conf:"addr"`
	Level   *level        `conf:"level"`
	Alias   name          `conf:"alias"`
}

type relay struct {
	Pin       uint8         `conf:"pin"`
	ActiveLow bool          `conf:"active_low"`
	Pulse     time.Duration `conf:"pulse"`
}

type reader struct {
	Port  string `conf:"port"`
	Baud  int    `conf:"baud"`
	Level level  `conf:"level"`
}

type hwConf struct {
	Name   string  `conf:"name"`
	Relay  relay   `conf:"relay"`
	Reader *reader `conf:"reader"`
}

type limits struct {
	I     int      `conf:"i"`
	I8    int8     `conf:"i8"`
	I16   int16    `conf:"i16"`
	I32   int32    `conf:"i32"`
	I64   int64    `conf:"i64"`
	U     uint     `conf:"u"`
	U8    uint8    `conf:"u8"`
	U16   uint16   `conf:"u16"`
	U32   uint32   `conf:"u32"`
	U64   uint64   `conf:"u64"`
	Small []int8   `conf:"small"`
	Ports []uint16 `conf:"ports"`
}

type node struct {
	V    int   `conf:"v"`
	Next *node `conf:"next"`
}

// config has a field of every supported type.
type config struct {
	Version int      `conf:"version"`
	Gate    gateConf `conf:"gate"`
	HW      hwConf   `conf:"hw"`
	Limits  limits   `conf:"limits"`
	Tree    *node    `conf:"tree"`
	Secret  string   // no tag: not settable
	Skipped string   `conf:"-"`
}

func defaults() config {
	return config{
		Version: 1,
		Gate:    gateConf{ID: "default", OpenFor: 5 * time.Second, Lanes: []string{"main"}},
		HW:      hwConf{Relay: relay{Pin: 17, Pulse: time.Second}, Reader: &reader{Port: "/dev/ttyS0", Baud: 9600}},
		Secret:  "secret",
		Skipped: "skipped",
	}
}

const fullExample = `# gateagent test configuration
version = 2 # a comment after a value

# a comment before a header
[gate]   # a comment after a header
	id = "GZN-E07"	# tabs
lanes = ["north", 'south',]  # a literal string, a trailing comma
codes = [ -1, +2, 3_000 ]
open_for = "1m30s"
addr = "192.0.2.7"
level = "high"
alias = 'C:\gate\ # "not" a comment'

   # an indented comment
[ hw ]
name = "q\" b\\ n\n t\t r\r u\u00e9 # not a comment ' é"
[hw.relay]
pin = 255
active_low = true
pulse = "250ms"

[hw . reader]
port = "/dev/gate-scanner"
baud = 115_200
level = "low"

[limits]
i = -2147483648
i8 = -128
i16 = 32767
i32 = -2147483648
i64 = 9223372036854775807
u = 4294967295
u8 = 0
u16 = 65535
u32 = 4294967295
u64 = 18_446_744_073_709_551_615
small = []
ports = [80, 443, 0]

[tree.next.next.next.next.next.next.next]
v = 8
[tree]
v = 1
`

func fullWant() config {
	c := defaults()
	c.Version = 2
	high := level(2)
	c.Gate = gateConf{
		ID:      "GZN-E07",
		Lanes:   []string{"north", "south"},
		Codes:   []int{-1, 2, 3000},
		OpenFor: 90 * time.Second,
		Addr:    netip.MustParseAddr("192.0.2.7"),
		Level:   &high,
		Alias:   `C:\gate\ # "not" a comment`,
	}
	c.HW.Name = "q\" b\\ n\n t\t r\r u\u00e9 # not a comment ' é"
	c.HW.Relay = relay{Pin: 255, ActiveLow: true, Pulse: 250 * time.Millisecond}
	c.HW.Reader = &reader{Port: "/dev/gate-scanner", Baud: 115200, Level: 1}
	c.Limits = limits{
		I: -2147483648, I8: -128, I16: 32767, I32: -2147483648, I64: 9223372036854775807,
		U: 4294967295, U8: 0, U16: 65535, U32: 4294967295, U64: 18446744073709551615,
		Small: []int8{}, Ports: []uint16{80, 443, 0},
	}
	n := &node{V: 8}
	for range 6 {
		n = &node{Next: n}
	}
	c.Tree = &node{V: 1, Next: n}
	return c
}

func TestDecodeFull(t *testing.T) {
	for _, tc := range []struct{ name, src string }{
		{"LF", fullExample},
		{"CRLF", strings.ReplaceAll(fullExample, "\n", "\r\n")},
		{"BOM and no final newline", "\ufeff" + strings.TrimSuffix(fullExample, "\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			oldReader := c.HW.Reader
			if err := Decode("gateagent.toml", []byte(tc.src), &c); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if want := fullWant(); !reflect.DeepEqual(c, want) {
				t.Errorf("got  %+v\nwant %+v", c, want)
			}
			if *oldReader != *defaults().HW.Reader {
				t.Errorf("the caller's pointer section was modified: %+v", *oldReader)
			}
		})
	}
}

func TestDecodeKeepsDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      func(*config)
	}{
		{"empty file", "", func(*config) {}},
		{"comments only", "# nothing\n\n   # here\r\n", func(*config) {}},
		{"one key", "[hw.relay]\npin = 4\n", func(c *config) { c.HW.Relay.Pin = 4 }},
		{"empty section", "[gate]\n[hw.reader]\n", func(*config) {}},
		{"nil pointer section allocated", "[tree]\n", func(c *config) { c.Tree = &node{} }},
		{"parent allocated by subsection", "[tree.next]\nv = 3\n", func(c *config) { c.Tree = &node{Next: &node{V: 3}} }},
		{"header after its subsection", "[hw.relay]\npin = 1\n[hw]\nname = \"x\"\n", func(c *config) { c.HW.Relay.Pin = 1; c.HW.Name = "x" }},
		{"pointer section keeps its defaults", "[hw.reader]\nbaud = 19200\n", func(c *config) { c.HW.Reader = &reader{Port: "/dev/ttyS0", Baud: 19200} }},
		{"empty array replaces", "[gate]\nlanes = []\n", func(c *config) { c.Gate.Lanes = []string{} }},
		{"minus zero into uint", "[limits]\nu8 = -0\n", func(*config) {}},
		{"zero duration", "[gate]\nopen_for = \"0s\"\n", func(c *config) { c.Gate.OpenFor = 0 }},
		{"empty strings", "[gate]\nid = \"\"\nalias = ''\n", func(c *config) { c.Gate.ID = "" }},
		{"eight levels deep", "[tree.next.next.next.next.next.next.next]\nv = 1\n", func(c *config) {
			n := &node{V: 1}
			for range 7 {
				n = &node{Next: n}
			}
			c.Tree = n
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			if err := Decode("gateagent.toml", []byte(tc.src), &c); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := defaults()
			tc.want(&want)
			if !reflect.DeepEqual(c, want) {
				t.Errorf("got  %+v\nwant %+v", c, want)
			}
		})
	}
}

// errorCase is a file with exactly one problem.
type errorCase struct {
	name, src string
	line      int
	key       string
	msg       string // a substring of Msg, or all of it if exact
	exact     bool
}

var errorCases = []errorCase{
	// Unknown keys and sections.
	{"unknown key", "[hw.relay]\npin = 3\npinn = 3\n", 3, "hw.relay.pinn",
		"unknown key (known keys in [hw.relay]: active_low, pin, pulse)", true},
	{"unknown top-level key", "verison = 1\n", 1, "verison",
		"unknown key (known keys at the top level: version)", true},
	{"unknown key after a subsection", "[tree.next]\nv = 1\n[hw]\nrelay_pin = 1", 4, "hw.relay_pin",
		"unknown key (known keys in [hw]: name)", true},
	{"untagged field is not settable", "Secret = \"x\"\n", 1, "Secret", "unknown key", false},
	{"untagged field by lower-case name", "secret = \"x\"\n", 1, "secret", "unknown key", false},
	{"skipped field", "skipped = \"x\"\n", 1, "skipped", "unknown key", false},
	{"unknown section", "version = 1\n\n[gat]\nid = \"x\"\n", 3, "gat",
		"unknown section (known sections at the top level: gate, hw, limits, tree)", true},
	{"unknown subsection", "[hw.rlay]\npin = 1\n", 1, "hw.rlay",
		"unknown section (known sections in [hw]: reader, relay)", true},
	{"unknown parent section", "[hx.relay]\n", 1, "hx", "unknown section", false},
	{"subsection of a section without any", "[hw.relay.x]\n", 1, "hw.relay.x",
		"unknown section (there are no sections in [hw.relay])", true},
	{"value for a section", "hw = 1\n", 1, "hw", "hw is a section, not a key: use a [hw] header", true},
	{"header for a key", "[version]\n", 1, "version",
		"version is a key, not a section: set it with version = ... under the top level", true},
	{"header below a key", "[gate.id.x]\n", 1, "gate.id", "id is a key, not a section", false},

	// Repeats.
	{"duplicate key", "[gate]\nid = \"a\"\n\nid = \"b\"\n", 4, "gate.id", "duplicate key (first set on line 2)", true},
	{"duplicate key with a bad value", "version = 1\nversion = x\n", 2, "version", "strings must be in quotes", false},
	{"duplicate top-level key", "version = 1\nversion = 1\n", 2, "version", "duplicate key (first set on line 1)", true},
	{"duplicate section", "[gate]\n[hw]\n[ gate ]\n", 3, "gate", "section [gate] is declared twice (first on line 1)", true},

	// Syntax.
	{"bare value", "[gate]\nid = bare\n", 2, "gate.id", `invalid value "bare": strings must be in quotes`, true},
	{"unterminated string", "[gate]\nid = \"abc\n", 2, "gate.id", "unterminated string", false},
	{"unterminated string after backslash", "[gate]\nid = \"abc\\", 2, "gate.id", "unterminated string", false},
	{"unterminated literal string", "[gate]\nid = 'abc\n", 2, "gate.id", "unterminated string", false},
	{"trailing garbage after a string", "[gate]\nid = \"a\" b\n", 2, "gate.id", `unexpected text after the value: "b"`, true},
	{"trailing garbage after an integer", "version = 1 2\n", 1, "version", "unexpected text after the value", false},
	{"trailing garbage after an array", "[gate]\nlanes = [] x\n", 2, "gate.lanes", "unexpected text after the value", false},
	{"trailing garbage after a header", "[gate] id = 1\n", 1, "", "unexpected text after the section header", false},
	{"missing value", "[gate]\nid =\n", 2, "gate.id", "missing value after =", true},
	{"missing value before a comment", "[gate]\nid = # x\n", 2, "gate.id", "missing value after =", true},
	{"missing =", "[gate]\nid \"x\"\n", 2, "gate.id", `expected = after the key, found "\"x\""`, true},
	{"key alone", "\nversion\n", 2, "version", "missing = after the key", true},
	{"missing key", "= 1\n", 1, "", "missing key before =", true},
	{"garbage line", "version = 1\n!!\n", 2, "", "expected key = value", false},
	{"non-ASCII key", "clé = 1\n", 1, "cl", "expected = after the key", false},
	{"dotted key", "gate.id = \"x\"\n", 1, "", `dotted keys such as "gate.id" are not supported`, false},
	{"quoted key", "\"version\" = 1\n", 1, "", "quoted keys are not supported", false},
	{"inline table", "gate = {id = \"x\"}\n", 1, "gate", "inline tables", false},
	{"array of tables", "[[gate]]\n", 1, "", "arrays of tables", false},
	{"multi-line basic string", "[gate]\nid = \"\"\"x\"\"\"\n", 2, "gate.id", "multi-line strings", false},
	{"multi-line literal string", "[gate]\nid = '''x'''\n", 2, "gate.id", "multi-line strings", false},
	{"empty header", "[]\n", 1, "", "empty section name", true},
	{"unterminated header", "[gate\n", 1, "", "unterminated section header: missing ]", true},
	{"header with empty part", "[gate.]\n", 1, "", "invalid section name", false},
	{"header with bad character", "[ga!te]\n", 1, "", "invalid section name", false},
	{"quoted header", "[\"gate\"]\n", 1, "", "quoted section names are not supported", true},
	{"nesting too deep", "[tree.next.next.next.next.next.next.next.next]\nv = 1\n", 1, "", "nested deeper than 8 levels", false},
	{"invalid escape", "[gate]\nid = \"a\\xb\"\n", 2, "gate.id", `invalid escape "\\x" in string`, false},
	{"invalid escape \\b", "[gate]\nid = \"\\b\"\n", 2, "gate.id", "invalid escape", false},
	{"invalid escape \\U", "[gate]\nid = \"\\U0001F600\"\n", 2, "gate.id", "invalid escape", false},
	{"short \\u escape", "[gate]\nid = \"\\u12\"\n", 2, "gate.id", `\u needs 4 hexadecimal digits`, false},
	{"surrogate \\u escape", "[gate]\nid = \"\\uD800\"\n", 2, "gate.id", "not a Unicode scalar value", false},
	{"control character in a string", "[gate]\nid = \"a\x01b\"\n", 2, "gate.id", "control character U+0001 in a string", false},
	{"lone CR in a string", "[gate]\nid = \"a\rb\"\n", 2, "gate.id", "control character U+000D", false},
	{"control character in a literal string", "[gate]\nid = 'a\x7fb'\n", 2, "gate.id", "control character U+007F", false},
	{"control character in a comment", "# a\x00b\n", 1, "", "control character U+0000 in a comment", true},
	{"invalid UTF-8", "version = 1\n[gate]\nid = \"\xff\"\n", 3, "", "invalid UTF-8 (byte 0xff at column 7): save the file as UTF-8", true},
	{"float", "version = 1.5\n", 1, "version", "floats are not supported", false},
	{"exponent", "version = 1e3\n", 1, "version", "floats are not supported", false},
	{"inf", "version = -inf\n", 1, "version", "floats are not supported", false},
	{"hexadecimal", "version = 0x10\n", 1, "version", "only decimal integers", false},
	{"leading zero", "version = 012\n", 1, "version", "leading zeros", false},
	{"double underscore", "version = 1__0\n", 1, "version", "misplaced _", false},
	{"trailing underscore", "version = 1_\n", 1, "version", "misplaced _", false},
	{"date", "version = 2026-01-02\n", 1, "version", "dates and times are not supported", false},
	{"capital boolean", "[hw.relay]\nactive_low = True\n", 2, "hw.relay.active_low", "lower case", false},
	{"unterminated array", "[gate]\ncodes = [1, 2\n", 2, "gate.codes", "unterminated array", false},
	{"array cut by a comment", "[gate]\ncodes = [1, # 2 ]\n", 2, "gate.codes", "unterminated array", false},
	{"array without commas", "[gate]\ncodes = [1 2]\n", 2, "gate.codes", `expected , or ] in the array, found "2]"`, true},
	{"array of only a comma", "[gate]\ncodes = [,]\n", 2, "gate.codes", "expected a value", false},
	{"array with two commas", "[gate]\ncodes = [1,,2]\n", 2, "gate.codes", "expected a value", false},
	{"mixed array", "[gate]\ncodes = [1, \"a\"]\n", 2, "gate.codes", "only strings or only integers", false},
	{"nested array", "[gate]\ncodes = [[1]]\n", 2, "gate.codes", "nested arrays", false},
	{"array of booleans", "[gate]\ncodes = [true]\n", 2, "gate.codes", "arrays of strings and arrays of integers", false},
	{"line too long", "version = 1\n# " + strings.Repeat("x", 64<<10) + "\n", 2, "", "the line is too long", false},

	// Types.
	{"string for an integer", "version = \"1\"\n", 1, "version", `expected an integer, got the string "1"`, true},
	{"array for an integer", "version = [1]\n", 1, "version", "expected an integer, got an array of integers", true},
	{"string for a bool", "[hw.relay]\nactive_low = \"yes\"\n", 2, "hw.relay.active_low", `expected true or false, got the string "yes"`, true},
	{"integer for a string", "[gate]\nid = 5\n", 2, "gate.id", "expected a string, got the integer 5", true},
	{"bool for a named string", "[gate]\nalias = false\n", 2, "gate.alias", "expected a string, got false", true},
	{"integer for a duration", "[gate]\nopen_for = 5\n", 2, "gate.open_for", `expected a string such as "250ms", got the integer 5`, true},
	{"duration without a unit", "[gate]\nopen_for = \"5\"\n", 2, "gate.open_for", `invalid duration "5"`, false},
	{"negative duration", "[hw.relay]\npulse = \"-1s\"\n", 2, "hw.relay.pulse", `duration "-1s" must not be negative`, true},
	{"integers for strings", "[gate]\nlanes = [1, 2]\n", 2, "gate.lanes", `expected an array of strings such as ["a", "b"], got an array of integers`, true},
	{"string for strings", "[gate]\nlanes = \"a\"\n", 2, "gate.lanes", "expected an array of strings", false},
	{"strings for integers", "[gate]\ncodes = [\"1\"]\n", 2, "gate.codes", "expected an array of integers such as [1, 2], got an array of strings", true},
	{"int8 overflow", "[limits]\ni8 = 128\n", 2, "limits.i8", "128 is out of range (must be between -128 and 127)", true},
	{"int8 underflow", "[limits]\ni8 = -129\n", 2, "limits.i8", "-129 is out of range (must be between -128 and 127)", true},
	{"uint16 overflow", "[limits]\nu16 = 65_536\n", 2, "limits.u16", "65_536 is out of range (must be between 0 and 65535)", true},
	{"negative uint", "[limits]\nu = -1\n", 2, "limits.u", "-1 is out of range (must be between 0", false},
	{"uint8 overflow", "[hw.relay]\npin = 256\n", 2, "hw.relay.pin", "256 is out of range (must be between 0 and 255)", true},
	{"int64 overflow", "[limits]\ni64 = 9223372036854775808\n", 2, "limits.i64",
		"9223372036854775808 is out of range (must be between -9223372036854775808 and 9223372036854775807)", true},
	{"int64 underflow", "[limits]\ni64 = -9223372036854775809\n", 2, "limits.i64", "out of range", false},
	{"uint64 overflow", "[limits]\nu64 = 18446744073709551616\n", 2, "limits.u64",
		"18446744073709551616 is out of range (must be between 0 and 18446744073709551615)", true},
	{"huge integer", "[limits]\nu64 = " + strings.Repeat("9", 100) + "\n", 2, "limits.u64", "out of range", false},
	{"array element overflow", "[limits]\nsmall = [1, 200]\n", 2, "limits.small", "element 2: 200 is out of range (must be between -128 and 127)", true},
	{"negative array element into uints", "[limits]\nports = [-1]\n", 2, "limits.ports", "element 1: -1 is out of range", false},
	{"TextUnmarshaler error", "[hw.reader]\nlevel = \"medium\"\n", 2, "hw.reader.level", `invalid value "medium": level must be low or high`, true},
	{"TextUnmarshaler pointer error", "[gate]\nlevel = \"x\"\n", 2, "gate.level", "level must be low or high", false},
	{"TextUnmarshaler given an integer", "[hw.reader]\nlevel = 1\n", 2, "hw.reader.level", "expected a string, got the integer 1", true},
	{"netip.Addr error", "[gate]\naddr = \"192.0.2\"\n", 2, "gate.addr", `invalid value "192.0.2": `, false},
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			c := defaults()
			err := Decode("gateagent.toml", []byte(tc.src), &c)
			var e *Error
			if !errors.As(err, &e) || err != error(e) {
				t.Fatalf("Decode = %v (%T), want one *Error", err, err)
			}
			if e.File != "gateagent.toml" || e.Line != tc.line || e.Key != tc.key {
				t.Errorf("got file %q line %d key %q, want line %d key %q (%v)", e.File, e.Line, e.Key, tc.line, tc.key, e)
			}
			if tc.exact && e.Msg != tc.msg || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got message %q, want %q", e.Msg, tc.msg)
			}
			if !reflect.DeepEqual(c, defaults()) {
				t.Errorf("Decode changed the struct on error: %+v", c)
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	for _, tc := range []struct {
		e    Error
		want string
	}{
		{Error{File: "gateagent.toml", Line: 12, Key: "hw.relay.pinn", Msg: "unknown key"}, "gateagent.toml:12: hw.relay.pinn: unknown key"},
		{Error{File: "/etc/gateagent/gateagent.toml", Line: 7, Msg: "empty section name"}, "/etc/gateagent/gateagent.toml:7: empty section name"},
		{Error{File: "g.toml", Msg: "too large"}, "g.toml: too large"},
		{Error{Line: 3, Key: "a", Msg: "bad"}, "line 3: a: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}

	c := defaults()
	err := Decode("/etc/gateagent/gateagent.toml", []byte("[hw.relay]\n\npinn = 3\n"), &c)
	want := "/etc/gateagent/gateagent.toml:3: hw.relay.pinn: unknown key (known keys in [hw.relay]: active_low, pin, pulse)"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func TestTextUnmarshalerErrorWrapped(t *testing.T) {
	c := defaults()
	err := Decode("gateagent.toml", []byte("\n[hw.reader]\nlevel = \"medium\"\n"), &c)
	if !errors.Is(err, errLevel) {
		t.Errorf("errors.Is(%v, errLevel) = false", err)
	}
	if want := `gateagent.toml:3: hw.reader.level: invalid value "medium": level must be low or high`; err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
	// Other errors wrap nothing.
	err = Decode("gateagent.toml", []byte("version = \"x\"\n"), &c)
	var e *Error
	if !errors.As(err, &e) || e.Unwrap() != nil {
		t.Errorf("got %v, want an *Error that wraps nothing", err)
	}
}

func TestDecodeSeveralErrors(t *testing.T) {
	src := "version = 1\n[gate]\nidd = \"x\"\nid = 5\n[hw.relay]\npin = 300\npin = 3\n"
	c := defaults()
	err := Decode("gateagent.toml", []byte(src), &c)
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Decode = %v (%T), want errors.Join", err, err)
	}
	want := []struct {
		line int
		key  string
	}{{3, "gate.idd"}, {4, "gate.id"}, {6, "hw.relay.pin"}, {7, "hw.relay.pin"}}
	errs := joined.Unwrap()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors, want %d: %v", len(errs), len(want), err)
	}
	for i, w := range want {
		e, ok := errs[i].(*Error)
		if !ok || e.Line != w.line || e.Key != w.key {
			t.Errorf("error %d = %v, want line %d key %s", i, errs[i], w.line, w.key)
		}
	}
	var first *Error
	if !errors.As(err, &first) || first.Line != 3 {
		t.Errorf("errors.As found %v, want the error of line 3", first)
	}
	if !reflect.DeepEqual(c, defaults()) {
		t.Errorf("Decode changed the struct on error: %+v", c)
	}
}

func TestDecodeTooManyErrors(t *testing.T) {
	src := strings.Repeat("typo = 1\n", 30)
	c := defaults()
	err := Decode("gateagent.toml", []byte(src), &c)
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Decode = %v (%T), want errors.Join", err, err)
	}
	errs := joined.Unwrap()
	if len(errs) != maxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(errs), maxErrors+1)
	}
	for i, err := range errs[:maxErrors] {
		if e := err.(*Error); e.Line != i+1 || e.Key != "typo" {
			t.Errorf("error %d: %v", i, e)
		}
	}
	if e := errs[maxErrors].(*Error); e.Line != maxErrors+1 || !strings.Contains(e.Msg, "too many errors") {
		t.Errorf("last error: %v", e)
	}
}

func TestDecodeSkipsKeysOfBadSections(t *testing.T) {
	for _, tc := range []struct {
		src  string
		line int
	}{
		{"[nope]\na = 1\nb = 2\n", 1},
		{"[gate\nidd = 1\n", 1},
		{"[gate]\n[\xff]\nidd = 1\n", 2},
		{"[gate]\n[gate]\nidd = 1\n", 2},
		{"[gate]\n[gate.id]\nidd = 1\n", 2},
		{"[gate]\n[" + strings.Repeat("x", maxLineLen) + "]\nidd = 1\n", 2},
	} {
		c := defaults()
		err := Decode("gateagent.toml", []byte(tc.src), &c)
		var e *Error
		if !errors.As(err, &e) || err != error(e) || e.Line != tc.line {
			t.Errorf("%.40q: got %v, want one error, on line %d", tc.src, err, tc.line)
		}
	}
}

func TestDecodeTooLarge(t *testing.T) {
	line := "# " + strings.Repeat("x", 1021) + "\n" // 1 KiB
	src := []byte(strings.Repeat(line, 1024))
	c := defaults()
	if err := Decode("gateagent.toml", src, &c); err != nil {
		t.Fatalf("a file of exactly 1 MiB: %v", err)
	}
	src = append(src, '\n')
	err := Decode("gateagent.toml", src, &c)
	var e *Error
	if !errors.As(err, &e) || e.Line != 0 || e.File != "gateagent.toml" {
		t.Fatalf("got %v, want an *Error for the whole file", err)
	}
	if want := "gateagent.toml: the file is too large (1048577 bytes; the limit is 1 MiB)"; err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
}

func TestDecodeAtomic(t *testing.T) {
	c := defaults()
	r := c.HW.Reader
	src := "version = 9\n[hw.reader]\nport = \"/dev/x\"\nlevel = \"high\"\n[gate]\nlanes = [\"a\"]\nopen_for = \"-1s\"\n"
	if err := Decode("gateagent.toml", []byte(src), &c); err == nil {
		t.Fatal("Decode succeeded, want an error")
	}
	if !reflect.DeepEqual(c, defaults()) || c.HW.Reader != r || *r != *defaults().HW.Reader {
		t.Errorf("Decode changed the struct on error: %+v, reader %+v", c, *c.HW.Reader)
	}
}

func TestDecodeBadTarget(t *testing.T) {
	var n int
	type withMap struct {
		M map[string]int `conf:"m"`
	}
	type unexported struct {
		x int `conf:"x"`
	}
	type dupTag struct {
		A int `conf:"a"`
		B int `conf:"a"`
	}
	type badTag struct {
		A int `conf:"a b"`
	}
	type emptyTag struct {
		A int `conf:""`
	}
	type deepBad struct {
		S struct {
			P *struct {
				F float64 `conf:"f"`
			} `conf:"p"`
		} `conf:"s"`
	}
	type durations struct {
		D []time.Duration `conf:"d"`
	}
	type ptrInt struct {
		P *int `conf:"p"`
	}
	for _, v := range []any{
		nil, n, &n, config{}, (*config)(nil),
		&withMap{}, &unexported{}, &dupTag{}, &badTag{}, &emptyTag{}, &deepBad{}, &durations{}, &ptrInt{},
	} {
		err := Decode("gateagent.toml", []byte("version = 1\n"), v)
		var e *Error
		if err == nil || errors.As(err, &e) || !strings.HasPrefix(err.Error(), "conf: ") {
			t.Errorf("Decode(%T) = %v, want a conf: programming error", v, err)
		}
		switch v.(type) {
		case config, *config:
			continue // fine for Keys
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Keys(%T) did not panic", v)
				}
			}()
			Keys(v)
		}()
	}
	_ = unexported{}.x
}

type keysConf struct {
	Version int    `conf:"version"`
	Hidden  string // no tag
	Gate    struct {
		ID string `conf:"id"`
	} `conf:"gate"`
	HW struct {
		Kind  string `conf:"kind"`
		Relay struct {
			Pin       string `conf:"pin"`
			ActiveLow bool   `conf:"active_low"`
		} `conf:"relay"`
		Reader *struct {
			Port string `conf:"port"`
		} `conf:"reader"`
		Poll time.Duration `conf:"poll"`
	} `conf:"hw"`
	Skip  int      `conf:"-"`
	Empty struct{} `conf:"empty"`
	Codes []int    `conf:"codes"`
}

func TestKeys(t *testing.T) {
	want := []string{"version", "gate.id", "hw.kind", "hw.relay.pin", "hw.relay.active_low", "hw.reader.port", "hw.poll", "codes"}
	for _, v := range []any{keysConf{}, &keysConf{}, (*keysConf)(nil)} {
		if got := Keys(v); !reflect.DeepEqual(got, want) {
			t.Errorf("Keys(%T) = %q, want %q", v, got, want)
		}
	}

	// A recursive type is followed down to the nesting limit.
	got := Keys(struct {
		Tree *node `conf:"tree"`
	}{})
	if len(got) != maxDepth || got[0] != "tree.v" || got[maxDepth-1] != "tree"+strings.Repeat(".next", maxDepth-1)+".v" {
		t.Errorf("Keys of a recursive type = %q", got)
	}

	// Every key of config can be set.
	for _, k := range Keys(&config{}) {
		i := strings.LastIndexByte(k, '.')
		src := k + " = 0\n"
		if i >= 0 {
			src = "[" + k[:i] + "]\n" + k[i+1:] + " = 0\n"
		}
		c := defaults()
		err := Decode("gateagent.toml", []byte(src), &c)
		var e *Error
		if errors.As(err, &e) && strings.Contains(e.Msg, "unknown") {
			t.Errorf("key %s from Keys is unknown to Decode: %v", k, err)
		}
	}
}

func TestDecodeConcurrent(t *testing.T) {
	done := make(chan config)
	for range 8 {
		go func() {
			c := defaults()
			if err := Decode("gateagent.toml", []byte(fullExample), &c); err != nil {
				t.Error(err)
			}
			done <- c
		}()
	}
	for range 8 {
		if c := <-done; !reflect.DeepEqual(c, fullWant()) {
			t.Errorf("got %+v", c)
		}
	}
}
