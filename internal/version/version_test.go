package version

import (
	"runtime"
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
