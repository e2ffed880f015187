package diag

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gateagent/wear"
)

// TestJudgeWear: the wear check's verdicts, from a running agent's
// reports: measuring, PASS with the figures, WARN under the service life
// with what to do, SKIP without the kernel's counters; never FAIL.
func TestJudgeWear(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	files := &wear.Files{At: now, CacheBytes: 90_000_000, DeltaBytes: 9_500_000, JournalBytes: 16_800_000, LiveCerts: 1_000_000}
	purge := &wear.Maintenance{Kind: wear.MaintenanceRuns, At: now.Add(-12 * time.Minute), Certs: 125_000,
		Runs: 11, LastRun: now.Add(-72 * time.Minute), DeltaCerts: 50_000}
	rate := func(elapsed time.Duration, wchar uint64, last24h *wear.Counters, window time.Duration) *wear.Rate {
		return &wear.Rate{Since: now.Add(-elapsed), At: now, Elapsed: elapsed, Written: wear.Counters{WChar: wchar, WriteBytes: 3 * wchar},
			Total: wear.Counters{WChar: wchar}, Last24h: last24h, Window: window}
	}
	cases := []struct {
		name   string
		r      wear.Report
		status Status
		says   []string
	}{
		{"just started", wear.NewReport(wear.DefaultDevice(), rate(3*time.Minute, 40e6, nil, 0), nil), Pass,
			[]string{"measuring: 40.0 MB written", "3m0s since the agent started", "projected after 10m", "certificate files 99.5 MB (cache 90.0 MB, delta 9.5 MB) = 1.53× its live records",
				"1000000 certificates × 65 B = 65.0 MB", "last maintenance 12m0s ago, 125000 certificates deleted with their runs", "the newest run written 1h12m0s ago", "50000 certificates in the delta", "not compacted"}},
		// 200 MB a day: 82 years on the default device.
		{"quiet gate", wear.NewReport(wear.DefaultDevice(), rate(6*time.Hour, 50e6, nil, 0), nil), Pass,
			[]string{"writes 200.0 MB a day (wchar, projected from the 6h0m0s since the agent started; write_bytes 600.0 MB)", "lasts 82.2 years at this rate, planned 10 (budget 1.6 GB a day)"}},
		// Today's write path at the churn: 12.5 GB a day over the
		// last 24 h: 1.3 years.
		{"today's churn", wear.NewReport(wear.DefaultDevice(), rate(30*time.Hour, 15.6e9, &wear.Counters{WChar: 12.5e9, WriteBytes: 40e9}, wear.Day), nil), Warn,
			[]string{"flash wears out early", "12.5 GB a day (wchar, over the last 24 h; write_bytes 40.0 GB)", "lasts 1.3 years", "planned 10", "feed.interval", "passengers", "resyncing", "[storage]", "docs/flash.md"}},
		{"a bigger device", wear.NewReport(wear.Device{Bytes: 64e9, RatedCycles: 3000, Amplification: 4, ServiceYears: 10}, rate(30*time.Hour, 15.6e9, &wear.Counters{WChar: 12.5e9}, wear.Day), nil), Pass,
			[]string{"lasts 10.5 years"}},
		{"nothing written", wear.NewReport(wear.DefaultDevice(), rate(time.Hour, 0, nil, 0), nil), Pass, []string{"lasts for ever"}},
		{"no counters", wear.NewReport(wear.DefaultDevice(), nil, wear.ErrNoCounters), Skip, []string{"CONFIG_TASK_IO_ACCOUNTING", "1.53×"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.Files, tc.r.Maintenance = files, purge
			c := judgeWear(wearFacts{r: tc.r, daemon: true, now: now})
			if c.Status != tc.status {
				t.Errorf("%s, want %s: %s", c.Status, tc.status, c.Line)
			}
			for _, w := range tc.says {
				if !strings.Contains(c.Line, w) {
					t.Errorf("line does not say %q: %s", w, c.Line)
				}
			}
		})
	}

	// A failed maintenance and files not measured are said as such.
	r := wear.NewReport(wear.DefaultDevice(), rate(time.Hour, 1e6, nil, 0), nil)
	r.FilesErr = errors.New("stat cache.db: input/output error")
	r.Maintenance = &wear.Maintenance{Kind: wear.MaintenanceRuns, At: now.Add(-time.Hour), Err: "disk full"}
	c := judgeWear(wearFacts{r: r, daemon: true, now: now})
	if c.Status != Pass || !strings.Contains(c.Line, "files were not measured (stat cache.db: input/output error)") || !strings.Contains(c.Line, "last maintenance 1h0m0s ago failed: disk full") {
		t.Errorf("%s: %s", c.Status, c.Line)
	}
}
