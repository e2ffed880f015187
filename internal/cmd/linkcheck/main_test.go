package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("README.md", "# Top\n\n## Install on a gate\n\n[ok](docs/a.md) [ok](docs/a.md#the-token-checks) [ok](#install-on-a-gate)\n"+
		"[gone](docs/none.md) [no heading](docs/a.md#nope) [self](#nowhere) [web](https://example.com/x) `[code](nope.md)`\n"+
		"```\n[in a block](nope.md)\n```\n")
	write("docs/a.md", "# The token: checks\n\n[back](../README.md#top)\n")
	var out strings.Builder
	bad, err := check(dir, &out)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 3 {
		t.Errorf("%d broken links, want 3:\n%s", bad, out.String())
	}
	for _, want := range []string{"docs/none.md: no such file", "docs/a.md#nope", "#nowhere"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRepository: the repository's own docs have no broken link.
func TestRepository(t *testing.T) {
	var out strings.Builder
	bad, err := check("../../..", &out)
	if err != nil {
		t.Fatal(err)
	}
	if bad > 0 {
		t.Errorf("%d broken links:\n%s", bad, out.String())
	}
}
