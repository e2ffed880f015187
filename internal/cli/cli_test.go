package cli

import (
	"bytes"
	"flag"
	"strings"
	"testing"
)

func tree(ran *[]string) *Command {
	var n int
	var name string
	return &Command{
		Name: "tool",
		Commands: []*Command{
			{Name: "greet", Args: "WHO", NArgs: [2]int{1, 1}, Summary: "say hello", Help: "Says hello to WHO.",
				Flags: func(fs *flag.FlagSet) { fs.IntVar(&n, "times", 1, "how many `N` times") },
				Run: func(c *Context) int {
					*ran = append(*ran, strings.Repeat(c.Args[0], n))
					return 0
				}},
			{Name: "box", Summary: "a group", Commands: []*Command{
				{Name: "open", Summary: "open it", Flags: func(fs *flag.FlagSet) { fs.StringVar(&name, "label", "", "the `LABEL`") },
					Run: func(c *Context) int { *ran = append(*ran, "open:"+name); return 3 }},
			}},
		},
	}
}

func TestCommands(t *testing.T) {
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string // substrings of stdout and stderr
		ran      string
	}{
		{nil, 0, "usage: tool COMMAND", "", ""},
		{[]string{"--version"}, 0, "tool 1.0", "", ""},
		{[]string{"--help"}, 0, "greet  say hello", "", ""},
		{[]string{"help", "greet"}, 0, "usage: tool greet [FLAGS] WHO", "", ""},
		{[]string{"help", "box", "open"}, 0, "--label LABEL", "", ""},
		{[]string{"help", "nope"}, 64, "", `unknown command "nope"`, ""},
		{[]string{"greet", "--help"}, 0, "--times N\n      how many N times (default 1)", "", ""},
		{[]string{"greet", "x", "-h"}, 0, "Says hello to WHO.", "", ""},
		{[]string{"greet", "x", "--", "-h"}, 64, "", `unexpected argument "-h"`, ""},
		{[]string{"greet", "ab", "--times", "2"}, 0, "", "", "abab"},
		{[]string{"greet", "--times=3", "a"}, 0, "", "", "aaa"},
		{[]string{"greet"}, 64, "", "missing arguments: want WHO", ""},
		{[]string{"greet", "a", "b"}, 64, "", `unexpected argument "b"`, ""},
		{[]string{"greet", "--frob", "a"}, 64, "", "flag provided but not defined", ""},
		{[]string{"frob"}, 64, "", `unknown command "frob"`, ""},
		{[]string{"box"}, 0, "open  open it", "", ""},
		{[]string{"box", "open", "--label", "L"}, 3, "", "", "open:L"},
	} {
		var ran []string
		var out, errOut bytes.Buffer
		code := Main(tree(&ran), "tool 1.0", tc.args, &out, &errOut)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errOut.String(), tc.err) || strings.Join(ran, ",") != tc.ran {
			t.Errorf("tool %q: exit %d, ran %q\nstdout %q\nstderr %q\nwant exit %d, ran %q, stdout with %q, stderr with %q",
				tc.args, code, ran, out.String(), errOut.String(), tc.code, tc.ran, tc.out, tc.err)
		}
		if tc.code == 64 && !strings.Contains(errOut.String(), "usage: tool") {
			t.Errorf("tool %q: a usage error without the usage:\n%s", tc.args, errOut.String())
		}
	}
}

func TestWalk(t *testing.T) {
	var ran []string
	var paths []string
	Walk(tree(&ran), func(p []string, c *Command) { paths = append(paths, strings.Join(p, " ")) })
	if got := strings.Join(paths, "|"); got != "|greet|box|box open" {
		t.Errorf("walked %q", got)
	}
}
