// Package diag is the field technician's view of a gate: a list of
// checks, each PASS, WARN or FAIL with one line that says what was found
// and what to do, and explanations of single tokens. `gateagent diag`
// prints it; the daemon builds the same report over its control socket.
package diag

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Status is the verdict of one check.
type Status uint8

// The verdicts, from best to worst. Skip (the check could not run in this
// mode, e.g. latency figures with the daemon stopped) does not count
// towards the exit status.
const (
	Skip Status = iota
	Pass
	Warn
	Fail
)

var statusNames = [...]string{"SKIP", "PASS", "WARN", "FAIL"}

func (s Status) String() string {
	if int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("Status(%d)", uint8(s))
}

// MarshalText writes the status as its name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads a status name.
func (s *Status) UnmarshalText(b []byte) error {
	for i, n := range statusNames {
		if string(b) == n {
			*s = Status(i)
			return nil
		}
	}
	return fmt.Errorf("diag: unknown status %q", b)
}

// ExitCode is the process exit status for a worst verdict: 0 for PASS
// (and SKIP), 1 for WARN, 2 for FAIL.
func (s Status) ExitCode() int {
	switch s {
	case Warn:
		return 1
	case Fail:
		return 2
	}
	return 0
}

// Check is the verdict of one check.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Line says in one line what was found and, unless it passed, what
	// to do about it.
	Line string `json:"line"`
	// Facts are the figures behind the line, for --json readers.
	Facts map[string]any `json:"facts,omitempty"`
}

// Report is the outcome of a diag run.
type Report struct {
	Gate    string    `json:"gate,omitempty"`
	Version string    `json:"version"`
	At      time.Time `json:"at"`
	// Mode says who ran the checks: "daemon" (asked over the control
	// socket) or "standalone" (the daemon was stopped).
	Mode   string  `json:"mode"`
	Checks []Check `json:"checks"`
}

// Add appends a check.
func (r *Report) Add(c Check) { r.Checks = append(r.Checks, c) }

// Worst is the worst verdict of the report.
func (r *Report) Worst() Status {
	w := Skip
	for _, c := range r.Checks {
		w = max(w, c.Status)
	}
	return w
}

// Find returns the check named name.
func (r *Report) Find(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// WriteText prints the report for a person: one line per check.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "gateagent diag: gate %s, %s, %s mode, %s\n", orDash(r.Gate), r.Version, r.Mode, r.At.UTC().Format(time.RFC3339))
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%-4s  %-10s %s\n", c.Status, c.Name, c.Line)
	}
	fmt.Fprintf(&b, "result: %s\n", r.Worst())
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteText prints one check for a person: its line, then its facts, one
// per line, by name.
func (c Check) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s  %-10s %s\n", c.Status, c.Name, c.Line)
	for _, k := range slices.Sorted(maps.Keys(c.Facts)) {
		fmt.Fprintf(&b, "      %-28s %v\n", k+":", c.Facts[k])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON prints the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(struct {
		*Report
		Result Status `json:"result"`
	}{r, r.Worst()})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
