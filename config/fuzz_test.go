package config_test

import (
	"bytes"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"gateagent/config"
)

// FuzzParse: on any bytes Parse returns an error and no config, or a
// config that passes Validate; it never panics, and it says the same twice.
// Each problem of the file names the file, and a line of it or none.
func FuzzParse(f *testing.F) {
	if src, err := os.ReadFile(example); err == nil {
		f.Add(src)
	}
	f.Add([]byte(minimal))
	f.Add([]byte(strings.ReplaceAll(minimal, "\n", "\r\n")))
	for _, s := range []string{
		"version = 1\n[gate]\nid = \"G\"\ndirecton = \"exit\"\n",
		"version = 1\nfeed = { interval = 10 }\nhw.relay.pin = 'x'\n",
		"version = 1\n[feed]\ntrusted_keys = [\n \"a\",\n 1]\n",
		"Version = 1\n[[hw]]\n[gate.id]\n",
		minimal + "[timing]\ndeny = \"-1s\"\npulse = 1.5\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := config.Parse("f.toml", src)
		if err != nil {
			if c != nil {
				t.Fatalf("an error (%v) and a config", err)
			}
			for _, fe := range fileErrors(err) {
				if fe.File != "f.toml" || fe.Msg == "" || fe.Line < 0 || fe.Line > strings.Count(string(src), "\n")+1 {
					t.Fatalf("bad error %#v", fe)
				}
			}
		} else if verr := c.Validate(); verr != nil {
			t.Fatalf("Parse returned a config that does not validate: %v", verr)
		} else {
			// Every key of an accepted file is one of Keys, spelt alike.
			var doc map[string]any
			if err := toml.Unmarshal(bytes.TrimPrefix(src, []byte("\ufeff")), &doc); err != nil {
				t.Fatalf("Parse accepted what go-toml refuses: %v", err)
			}
			var check func(m map[string]any, prefix string)
			check = func(m map[string]any, prefix string) {
				for k, v := range m {
					if sub, ok := v.(map[string]any); ok {
						check(sub, prefix+k+".")
					} else if !slices.Contains(config.Keys(), prefix+k) {
						t.Fatalf("accepted a file that sets %s%s, which is not a key", prefix, k)
					}
				}
			}
			check(doc, "")
		}
		c2, err2 := config.Parse("f.toml", src)
		if !reflect.DeepEqual(c, c2) || (err == nil) != (err2 == nil) || (err != nil && err.Error() != err2.Error()) {
			t.Fatalf("not deterministic: %v / %v", err, err2)
		}
	})
}
