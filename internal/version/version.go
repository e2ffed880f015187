// Package version holds what the build stamps into the binary with
// -ldflags "-X gateagent/internal/version.Version=… -X ….BuildDate=…".
package version

import "time"

// Stamped by the Makefile; the defaults are what `go build` and `go test` see.
var (
	Version   = "dev"
	Commit    = "unknown"
	BuildDate = "" // RFC 3339 or 2006-01-02
)

// sourceDate is the date of this source tree, kept by hand: the floor of
// the clock check when the build did not stamp a date. Raise it now and
// then; never lower it.
const sourceDate = "2026-11-23"

// BuildTime returns the build date: the gate's clock is not trusted before
// it (check 2 of the TR1 spec), so that a board that boots in 1970 refuses
// tokens until its clock is set. It never returns a time before sourceDate.
func BuildTime() time.Time {
	floor, _ := time.Parse(time.DateOnly, sourceDate)
	for _, layout := range []string{time.RFC3339, time.DateOnly} {
		if t, err := time.Parse(layout, BuildDate); err == nil {
			if t.Before(floor) {
				return floor
			}
			return t.UTC()
		}
	}
	return floor
}

// String describes the build in one line.
func String() string {
	return Version + " (" + Commit + ", built " + BuildTime().Format(time.DateOnly) + ")"
}
