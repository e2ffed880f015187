package diag

import (
	"strings"
	"testing"
	"time"

	"gateagent/config"
	"gateagent/scanner"
)

// TestJudgeScannerLive: the running scanner's line counts codes apart from
// rejected lines, in the singular when there is one, says which terminator
// the scanner sends, and warns when the setting cannot cut it.
func TestJudgeScannerLive(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	cfg := func(term string) *config.Config {
		c := config.Default()
		c.Scanner.Port, c.Scanner.Terminator = "/dev/gate-scanner", term
		return &c
	}
	for _, tc := range []struct {
		name   string
		term   string
		st     scanner.Stats
		status Status
		want   []string
		not    []string
	}{
		{"auto, crlf scanner", "auto", scanner.Stats{Connected: true, Lines: 412, Codes: 409, Rejected: 3, LastScan: now.Add(-40 * time.Second), Endings: scanner.Endings{CRLF: 412}},
			Pass, []string{"409 codes read, 3 rejected lines, last scan 40s ago, 0 reconnects; the scanner ends codes with CRLF"}, []string{"terminator"}},
		{"one of each", "auto", scanner.Stats{Connected: true, Lines: 2, Codes: 1, Rejected: 1, Reconnects: 1, Overlong: 1, Endings: scanner.Endings{CR: 2}},
			Pass, []string{"1 code read, 1 rejected line, no scan yet, 1 reconnect, 1 over-long line dropped; the scanner ends codes with CR"}, nil},
		{"cr setting, crlf scanner", "cr", scanner.Stats{Connected: true, Lines: 3, Codes: 1, Rejected: 2, Endings: scanner.Endings{CRLF: 3}},
			Warn, []string{"ends codes with CRLF but scanner.terminator is \"cr\"", `set scanner.terminator = "auto" (or "crlf")`}, nil},
		{"crlf setting, mixed scanner", "crlf", scanner.Stats{Connected: true, Lines: 3, Endings: scanner.Endings{CR: 2, CRLF: 1}},
			Warn, []string{"mixed endings (2 CR, 0 LF, 1 CRLF)", `set scanner.terminator = "auto" and restart`}, []string{`(or "mixed")`}},
		{"lf setting, lf scanner", "lf", scanner.Stats{Connected: true, Lines: 1, Codes: 1, Endings: scanner.Endings{LF: 1}},
			Pass, []string{"ends codes with LF"}, []string{"terminator"}},
		{"nothing sent yet", "cr", scanner.Stats{Connected: true},
			Pass, []string{"0 codes read, 0 rejected lines, no scan yet"}, []string{"ends codes"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := judgeScannerLive(cfg(tc.term), tc.st, true, now)
			if c.Status != tc.status {
				t.Errorf("%s, want %s: %s", c.Status, tc.status, c.Line)
			}
			for _, w := range tc.want {
				if !strings.Contains(c.Line, w) {
					t.Errorf("line lacks %q:\n%s", w, c.Line)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(c.Line, n) {
					t.Errorf("line has %q:\n%s", n, c.Line)
				}
			}
			if c.Facts["codes"] != tc.st.Codes || c.Facts["rejected"] != tc.st.Rejected {
				t.Errorf("facts %v: want codes and rejected apart", c.Facts)
			}
		})
	}
}
