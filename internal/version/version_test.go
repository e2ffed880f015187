package version

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func TestBuildTime(t *testing.T) {
	floor := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	defer func(old string) { BuildDate = old }(BuildDate)
	for in, want := range map[string]time.Time{
		"":                     floor,
		"garbage":              floor,
		"2027-03-01":           time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC),
		"2027-03-01T10:00:00Z": time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC),
		"1970-01-01":           floor, // a stamp cannot lower the floor
	} {
		BuildDate = in
		if got := BuildTime(); !got.Equal(want) {
			t.Errorf("BuildDate %q: BuildTime() = %v, want %v", in, got, want)
		}
	}
}

func TestString(t *testing.T) {
	defer func(v, c, d string) { Version, Commit, BuildDate = v, c, d }(Version, Commit, BuildDate)
	plat := Platform()
	if !strings.HasPrefix(plat, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("Platform() = %q, want it to start with %s/%s", plat, runtime.GOOS, runtime.GOARCH)
	}
	tail := ", " + runtime.Version() + " " + plat + ")"
	for _, c := range []struct{ version, commit, date, want string }{
		{"v1.2.3", "abc1234", "2027-03-01T10:00:00Z", "v1.2.3 (abc1234, built 2027-03-01T10:00:00Z" + tail},
		{"v1.2.3", "abc1234", "2027-03-01T18:00:00+08:00", "v1.2.3 (abc1234, built 2027-03-01T10:00:00Z" + tail},
		{"v1.2.3", "abc1234", "2027-03-01", "v1.2.3 (abc1234, built 2027-03-01" + tail},
		{"dev", "unknown", "", "dev (unknown, built 2026-11-23" + tail},                     // unstamped: the floor
		{"dev", "unknown", "1970-01-01T00:00:00Z", "dev (unknown, built 2026-11-23" + tail}, // never below it
	} {
		Version, Commit, BuildDate = c.version, c.commit, c.date
		if got := String(); got != c.want {
			t.Errorf("stamp %q %q %q: String() = %q, want %q", c.version, c.commit, c.date, got, c.want)
		}
	}
}

// TestFromBuildInfo: what the ldflags left unset comes from the build
// information; what they stamped stays.
func TestFromBuildInfo(t *testing.T) {
	vcs := func(version string, settings ...string) *debug.BuildInfo {
		info := &debug.BuildInfo{Main: debug.Module{Path: "gateagent", Version: version}}
		for i := 0; i+1 < len(settings); i += 2 {
			info.Settings = append(info.Settings, debug.BuildSetting{Key: settings[i], Value: settings[i+1]})
		}
		return info
	}
	const rev = "5ab846078543294906dfdd43ac3b1f0999dcd510"
	for _, c := range []struct {
		name                string
		info                *debug.BuildInfo
		stamped             [3]string // version, commit, date as the ldflags left them
		version, commit, at string
	}{
		{"plain build of a tagged commit", vcs("v1.2.3", "vcs.revision", rev, "vcs.time", "2027-03-01T10:00:00Z"),
			[3]string{"dev", "unknown", ""}, "v1.2.3", "5ab8460", "2027-03-01T10:00:00Z"},
		{"plain build between tags, modified tree", vcs("v0.0.0-20270301100000-5ab846078543+dirty", "vcs.revision", rev, "vcs.time", "2027-03-01T10:00:00Z", "vcs.modified", "true"),
			[3]string{"dev", "unknown", ""}, "v0.0.0-20270301100000-5ab846078543+dirty", "5ab8460", "2027-03-01T10:00:00Z"},
		{"make's stamp wins", vcs("v1.2.3", "vcs.revision", rev, "vcs.time", "2027-03-01T10:00:00Z"),
			[3]string{"v1.2.4-rc1", "abcdef0", "2027-04-01T00:00:00Z"}, "v1.2.4-rc1", "abcdef0", "2027-04-01T00:00:00Z"},
		{"only the date stamped", vcs("(devel)", "vcs.revision", rev, "vcs.time", "2027-03-01T10:00:00Z"),
			[3]string{"dev", "unknown", "2027-04-01"}, "dev", "5ab8460", "2027-04-01"},
		{"no VCS information (-buildvcs=false, go test)", vcs("(devel)", "GOARCH", "arm64"),
			[3]string{"dev", "unknown", ""}, "dev", "unknown", ""},
		{"no main module version", vcs("", "vcs.revision", "abc"),
			[3]string{"dev", "unknown", ""}, "dev", "abc", ""},
	} {
		v, cm, at := fromBuildInfo(c.info, c.stamped[0], c.stamped[1], c.stamped[2])
		if v != c.version || cm != c.commit || at != c.at {
			t.Errorf("%s: fromBuildInfo = %q, %q, %q; want %q, %q, %q", c.name, v, cm, at, c.version, c.commit, c.at)
		}
	}
}

// TestPlainGoBuild builds a program on this package with a plain `go
// build` in a git repository of its own (a copy of this package, committed
// at a known time) and runs it: it must report the commit and its time,
// and the tag as its version, not the floor date and "dev (unknown".
func TestPlainGoBuild(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	gitTool, err := exec.LookPath("git")
	if err != nil {
		t.Skip("no git command on PATH: a plain build's VCS stamp cannot be made")
	}
	repo := t.TempDir()
	files := map[string]string{
		"go.mod": "module gateagent\n\ngo 1.26\n",
		"cmd/printversion/main.go": "package main\n\nimport (\n\t\"fmt\"\n\t\"time\"\n\n\t\"gateagent/internal/version\"\n)\n\n" +
			"func main() {\n\tfmt.Println(version.String())\n\tfmt.Println(version.BuildTime().Format(time.RFC3339))\n}\n",
	}
	sources, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range sources {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		files["internal/version/"+name] = string(b)
	}
	for name, text := range files {
		path := filepath.Join(repo, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	git := func(date string, args ...string) string {
		t.Helper()
		cmd := exec.Command(gitTool, append([]string{"-c", "user.name=test", "-c", "user.email=test@example.invalid", "-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"}, args...)...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
			"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	// run builds the program with the flags given (and -buildvcs=true, so
	// that a GOFLAGS=-buildvcs=false in the environment does not hide the
	// case) and returns its two lines.
	run := func(flags ...string) (string, time.Time) {
		t.Helper()
		bin := filepath.Join(t.TempDir(), "printversion")
		cmd := exec.Command(goTool, append(append([]string{"build", "-buildvcs=true"}, flags...), "-o", bin, "./cmd/printversion")...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %v: %v\n%s", flags, err, out)
		}
		var out []byte
		if wrap := os.Getenv("GATEAGENT_TEST_EXEC"); wrap != "" { // e.g. qemu-aarch64-static
			out, err = exec.Command(wrap, bin).Output()
		} else {
			out, err = exec.Command(bin).Output()
		}
		if err != nil {
			t.Fatalf("printversion: %v", err)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 {
			t.Fatalf("printversion printed %q, want two lines", out)
		}
		at, err := time.Parse(time.RFC3339, lines[1])
		if err != nil {
			t.Fatal(err)
		}
		return lines[0], at
	}
	tail := ", " + runtime.Version() + " "

	git("2027-03-01T18:00:00+08:00", "init", "-q")
	git("2027-03-01T18:00:00+08:00", "add", ".")
	git("2027-03-01T18:00:00+08:00", "commit", "-q", "-m", "one")
	commit := git("", "rev-parse", "HEAD")[:7]

	// Untagged: a pseudo-version naming the commit, built at its time
	// (in UTC, to the second): the floor is raised to it.
	s, at := run()
	want := regexp.MustCompile(`^v0\.0\.0-20270301100000-` + commit + `[0-9a-f]{5} \(` + commit + `, built 2027-03-01T10:00:00Z` + regexp.QuoteMeta(tail))
	if !want.MatchString(s) {
		t.Errorf("untagged commit: %q, want it to match %s", s, want)
	}
	if wantAt := time.Date(2027, 3, 1, 10, 0, 0, 0, time.UTC); !at.Equal(wantAt) {
		t.Errorf("untagged commit: BuildTime() = %v, want the commit's time %v", at, wantAt)
	}

	// Tagged: the tag is the version.
	git("", "tag", "v1.2.3")
	if s, _ := run(); !strings.HasPrefix(s, "v1.2.3 ("+commit+", built 2027-03-01T10:00:00Z"+tail) {
		t.Errorf("tagged commit: %q, want v1.2.3 (%s, built 2027-03-01T10:00:00Z%s...", s, commit, tail)
	}

	// The Makefile's stamp wins over the build information.
	ldflags := "-ldflags=-X gateagent/internal/version.Version=v9.9.9 -X gateagent/internal/version.Commit=fedcba9 -X gateagent/internal/version.BuildDate=2027-05-01T00:00:00Z"
	if s, _ := run(ldflags); !strings.HasPrefix(s, "v9.9.9 (fedcba9, built 2027-05-01T00:00:00Z"+tail) {
		t.Errorf("stamped build: %q, want the stamp", s)
	}

	// A commit older than the source's floor date does not lower it.
	if err := os.WriteFile(filepath.Join(repo, "README"), []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git("2020-01-01T00:00:00Z", "add", "README")
	git("2020-01-01T00:00:00Z", "commit", "-q", "-m", "old")
	old := git("", "rev-parse", "HEAD")[:7]
	s, at = run()
	if !strings.Contains(s, "("+old+", built 2026-11-23"+tail) || !at.Equal(time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("commit of 2020: %q, %v; want commit %s and the floor 2026-11-23", s, at, old)
	}

	// Without VCS information, what `go test` and -buildvcs=false see.
	if s, _ := run("-buildvcs=false"); !strings.HasPrefix(s, "dev (unknown, built 2026-11-23"+tail) {
		t.Errorf("-buildvcs=false: %q, want dev (unknown, built 2026-11-23...", s)
	}
}
