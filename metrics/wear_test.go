package metrics

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"gateagent/wear"
)

func wearReport(elapsed time.Duration, wchar uint64) wear.Report {
	rt := &wear.Rate{Since: t0, At: t0.Add(elapsed), Elapsed: elapsed, Total: wear.Counters{WChar: wchar + 5e6, WriteBytes: 4 * wchar, SyscW: 9000},
		Written: wear.Counters{WChar: wchar, WriteBytes: 4 * wchar, SyscW: 8000}}
	r := wear.NewReport(wear.DefaultDevice(), rt, nil)
	r.Files = &wear.Files{At: t0, CacheBytes: 90_000_000, DeltaBytes: 9_500_000, JournalBytes: 1_200_000, LiveCerts: 1_000_000}
	r.Maintenance = &wear.Maintenance{Kind: wear.MaintenanceRuns, At: t0.Add(time.Minute), Certs: 125_000, Runs: 11,
		LastRun: t0.Add(-time.Hour), LastCompact: t0.Add(-2 * time.Hour)}
	return r
}

// TestWearMetrics: the written bytes by counter, the projection and the
// lifetime it gives, the files against the live records, the last purge;
// the projection left out while the agent has run less than 10 minutes.
func TestWearMetrics(t *testing.T) {
	r := wearReport(12*time.Hour, 6.25e9) // 12.5 GB a day
	m := New(Info{}, Sources{Wear: func() wear.Report { return r }}, Options{})
	srv := newServer(t, m)
	got := scrape(t, srv)
	wantSample(t, got, `gateagent_storage_written_bytes_total{counter="wchar"}`, 6.25e9+5e6)
	wantSample(t, got, `gateagent_storage_written_bytes_total{counter="write_bytes"}`, 25e9)
	wantSample(t, got, `gateagent_storage_write_syscalls_total`, 9000)
	wantSample(t, got, `gateagent_storage_projected_bytes_per_day{counter="wchar"}`, 12.5e9)
	wantSample(t, got, `gateagent_storage_projected_bytes_per_day{counter="write_bytes"}`, 50e9)
	wantSample(t, got, `gateagent_storage_projected_lifetime_years`, 24e12/(12.5e9*4*365))
	wantSample(t, got, `gateagent_storage_service_years`, 10)
	wantSample(t, got, `gateagent_storage_file_bytes{file="cache"}`, 90_000_000)
	wantSample(t, got, `gateagent_storage_file_bytes{file="delta"}`, 9_500_000)
	wantSample(t, got, `gateagent_storage_file_bytes{file="journal"}`, 1_200_000)
	wantSample(t, got, `gateagent_storage_live_raw_bytes`, 65e6)
	wantSample(t, got, `gateagent_storage_last_maintenance_timestamp_seconds{kind="runs"}`, float64(t0.Add(time.Minute).Unix()))
	wantSample(t, got, `gateagent_storage_last_maintenance_timestamp_seconds{kind="compact"}`, float64(t0.Add(-2*time.Hour).Unix()))

	r = wearReport(5*time.Minute, 1e6)
	got = scrape(t, srv)
	wantSample(t, got, `gateagent_storage_written_bytes_total{counter="wchar"}`, 6e6)
	wantAbsent(t, got, "gateagent_storage_projected_bytes_per_day", "gateagent_storage_projected_lifetime_years")

	// Nothing written: a lifetime of +Inf, which the format carries.
	r = wearReport(time.Hour, 0)
	if v := scrape(t, srv)["gateagent_storage_projected_lifetime_years"]; !math.IsInf(v, 1) {
		t.Errorf("nothing written: lifetime %v", v)
	}
	// Without the kernel's counters: the files and the purge only.
	r = wear.NewReport(wear.DefaultDevice(), nil, wear.ErrNoCounters)
	r.Files = &wear.Files{CacheBytes: 1}
	got = scrape(t, srv)
	wantAbsent(t, got, "gateagent_storage_written_bytes_total", "gateagent_storage_projected_bytes_per_day")
	wantSample(t, got, `gateagent_storage_file_bytes{file="cache"}`, 1)
}

// TestWearStatus: /status's storage part, in seconds and bytes; the
// lifetime absent when it is not a number JSON can carry.
func TestWearStatus(t *testing.T) {
	r := wearReport(12*time.Hour, 6.25e9)
	m := New(Info{}, Sources{Wear: func() wear.Report { return r }}, Options{})
	srv := newServer(t, m)
	status := func() (map[string]any, string) {
		_, body := get(t, srv.URL+"/status")
		var s struct {
			Storage map[string]any `json:"storage"`
		}
		if err := json.Unmarshal([]byte(body), &s); err != nil || s.Storage == nil {
			t.Fatalf("/status: %v\n%s", err, body)
		}
		return s.Storage, body
	}
	s, body := status()
	want := map[string]any{"counter": "wchar", "device_bytes": 8e9, "rated_cycles": 3000.0, "device_amplification": 4.0, "service_years": 10.0,
		"measured_seconds": 43200.0, "bytes_per_day": 12.5e9, "write_bytes_per_day": 50e9, "projected_from": "since_start",
		"lifetime_short": true, "cache_file_bytes": 90e6, "delta_file_bytes": 9.5e6, "journal_file_bytes": 1.2e6, "live_certificates": 1e6, "live_raw_bytes": 65e6,
		"compaction": "runs: written once, deleted whole; the file compacted when much of it is free", "budget_bytes_per_day": math.Round(24e12 / (4 * 365 * 10))}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("storage.%s = %v, want %v", k, s[k], v)
		}
	}
	if y, _ := s["lifetime_years"].(float64); math.Abs(y-1.315) > 0.001 {
		t.Errorf("lifetime_years %v", s["lifetime_years"])
	}
	if v, _ := s["cache_file_vs_live"].(float64); math.Abs(v-1.531) > 0.001 {
		t.Errorf("cache_file_vs_live %v", s["cache_file_vs_live"])
	}
	if w, _ := s["written_since_start"].(map[string]any); w["wchar"] != 6.25e9 || w["write_bytes"] != 25e9 {
		t.Errorf("written_since_start %v", s["written_since_start"])
	}
	if mt, _ := s["last_maintenance"].(map[string]any); mt["kind"] != "runs" || mt["certs"] != 125000.0 || mt["runs"] != 11.0 || mt["last_compact"] == nil {
		t.Errorf("last_maintenance %v", s["last_maintenance"])
	}
	r = wearReport(time.Hour, 0) // +Inf years: left out, the JSON still served
	if s, body = status(); s["lifetime_years"] != nil || s["lifetime_short"] != false || strings.Contains(body, "Inf") {
		t.Errorf("nothing written: %v", s)
	}
	r = wearReport(time.Minute, 1e6)
	if s, _ = status(); s["bytes_per_day"] != nil || s["lifetime_years"] != nil || s["measured_seconds"] != 60.0 {
		t.Errorf("first minute: %v", s)
	}
}
