package main

import (
	"runtime"
	"strings"
	"testing"

	"gateagent/internal/version"
)

// TestVersionCommand: `gateagent version` prints what make stamped (version,
// commit, build time) and the Go release and platform, on one line.
func TestVersionCommand(t *testing.T) {
	defer func(v, c, d string) { version.Version, version.Commit, version.BuildDate = v, c, d }(
		version.Version, version.Commit, version.BuildDate)
	version.Version, version.Commit, version.BuildDate = "v1.2.3", "abc1234", "2027-03-01T10:00:00Z"

	code, out, errOut := runArgs("version")
	platform := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		platform = version.Platform() // linux/arm/v7
	}
	want := "gateagent v1.2.3 (abc1234, built 2027-03-01T10:00:00Z, " + runtime.Version() + " " + platform + ")\n"
	if code != 0 || out != want || errOut != "" {
		t.Fatalf("gateagent version: exit %d, stdout %q, stderr %q; want exit 0, stdout %q", code, out, errOut, want)
	}

	// Unstamped (go build, go test): the source tree's date, the floor of the clock check.
	version.Version, version.Commit, version.BuildDate = "dev", "unknown", ""
	if code, out, _ := runArgs("version"); code != 0 || !strings.HasPrefix(out, "gateagent dev (unknown, built 2026-11-23, go1.") {
		t.Fatalf("unstamped: exit %d, stdout %q", code, out)
	}

	if code, out, errOut := runArgs("version", "--verbose"); code != 64 || out != "" || !strings.Contains(errOut, "usage: gateagent version") {
		t.Fatalf("version with an argument: exit %d, stdout %q, stderr %q; want exit 64 and the usage", code, out, errOut)
	}
}
