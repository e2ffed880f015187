package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/internal/cli"
)

func runArgs(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestUsage(t *testing.T) {
	if code, out, _ := runArgs(); code != 0 || !strings.Contains(out, "version") {
		t.Fatalf("no args: %d %q", code, out)
	}
	if code, _, errOut := runArgs("frobnicate"); code != 64 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %d %q", code, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runArgs("version")
	if code != 0 || !strings.HasPrefix(out, "gateagent dev (unknown, built 20") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestCacheCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(cachetest.Batch(0, 3, 3)); err != nil {
		t.Fatal(err)
	}
	// The batch is in the cache's delta until the delta is written as a
	// run: written now, so that the certificates are in cache.db, where
	// the check authenticates them and the damage below reaches them.
	if err := c.WriteRun(cachetest.Epoch); err != nil {
		t.Fatal(err)
	}
	c.Close()
	cfg := simConfig(t, t.TempDir(), path, "")

	code, out, errOut := runArgs("cache", "stats", path, "--config", cfg)
	var st cache.Stats
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Certs != 3 || st.Feed.Cursor != 3 {
		t.Fatalf("stats: %d %q %q", code, out, errOut)
	}
	// 6 records: the file's own three (the feed state, the runs' record,
	// the resync state) and the run's 3 certificates.
	if code, out, _ := runArgs("cache", "check", path, "--config", cfg); code != 0 || !strings.Contains(out, "is whole") || !strings.Contains(out, "6 records authenticate") {
		t.Fatalf("check: %d %q", code, out)
	}
	// Without the gate's keys: the pages only.
	if code, out, _ := runArgs("cache", "check", path, "--config", filepath.Join(t.TempDir(), "none.toml")); code != 1 {
		t.Fatalf("check with a config that is not there: %d %q", code, out)
	}
	// A record changed on the disk: the file is whole, the record is not.
	// The run's certificates are sealed together, several to a seal
	// (cache/group.go): those that share the victim's fail with it (1 to
	// 3 of the file's 6 records), and the check names the first of them
	// in ID order, so the victim is the first certificate.
	victim := cachetest.Cert(0, 3).ID
	if err := cachetest.DamageRecord(path, "certs", victim[:], 30, 1); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runArgs("cache", "check", path, "--config", cfg)
	failed := 0
	if _, after, ok := strings.Cut(errOut, "is whole, but "); ok {
		fmt.Sscanf(after, "%d of its 6 records fail authentication", &failed)
	}
	if code != 1 || failed < 1 || failed > 3 || !strings.Contains(errOut, "certificate "+victim.String()) {
		t.Fatalf("check of a damaged record: %d %q", code, errOut)
	}

	j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if code, out, _ := runArgs("cache", "check", j.Path(), "--config", cfg); code != 0 || !strings.Contains(out, "is whole (a gateagent journal)") {
		t.Fatalf("check of a journal: %d %q", code, out)
	}
	if code, out, errOut := runArgs("cache", "stats", j.Path(), "--config", cfg); code != 0 || !strings.Contains(out, `"backlog"`) {
		t.Fatalf("stats of a journal: %d %q %q", code, out, errOut)
	}

	bad := filepath.Join(t.TempDir(), "bad.db")
	os.WriteFile(bad, []byte(strings.Repeat("x", 8192)), 0o600)
	if code, _, errOut := runArgs("cache", "check", bad); code != 1 || !strings.Contains(errOut, "what to do: (re)start the agent") ||
		!strings.Contains(errOut, "moves the file aside as "+bad+".damaged-TIME") {
		t.Fatalf("check of garbage: %d %q", code, errOut)
	}
	if code, _, errOut := runArgs("cache", "check", filepath.Join(t.TempDir(), "absent.db")); code != 1 || !strings.Contains(errOut, "no such file") {
		t.Fatalf("check of absent file: %d %q", code, errOut)
	}
	if code, _, _ := runArgs("cache", "purge", path); code != 64 {
		t.Fatalf("unknown cache verb: %d", code)
	}
}

// TestCacheCheckEmptyAndTruncated: the files a kill at the first start and
// a full disk leave. An empty file is not whole (exit 1), and the advice
// is that the agent recreates it, not a permissions hint.
func TestCacheCheckEmptyAndTruncated(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "cache.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runArgs("cache", "check", empty)
	if code != 1 || out != "" || !strings.Contains(errOut, "empty") ||
		!strings.Contains(errOut, "what to do: an agent stopped in its first moments leaves an empty file: the agent recreates it at its next start") ||
		strings.Contains(errOut, "permission") || strings.Contains(errOut, "belongs to") {
		t.Fatalf("check of an empty file: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	full := filepath.Join(dir, "full.db")
	c, err := cache.Open(full, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(cachetest.Batch(0, 2000, 2000)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	fi, err := os.Stat(full)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(full, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runArgs("cache", "check", full)
	if code != 1 || !strings.Contains(errOut, "truncated") || !strings.Contains(errOut, "what to do: the file is cut short") ||
		!strings.Contains(errOut, "moves the file aside") {
		t.Fatalf("check of a truncated file: exit %d, stderr %q", code, errOut)
	}
}

// TestHelpEverywhere walks every command and subcommand, diag's included:
// --help and `help CMD` exit 0 and show that command's own usage, its own
// flags GNU-style, and its exit statuses.
func TestHelpEverywhere(t *testing.T) {
	n := 0
	cli.Walk(root(), func(path []string, c *cli.Command) {
		n++
		name := strings.Join(append([]string{"gateagent"}, path...), " ")
		for _, args := range [][]string{append(append([]string(nil), path...), "--help"), append([]string{"help"}, path...), append(append([]string(nil), path...), "-h")} {
			code, out, errOut := runArgs(args...)
			if code != 0 || errOut != "" || !strings.HasPrefix(out, "usage: "+name) || !strings.Contains(out, "Exit status:") {
				t.Errorf("%q: exit %d\n%s%s", args, code, out, errOut)
				continue
			}
			fs := flag.NewFlagSet("", flag.ContinueOnError)
			if c.Flags != nil {
				c.Flags(fs)
			}
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(out, "\n  --"+f.Name) {
					t.Errorf("%q does not list --%s:\n%s", args, f.Name, out)
				}
			})
			for _, s := range c.Commands {
				if !strings.Contains(out, "\n  "+s.Name+" ") {
					t.Errorf("%q does not list its command %s:\n%s", args, s.Name, out)
				}
			}
		}
	})
	if n < 14 {
		t.Errorf("walked %d commands: diag's subcommands are missing", n)
	}
	for _, c := range []struct {
		args []string
		code int
	}{{nil, 0}, {[]string{"--version"}, 0}, {[]string{"diag", "help"}, 0}, {[]string{"diag", "relay", "--help"}, 0}} {
		if code, out, errOut := runArgs(c.args...); code != c.code || out == "" {
			t.Errorf("%q: exit %d\n%s%s", c.args, code, out, errOut)
		}
	}
	if _, out, _ := runArgs("--version"); !strings.HasPrefix(out, "gateagent dev") {
		t.Errorf("--version: %q", out)
	}
	if _, out, _ := runArgs("diag", "--help"); !strings.Contains(out, "--deep") {
		t.Errorf("diag --help does not list --deep:\n%s", out)
	}
	if _, relay, _ := runArgs("diag", "relay", "--help"); !strings.Contains(relay, "--pulse DURATION") || strings.Contains(relay, "--timeout") {
		t.Errorf("diag relay --help shows another command's flags:\n%s", relay)
	}
}
