package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, ""},
		{[]string{"--frobnicate"}, 64, "flag provided but not defined"},
		{[]string{"extra"}, 64, "usage: gatedemo"},
	} {
		var out, errOut bytes.Buffer
		if code := run(c.args, &out, &errOut); code != c.code || !strings.Contains(errOut.String(), c.want) || (code == 0 && !strings.Contains(out.String(), "usage: gatedemo [FLAGS]")) {
			t.Errorf("gatedemo %q: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.want, errOut.String())
		}
	}
}

// TestWalkThrough runs the README's first command as a newcomer would,
// and checks it tells the whole story and ends well.
func TestWalkThrough(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--dir", t.TempDir()}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out.String(), errOut.String())
	}
	if !strings.Contains(out.String(), "Every step behaved as a station expects.") {
		t.Errorf("the walk-through did not end well:\n%s", out.String())
	}
}
