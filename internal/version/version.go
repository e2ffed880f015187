// Package version holds what the build stamps into the binary with
// -ldflags "-X gateagent/internal/version.Version=… -X ….BuildDate=…".
// A plain `go build` in a git checkout stamps nothing of its own, so what
// the ldflags left unset is taken from the Go build information: the
// module version, the commit and the commit's time.
package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

// Stamped by the Makefile (BuildDate from SOURCE_DATE_EPOCH, the commit's
// time, so that two builds of one commit are the same bytes). Left unset,
// init fills them from the build information where it has them; the
// defaults are what `go test` and `go build -buildvcs=false` see.
var (
	Version   = "dev"
	Commit    = "unknown"
	BuildDate = "" // RFC 3339 or 2006-01-02
)

// sourceDate is the date of this source tree, kept by hand: the floor of
// the clock check when the build did not stamp a date. Raise it now and
// then; never lower it.
const sourceDate = "2026-11-23"

// shortCommit is how many hex digits of the commit String prints, as
// `git rev-parse --short` does in the Makefile.
const shortCommit = 7

func init() {
	if info, ok := debug.ReadBuildInfo(); ok {
		Version, Commit, BuildDate = fromBuildInfo(info, Version, Commit, BuildDate)
	}
}

// fromBuildInfo fills each of version, commit and date that the build did
// not stamp from what the Go toolchain recorded: the main module's version
// (a tag such as v1.2.3, or a pseudo-version; "+dirty" for a modified
// tree), vcs.revision and vcs.time. A stamped value always wins.
func fromBuildInfo(info *debug.BuildInfo, version, commit, date string) (string, string, string) {
	if version == "dev" {
		if v := info.Main.Version; v != "" && v != "(devel)" {
			version = v
		}
	}
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision" && commit == "unknown" && s.Value != "":
			commit = s.Value[:min(len(s.Value), shortCommit)]
		case s.Key == "vcs.time" && date == "" && s.Value != "":
			// The commit's time: the source cannot be older, so it may
			// raise the clock check's floor as a stamped date does.
			date = s.Value
		}
	}
	return version, commit, date
}

// BuildTime returns the build date: the gate's clock is not trusted before
// it (check 2 of the TR1 spec), so that a board that boots in 1970 refuses
// tokens until its clock is set. It never returns a time before sourceDate.
func BuildTime() time.Time {
	t, _ := buildTime()
	return t
}

// buildTime is BuildTime and the layout BuildDate was stamped in
// (time.DateOnly when it was not stamped or was raised to the floor).
func buildTime() (time.Time, string) {
	floor, _ := time.Parse(time.DateOnly, sourceDate)
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, BuildDate); err == nil {
			if t.Before(floor) {
				return floor, time.DateOnly
			}
			return t.UTC(), layout
		}
	}
	return floor, time.DateOnly
}

// Platform is the OS and architecture the binary was built for, as Go
// names them ("linux/arm64"), with the ARM version for 32-bit ARM
// ("linux/arm/v7", as container platforms write it): a technician can
// tell at once whether the binary suits the board.
func Platform() string {
	p := runtime.GOOS + "/" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		if v := buildSetting("GOARM"); v != "" {
			// GOARM may carry a float ABI ("7,softfloat"); keep the version.
			v, _, _ = strings.Cut(v, ",")
			p += "/v" + v
		}
	}
	return p
}

func buildSetting(key string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// String describes the build in one line: version, commit, build date (to
// the second when the build stamped a time), and the Go release and
// platform it was built with, e.g.
//
//	v1.2.3 (abc1234, built 2026-11-23T10:00:00Z, go1.26.8 linux/arm64)
func String() string {
	t, layout := buildTime()
	return Version + " (" + Commit + ", built " + t.Format(layout) + ", " +
		runtime.Version() + " " + Platform() + ")"
}
