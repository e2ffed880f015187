package version

import (
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
