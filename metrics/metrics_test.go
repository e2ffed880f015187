package metrics

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"gateagent/cache"
	"gateagent/gate"
	"gateagent/health"
	"gateagent/internal/eventually"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/scanner"
	"gateagent/verify"
)

var t0 = time.Date(2027, 3, 1, 8, 0, 0, 0, time.UTC)

// testCert is a cert ID that must never show in any output.
var testCert = verify.CertID{0xa1, 0xb2, 0xc3, 0xd4, 0xe5, 0xf6, 0x07, 0x18, 0x29, 0x3a, 0x4b, 0x5c, 0x6d, 0x7e, 0x8f, 0x90}

// fakeClock is the tests' clock: one they set and advance.
type fakeClock = issuertest.Clock

func newServer(t testing.TB, m *Metrics) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	return srv
}

func get(t testing.TB, url string) (int, string) {
	t.Helper()
	code, body, err := tryGet(url)
	if err != nil {
		t.Fatal(err)
	}
	return code, body
}

// tryGet is get for goroutines other than the test's, which must not
// call t.Fatal.
func tryGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape GETs /metrics and returns its samples by "name{labels}" (labels
// as the text format writes them: sorted, quoted).
func scrape(t testing.TB, srv *httptest.Server) map[string]float64 {
	t.Helper()
	got, err := tryScrape(srv)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func tryScrape(srv *httptest.Server) (map[string]float64, error) {
	code, body, err := tryGet(srv.URL + "/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %d\n%s", code, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

func wantSample(t *testing.T, got map[string]float64, name string, want float64) {
	t.Helper()
	v, ok := got[name]
	switch {
	case !ok:
		t.Errorf("%s missing", name)
	case math.Abs(v-want) > 1e-9*math.Max(1, math.Abs(want)):
		t.Errorf("%s = %v, want %v", name, v, want)
	}
}

func wantAbsent(t *testing.T, got map[string]float64, names ...string) {
	t.Helper()
	for _, n := range names {
		for k := range got {
			if k == n || strings.HasPrefix(k, n+"{") {
				t.Errorf("%s present (%v), want it left out", k, got[k])
			}
		}
	}
}

func decision(r verify.Reason, offset int64) verify.Decision {
	d := verify.Decision{Reason: r, CertID: testCert, Step: 29_000_000, At: t0}
	if d.Authentic() {
		d.StepOffset = offset
	}
	return d
}

func grant(scanAt time.Time, took time.Duration, st gate.Stages) gate.Outcome {
	return gate.Outcome{Kind: gate.Granted, Decision: decision(verify.OK, 0), ScanAt: scanAt, At: scanAt.Add(took), Stages: st}
}

func TestObserveCounters(t *testing.T) {
	m := New(Info{GateID: "G-07", Direction: "in"}, Sources{}, Options{})
	srv := newServer(t, m)

	st := gate.Stages{Read: 400 * time.Microsecond, Decode: 20 * time.Microsecond, Lookup: 80 * time.Microsecond,
		Tag: 30 * time.Microsecond, Record: 600 * time.Microsecond, Relay: 70 * time.Microsecond}
	m.Observe(grant(t0, 1200*time.Microsecond, st))
	m.Observe(grant(t0.Add(time.Second), 4*time.Millisecond, gate.Stages{Tag: 30 * time.Microsecond}))
	m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(verify.CodeStale, -2), ScanAt: t0, At: t0.Add(time.Millisecond),
		Stages: gate.Stages{Read: 400 * time.Microsecond, Decode: 20 * time.Microsecond, Lookup: 80 * time.Microsecond, Tag: 30 * time.Microsecond}})
	m.Observe(gate.Outcome{Kind: gate.Denied, Err: errors.New("gate out of service: relay"), ScanAt: t0}) // undecided
	m.Observe(gate.Outcome{Kind: gate.Ignored, ScanAt: t0, Note: "passage under way"})
	m.Observe(gate.Outcome{Kind: gate.Passed, At: t0})
	// A grant without a scan time, and one with the times reversed: no
	// scan-to-relay sample.
	m.Observe(gate.Outcome{Kind: gate.Granted, Decision: decision(verify.OK, 0), At: t0})
	m.Observe(gate.Outcome{Kind: gate.Granted, Decision: decision(verify.OK, 0), ScanAt: t0, At: t0.Add(-time.Millisecond)})

	// Exact counters and the scan-to-relay histogram, through testutil.
	const want = `
# HELP gateagent_outcomes_total What the gate did, by kind: granted, denied, ignored, passed, forced, ...
# TYPE gateagent_outcomes_total counter
gateagent_outcomes_total{kind="blocked"} 0
gateagent_outcomes_total{kind="closed"} 0
gateagent_outcomes_total{kind="denied"} 2
gateagent_outcomes_total{kind="emergency_off"} 0
gateagent_outcomes_total{kind="emergency_on"} 0
gateagent_outcomes_total{kind="forced"} 0
gateagent_outcomes_total{kind="free_passage"} 0
gateagent_outcomes_total{kind="granted"} 4
gateagent_outcomes_total{kind="ignored"} 1
gateagent_outcomes_total{kind="lapsed"} 0
gateagent_outcomes_total{kind="passed"} 1
# HELP gateagent_scan_to_relay_seconds Granted scans: from the scanner's read of the code to the relay being set.
# TYPE gateagent_scan_to_relay_seconds histogram
gateagent_scan_to_relay_seconds_bucket{le="0.0005"} 0
gateagent_scan_to_relay_seconds_bucket{le="0.001"} 0
gateagent_scan_to_relay_seconds_bucket{le="0.002"} 1
gateagent_scan_to_relay_seconds_bucket{le="0.003"} 1
gateagent_scan_to_relay_seconds_bucket{le="0.005"} 2
gateagent_scan_to_relay_seconds_bucket{le="0.01"} 2
gateagent_scan_to_relay_seconds_bucket{le="0.02"} 2
gateagent_scan_to_relay_seconds_bucket{le="0.05"} 2
gateagent_scan_to_relay_seconds_bucket{le="0.1"} 2
gateagent_scan_to_relay_seconds_bucket{le="0.25"} 2
gateagent_scan_to_relay_seconds_bucket{le="0.5"} 2
gateagent_scan_to_relay_seconds_bucket{le="1"} 2
gateagent_scan_to_relay_seconds_bucket{le="+Inf"} 2
gateagent_scan_to_relay_seconds_sum 0.0052
gateagent_scan_to_relay_seconds_count 2
`
	if err := testutil.ScrapeAndCompare(srv.URL+"/metrics", strings.NewReader(want),
		"gateagent_outcomes_total", "gateagent_scan_to_relay_seconds"); err != nil {
		t.Error(err)
	}

	got := scrape(t, srv)
	for _, r := range verify.Reasons() {
		w := 0.0
		switch r {
		case verify.OK:
			w = 4
		case verify.CodeStale, verify.Undecided:
			w = 1
		}
		wantSample(t, got, fmt.Sprintf("gateagent_decisions_total{reason=%q}", r.String()), w)
	}
	// Stages: a zero stage is not observed (relay on the denial, all but
	// tag on the second grant).
	for stage, want := range map[string]struct {
		n   float64
		sum time.Duration
	}{
		"read":   {2, 800 * time.Microsecond},
		"decode": {2, 40 * time.Microsecond},
		"lookup": {2, 160 * time.Microsecond},
		"tag":    {3, 90 * time.Microsecond},
		"record": {1, 600 * time.Microsecond},
		"relay":  {1, 70 * time.Microsecond},
	} {
		wantSample(t, got, fmt.Sprintf(`gateagent_stage_seconds_count{stage=%q}`, stage), want.n)
		wantSample(t, got, fmt.Sprintf(`gateagent_stage_seconds_sum{stage=%q}`, stage), want.sum.Seconds())
		wantSample(t, got, fmt.Sprintf(`gateagent_stage_seconds_bucket{stage=%q,le="+Inf"}`, stage), want.n)
	}
	wantSample(t, got, `gateagent_stage_seconds_bucket{stage="read",le="0.0001"}`, 0)
	wantSample(t, got, `gateagent_stage_seconds_bucket{stage="read",le="0.0005"}`, 2)
	wantSample(t, got, `gateagent_stage_seconds_bucket{stage="tag",le="1e-05"}`, 0)
	wantSample(t, got, `gateagent_stage_seconds_bucket{stage="tag",le="5e-05"}`, 3)
	// Step offsets of authentic decisions: four grants at 0 (the two
	// without a usable scan time count too) and the stale code at -2.
	wantSample(t, got, `gateagent_token_step_offset_total{offset="0"}`, 4)
	wantSample(t, got, `gateagent_token_step_offset_total{offset="-2"}`, 1)
	wantSample(t, got, `gateagent_token_step_offset_total{offset="3"}`, 0)
	wantSample(t, got, `gateagent_build_info{direction="in",gate="G-07",version="dev"}`, 1)
	wantSample(t, got, "gateagent_up", 1)
	if _, ok := got["go_goroutines"]; !ok {
		t.Error("the Go collector is not registered")
	}
}

func TestEveryReasonPresentAtZero(t *testing.T) {
	m := New(Info{}, Sources{}, Options{})
	got := scrape(t, newServer(t, m))
	for _, r := range verify.Reasons() {
		wantSample(t, got, fmt.Sprintf("gateagent_decisions_total{reason=%q}", r.String()), 0)
	}
	if n, err := testutil.GatherAndCount(m.Registry(), "gateagent_decisions_total"); err != nil || n != len(verify.Reasons()) {
		t.Errorf("decisions_total series: %d, %v; want %d", n, err, len(verify.Reasons()))
	}
	for i := -3; i <= 3; i++ {
		wantSample(t, got, fmt.Sprintf("gateagent_token_step_offset_total{offset=\"%d\"}", i), 0)
	}
	// Nothing observed, no sources: no latency samples, no source gauges.
	wantSample(t, got, `gateagent_scan_to_relay_seconds_count`, 0)
	wantAbsent(t, got, "gateagent_feed_stale", "gateagent_cache_certificates", "gateagent_scanner_connected", "gateagent_gate_emergency")
}

func fullSources(clk *fakeClock) Sources {
	return Sources{
		Gate: func() gate.Status {
			return gate.Status{State: "locked", Emergency: true, Outcomes: map[string]uint64{"granted": 3}, Reasons: map[string]uint64{"OK": 3}}
		},
		Feed: func() keysync.Status {
			return keysync.Status{Head: 120, Offset: 1500 * time.Millisecond, OffsetOK: true, FreshAt: clk.Now().Add(-10 * time.Minute),
				MaxAge: 5 * time.Minute, Stale: true, Failures: 2, LastError: "issuer unreachable"}
		},
		Scanner: func() (scanner.Stats, bool) {
			return scanner.Stats{Connected: true, Lines: 40, Codes: 37, Rejected: 3, Suppressed: 2, Overlong: 1, Reconnects: 3,
				Endings: scanner.Endings{CRLF: 41}}, true
		},
		Cache: func() (cache.Stats, error) {
			return cache.Stats{Schema: 3, Certs: 5000, Events: 7, LastSeq: 1<<53 + 1, OldestAt: clk.Now().Add(-90 * time.Second), FileSize: 87 << 20,
				Feed: cache.FeedState{Cursor: 100, KeyID: "k2027", MaxAge: 30 * time.Minute, Epoch: 0xfedcba9876543210}}, nil
		},
		Ready: func() health.Readiness { return health.Judge(health.Parts{Gate: &gate.Status{}}) },
	}
}

// hung is the verdict on a gate whose controller does not answer.
func hung(err error) func() health.Readiness {
	return func() health.Readiness { return health.Judge(health.Parts{Gate: &gate.Status{}, Ping: err}) }
}

func TestSourceGauges(t *testing.T) {
	clk := issuertest.NewClock(t0)
	m := New(Info{GateID: "G-07", Direction: "out", Version: "1.4.0"}, fullSources(clk), Options{Now: clk.Now})
	got := scrape(t, newServer(t, m))

	wantSample(t, got, "gateagent_feed_stale", 1)
	wantSample(t, got, "gateagent_feed_last_fresh_timestamp_seconds", float64(t0.Add(-10*time.Minute).Unix()))
	wantSample(t, got, "gateagent_feed_age_seconds", 600)
	wantSample(t, got, "gateagent_feed_head", 120)
	wantSample(t, got, "gateagent_feed_lag_records", 20)
	wantSample(t, got, "gateagent_feed_failures", 2)
	wantSample(t, got, "gateagent_clock_offset_seconds", 1.5)
	wantSample(t, got, "gateagent_cache_certificates", 5000)
	wantSample(t, got, "gateagent_cache_file_bytes", 87<<20)
	wantSample(t, got, "gateagent_events_backlog", 7)
	wantSample(t, got, "gateagent_events_oldest_age_seconds", 90)
	wantSample(t, got, "gateagent_scanner_connected", 1)
	wantSample(t, got, "gateagent_scanner_reconnects_total", 3)
	wantSample(t, got, "gateagent_scanner_lines_total", 40)
	wantSample(t, got, "gateagent_scanner_codes_total", 37)
	wantSample(t, got, "gateagent_scanner_rejected_total", 3)
	wantSample(t, got, "gateagent_scanner_overlong_total", 1)
	wantSample(t, got, "gateagent_scanner_suppressed_total", 2)
	wantSample(t, got, "gateagent_gate_emergency", 1)
	wantSample(t, got, "gateagent_up", 1)
	wantSample(t, got, `gateagent_build_info{direction="out",gate="G-07",version="1.4.0"}`, 1)

	// The reconnects are a counter.
	const want = `
# HELP gateagent_scanner_reconnects_total Successful reopens of the serial scanner's port after a loss.
# TYPE gateagent_scanner_reconnects_total counter
gateagent_scanner_reconnects_total 3
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "gateagent_scanner_reconnects_total"); err != nil {
		t.Error(err)
	}
}

func TestSourceGaugesLeftOut(t *testing.T) {
	clk := issuertest.NewClock(t0)
	src := fullSources(clk)
	src.Cache = func() (cache.Stats, error) { return cache.Stats{}, errors.New("cache: stats: disk I/O error") }
	src.Scanner = func() (scanner.Stats, bool) { return scanner.Stats{}, false } // image scanner
	src.Gate = func() gate.Status { panic("broken source") }
	src.Ready = hung(errors.New("gate: controller loop unresponsive for 1s"))
	feed := src.Feed
	src.Feed = func() keysync.Status {
		s := feed()
		s.FreshAt, s.OffsetOK, s.Stale = time.Time{}, false, true // never fresh, no offset learnt
		return s
	}
	m := New(Info{}, src, Options{Now: clk.Now})
	got := scrape(t, newServer(t, m)) // fails the test unless 200

	wantAbsent(t, got,
		"gateagent_cache_certificates", "gateagent_cache_file_bytes", "gateagent_events_backlog", "gateagent_events_oldest_age_seconds",
		"gateagent_feed_lag_records", // needs the cache's cursor
		"gateagent_scanner_connected", "gateagent_scanner_reconnects_total", "gateagent_scanner_lines_total", "gateagent_scanner_overlong_total",
		"gateagent_gate_emergency",
		"gateagent_feed_age_seconds", "gateagent_feed_last_fresh_timestamp_seconds", "gateagent_clock_offset_seconds")
	wantSample(t, got, "gateagent_feed_stale", 1)
	wantSample(t, got, "gateagent_feed_head", 120)
	wantSample(t, got, "gateagent_up", 0)
	wantSample(t, got, "gateagent_ready", 0)
	wantSample(t, got, `gateagent_not_ready{cause="unresponsive"}`, 1)
	wantSample(t, got, `gateagent_decisions_total{reason="OK"}`, 0)
}

// The lag needs a known head at or ahead of the cache's cursor.
func TestFeedLag(t *testing.T) {
	for _, c := range []struct {
		head, cursor uint64
		want         float64 // -1: absent
	}{{120, 100, 20}, {100, 100, 0}, {90, 100, -1}, {0, 0, -1}} {
		src := Sources{
			Feed:  func() keysync.Status { return keysync.Status{Head: c.head} },
			Cache: func() (cache.Stats, error) { return cache.Stats{Feed: cache.FeedState{Cursor: c.cursor}}, nil },
		}
		got := scrape(t, newServer(t, New(Info{}, src, Options{})))
		if c.want < 0 {
			wantAbsent(t, got, "gateagent_feed_lag_records")
		} else {
			wantSample(t, got, "gateagent_feed_lag_records", c.want)
		}
	}
}

func TestCacheReadReused(t *testing.T) {
	clk := issuertest.NewClock(t0)
	var calls atomic.Int32
	src := Sources{Cache: func() (cache.Stats, error) {
		n := calls.Add(1)
		return cache.Stats{Certs: int(n)}, nil
	}}
	m := New(Info{}, src, Options{Now: clk.Now, CacheEvery: time.Minute})
	srv := newServer(t, m)

	wantSample(t, scrape(t, srv), "gateagent_cache_certificates", 1)
	clk.Advance(30 * time.Second)
	wantSample(t, scrape(t, srv), "gateagent_cache_certificates", 1)
	if s := m.Status(); s.Cache == nil || s.Cache.Stats == nil || s.Cache.Stats.Certs != 1 || !s.Cache.ReadAt.Equal(t0) {
		t.Errorf("status cache = %+v, want the first read", s.Cache)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("Cache called %d times within CacheEvery, want 1", n)
	}
	clk.Advance(30 * time.Second) // CacheEvery since the read
	wantSample(t, scrape(t, srv), "gateagent_cache_certificates", 2)
	if n := calls.Load(); n != 2 {
		t.Fatalf("Cache called %d times, want 2 after CacheEvery", n)
	}
	clk.Advance(-time.Hour) // the clock set back: read again rather than trust a read from the future
	wantSample(t, scrape(t, srv), "gateagent_cache_certificates", 3)

	// An error is reused too, and the gauges are left out meanwhile.
	m2 := New(Info{}, Sources{Cache: func() (cache.Stats, error) { calls.Add(1); return cache.Stats{}, errors.New("boom") }},
		Options{Now: clk.Now})
	srv2 := newServer(t, m2)
	calls.Store(0)
	wantAbsent(t, scrape(t, srv2), "gateagent_cache_certificates")
	wantAbsent(t, scrape(t, srv2), "gateagent_cache_certificates")
	if s := m2.Status(); s.Cache == nil || s.Cache.Error != "boom" || s.Cache.Stats != nil {
		t.Errorf("status cache = %+v, want the error", s.Cache)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("failing Cache called %d times within CacheEvery, want 1", n)
	}
}

// Concurrent scrapes share one read of the cache, and Observe does not wait
// for it.
func TestCacheReadSingleFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 16)
	var calls, inside, most atomic.Int32
	src := Sources{}
	src.Cache = func() (cache.Stats, error) {
		calls.Add(1)
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		entered <- struct{}{}
		<-release
		return cache.Stats{Certs: 9}, nil
	}
	m := New(Info{}, src, Options{})
	srv := newServer(t, m)

	var wg sync.WaitGroup
	results := make([]map[string]float64, 4)
	for i := range results {
		wg.Go(func() {
			var err error
			if results[i], err = tryScrape(srv); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Go(func() { m.Status() })
	<-entered // a read is under way, holding the cache's lock

	done := make(chan struct{})
	go func() {
		for range 100 {
			m.Observe(grant(t0, time.Millisecond, gate.Stages{Tag: time.Microsecond}))
		}
		m.Latency()
		m.Drift()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Observe blocked while the cache was being read")
	}
	// Every reader reaches the cache before the read under way ends: the
	// scrapes and Status are all in cacheStats, one reading, the others
	// waiting for its lock.
	eventually.True(t, 10*time.Second, "every reader in cacheStats", func() bool { return goroutinesIn("metrics.(*Metrics).cacheStats(") >= len(results)+1 })
	close(release)
	wg.Wait()
	if c, mo := calls.Load(), most.Load(); c != 1 || mo != 1 {
		t.Errorf("Cache called %d times, at most %d at once; want 1 and 1", c, mo)
	}
	for _, r := range results {
		wantSample(t, r, "gateagent_cache_certificates", 9)
	}
}

// goroutinesIn counts the goroutines whose stack holds fn, a function as
// runtime.Stack names it.
func goroutinesIn(fn string) int {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), fn)
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestHealthz: /healthz is 200 "ok" while the gate can grant, and 503 with
// each cause while it cannot, whatever the cause (not only a hung
// controller).
func TestHealthz(t *testing.T) {
	var parts atomic.Pointer[health.Parts]
	parts.Store(&health.Parts{Gate: &gate.Status{}, Feed: &keysync.Status{FreshAt: t0, MaxAge: time.Minute, Stale: true}})
	src := Sources{Ready: func() health.Readiness { return health.Judge(*parts.Load()) }}
	m := New(Info{}, src, Options{})
	srv := newServer(t, m)

	// Stale but not refusing: the gate still grants.
	if code, body := get(t, srv.URL+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("healthy: %d %q, want 200 \"ok\\n\"", code, body)
	}
	full := fmt.Errorf("cache: append decision event: %w", syscall.ENOSPC)
	parts.Store(&health.Parts{Gate: &gate.Status{RecordFault: full.Error(), RecordErr: full}, Feed: &keysync.Status{}})
	code, body := get(t, srv.URL+"/healthz")
	if code != http.StatusServiceUnavailable {
		t.Errorf("unhealthy: %d, want 503", code)
	}
	for _, want := range []string{
		"unhealthy: not_recording: grants cannot be recorded: the event log cannot be written: cache: append decision event: no space left on device\n",
		"unhealthy: never_synced: waiting for the first key sync\n",
		"run gateagent diag",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("unhealthy body %q lacks %q", body, want)
		}
	}
	got := scrape(t, srv)
	wantSample(t, got, "gateagent_up", 1)
	wantSample(t, got, "gateagent_ready", 0)
	wantSample(t, got, `gateagent_not_ready{cause="not_recording"}`, 1)
	wantSample(t, got, `gateagent_not_ready{cause="never_synced"}`, 1)
	wantSample(t, got, `gateagent_not_ready{cause="board_fault"}`, 0)
	if s := m.Status(); s.Healthy || len(s.Problems) != 2 || s.Problems[0].Cause != health.NotRecording || !strings.Contains(s.HealthError, "waiting for the first key sync") {
		t.Errorf("status: healthy %v %q %+v", s.Healthy, s.HealthError, s.Problems)
	}

	// No Ready source: healthy.
	srv2 := newServer(t, New(Info{}, Sources{}, Options{}))
	if code, body := get(t, srv2.URL+"/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("no health source: %d %q, want 200 \"ok\\n\"", code, body)
	}
	// A Ready that panics: not healthy, and the agent lives on.
	srv3 := newServer(t, New(Info{}, Sources{Ready: func() health.Readiness { panic("broken") }}, Options{}))
	if code, _ := get(t, srv3.URL+"/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("panicking health source: %d, want 503", code)
	}
}

// TestClockRefusals: the denials for the clock are counted per minute
// over the last hour, and older ones drop out.
func TestClockRefusals(t *testing.T) {
	clk := issuertest.NewClock(t0)
	m := New(Info{}, Sources{}, Options{Now: clk.Now})
	deny := func(r verify.Reason, at time.Time) {
		m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(r, 0), ScanAt: at, At: at})
	}
	deny(verify.CodeStale, t0.Add(-90*time.Minute)) // observed late, from the previous hour's slot
	for i := range 5 {
		deny(verify.CodeStale, t0.Add(time.Duration(i)*10*time.Minute))
	}
	deny(verify.CodeFromFuture, t0.Add(30*time.Minute))
	deny(verify.Revoked, t0.Add(30*time.Minute))
	clk.Advance(45 * time.Minute)
	if c := m.ClockRefusals(); c.Stale != 5 || c.Future != 1 {
		t.Errorf("after 45 minutes: %+v, want 5 stale and 1 from the future", c)
	}
	clk.Advance(30 * time.Minute) // t0+75m: the first two of t0, t0+10m have left the hour
	if c := m.ClockRefusals(); c.Stale != 3 || c.Future != 1 {
		t.Errorf("after 75 minutes: %+v, want 3 and 1", c)
	}
	if s := m.Status(); s.ClockRefusals.Stale != 3 {
		t.Errorf("status: %+v", s.ClockRefusals)
	}
	clk.Advance(2 * time.Hour)
	if c := m.ClockRefusals(); c.Stale != 0 || c.Future != 0 {
		t.Errorf("two hours later: %+v, want none", c)
	}
	if n := testing.AllocsPerRun(100, func() { deny(verify.CodeStale, clk.Now()) }); n != 0 {
		t.Errorf("Observe of a clock refusal allocates %v times", n)
	}
}

func TestStatusJSON(t *testing.T) {
	clk := issuertest.NewClock(t0)
	m := New(Info{GateID: "G-07", Direction: "in", Version: "1.4.0"}, fullSources(clk), Options{Now: clk.Now})
	srv := newServer(t, m)
	m.Observe(grant(t0, 1200*time.Microsecond, gate.Stages{Read: 300 * time.Microsecond, Tag: 20 * time.Microsecond}))
	m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(verify.CodeFromFuture, 1), ScanAt: t0})
	clk.Advance(90 * time.Second)

	resp, err := http.Get(srv.URL + "/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/json" {
		t.Fatalf("GET /status: %d %s", resp.StatusCode, ct)
	}
	raw, _ := io.ReadAll(resp.Body)
	var s Status
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("decode: %v\n%s", err, raw)
	}
	if s.GateID != "G-07" || s.Direction != "in" || s.Version != "1.4.0" || !s.StartedAt.Equal(t0) || s.UptimeSeconds != 90 ||
		!s.Now.Equal(t0.Add(90*time.Second)) || !s.Healthy {
		t.Errorf("header fields: %+v", s)
	}
	if s.Gate == nil || s.Gate.State != "locked" || !s.Gate.Emergency || s.Gate.Reasons["OK"] != 3 {
		t.Errorf("gate: %+v", s.Gate)
	}
	if s.Feed == nil || s.Feed.Head != 120 || !s.Feed.Stale || s.Feed.OffsetSeconds != 1.5 || s.Feed.MaxAgeSeconds != 300 || s.Feed.LastError != "issuer unreachable" {
		t.Errorf("feed: %+v", s.Feed)
	}
	if s.Scanner == nil || !s.Scanner.Present || s.Scanner.Reconnects != 3 || s.Scanner.Lines != 40 || s.Scanner.Codes != 37 ||
		s.Scanner.Rejected != 3 || s.Scanner.Endings.CRLF != 41 || s.Scanner.Sends != "crlf" {
		t.Errorf("scanner: %+v", s.Scanner)
	}
	if s.Cache != nil && s.Cache.Stats != nil && (s.Cache.Stats.LastSeq != 1<<53+1 || s.Cache.Stats.Feed.Epoch != 0xfedcba9876543210) {
		t.Errorf("64-bit numbers did not come back whole: %+v", s.Cache.Stats)
	}
	if s.Cache == nil || s.Cache.Stats == nil || s.Cache.Stats.Certs != 5000 || s.Cache.Stats.Events != 7 ||
		s.Cache.Stats.Feed.Cursor != 100 || !s.Cache.ReadAt.Equal(t0.Add(90*time.Second)) || s.Cache.Error != "" {
		t.Errorf("cache: %+v", s.Cache)
	}
	if len(s.Latency) != 7 {
		t.Fatalf("latency: %d stages, want 7", len(s.Latency))
	}
	for i, want := range []string{"read", "decode", "lookup", "tag", "record", "relay", "scan_to_relay"} {
		if s.Latency[i].Stage != want {
			t.Errorf("latency[%d] = %s, want %s", i, s.Latency[i].Stage, want)
		}
	}
	if l := s.Latency[6]; l.Count != 1 || l.P50 != 1200*time.Microsecond || l.Max != 1200*time.Microsecond || len(l.Buckets) != 12 {
		t.Errorf("scan_to_relay: %+v", l)
	}
	if l := s.Latency[0]; l.P99 != 300*time.Microsecond || l.Buckets[3] != (Bucket{500 * time.Microsecond, 1}) {
		t.Errorf("read: %+v", l)
	}
	if s.Drift.N != 2 || s.Drift.Counts[0] != 1 || s.Drift.Counts[1] != 1 || s.Drift.Mean != 0.5 {
		t.Errorf("drift: %+v", s.Drift)
	}
	// Durations are seconds in JSON, the unit in the key; names are
	// snake_case; 64-bit positions are strings, read whole by JavaScript.
	for _, want := range []string{`"p50_seconds": 0.0012`, `"le_seconds": 0.0005`, `"cache_read_at"`, `"uptime_seconds": 90`, `"started_at"`, `"present": true`,
		`"clock_offset_seconds": 1.5`, `"rtt_seconds": 0`, `"max_age_seconds": 300`, `"max_age_seconds": 1800`, `"head": "120"`,
		`"cursor": "100"`, `"epoch": "18364758544493064720"`, `"last_event_seq": "9007199254740993"`, `"codes": 37`, `"rejected": 3`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("status JSON lacks %s", want)
		}
	}
	// No duration left in nanoseconds, no key of a duration without its unit.
	for _, bad := range []string{`"clock_offset":`, `"rtt":`, `"max_age":`, `1500000000`, `1800000000000`} {
		if strings.Contains(string(raw), bad) {
			t.Errorf("status JSON holds %s:\n%s", bad, raw)
		}
	}
	// Every number a JavaScript reader would get wrong is a string.
	var generic any
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				walk(fmt.Sprintf("%s[%d]", path, i), x)
			}
		case json.Number:
			if n, ok := new(big.Int).SetString(string(v), 10); ok && n.CmpAbs(big.NewInt(1<<53)) > 0 {
				t.Errorf("%s = %s: a number beyond 2^53 in JSON", path, v)
			}
		}
	}
	walk("", generic)

	// The image scanner, a failing cache and an unhealthy controller.
	src := fullSources(clk)
	src.Scanner = func() (scanner.Stats, bool) { return scanner.Stats{}, false }
	src.Cache = func() (cache.Stats, error) { return cache.Stats{}, errors.New("cache: stats: read error") }
	src.Ready = hung(errors.New("gate: controller loop unresponsive for 1s"))
	s = New(Info{}, src, Options{Now: clk.Now}).Status()
	if s.Scanner == nil || s.Scanner.Present || s.Cache == nil || s.Cache.Error != "cache: stats: read error" || s.Cache.Stats != nil ||
		s.Healthy || s.HealthError == "" {
		t.Errorf("degraded status: %+v scanner %+v cache %+v", s, s.Scanner, s.Cache)
	}
	// No sources: those parts are absent.
	s = New(Info{}, Sources{}, Options{}).Status()
	if s.Gate != nil || s.Feed != nil || s.Scanner != nil || s.Cache != nil || !s.Healthy || s.Version != "dev" {
		t.Errorf("no sources: %+v", s)
	}
}

func TestDrift(t *testing.T) {
	m := New(Info{}, Sources{}, Options{})
	if d := m.Drift(); d.N != 0 || len(d.Counts) != 0 || d.Mean != 0 {
		t.Errorf("empty drift: %+v", d)
	}
	observe := func(n int, r verify.Reason, off int64) {
		for range n {
			d := decision(r, off)
			d.StepOffset = off // even where not authentic: must be ignored there
			kind := gate.Denied
			if r == verify.OK {
				kind = gate.Granted
			}
			m.Observe(gate.Outcome{Kind: kind, Decision: d, ScanAt: t0})
		}
	}
	observe(100, verify.OK, 5)
	observe(100, verify.Passback, 0)
	observe(50, verify.BadTag, 7)      // not authentic
	observe(50, verify.UnknownCert, 7) // not authentic
	observe(56, verify.Expired, 0)
	observe(50, verify.Malformed, -7) // not authentic
	observe(100, verify.OK, -1)
	m.Observe(gate.Outcome{Kind: gate.Passed, Decision: decision(verify.OK, 9)}) // not a decision outcome

	// 356 authentic decisions: the last 256 are 156 at 0 and 100 at -1.
	d := m.Drift()
	if d.N != 256 || len(d.Counts) != 2 || d.Counts[0] != 156 || d.Counts[-1] != 100 || d.Mean != -100.0/256 {
		t.Errorf("drift = %+v, want 156 at 0 and 100 at -1", d)
	}
	got := scrape(t, newServer(t, m))
	wantSample(t, got, `gateagent_token_step_offset_total{offset="3"}`, 100) // 5, clamped
	wantSample(t, got, `gateagent_token_step_offset_total{offset="0"}`, 156)
	wantSample(t, got, `gateagent_token_step_offset_total{offset="-1"}`, 100)
	wantSample(t, got, `gateagent_token_step_offset_total{offset="-3"}`, 0)

	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var back Drift
	if err := json.Unmarshal(b, &back); err != nil || back.N != d.N || back.Counts[-1] != 100 || back.Mean != d.Mean {
		t.Errorf("JSON round trip: %s → %+v, %v", b, back, err)
	}
}

func TestLatency(t *testing.T) {
	m := New(Info{}, Sources{}, Options{})
	// Tag: 1..100 µs, in a scrambled order.
	for i := range 100 {
		us := (i*37)%100 + 1
		m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(verify.BadTag, 0), Stages: gate.Stages{Tag: time.Duration(us) * time.Microsecond}})
	}
	// Read: 76 slow samples, then 1024 of 1 ms: the slow ones fell out of
	// the ring, but not out of the counts.
	for range 76 {
		m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(verify.BadTag, 0), Stages: gate.Stages{Read: 800 * time.Millisecond}})
	}
	for range latencyRingSize {
		m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(verify.BadTag, 0), Stages: gate.Stages{Read: time.Millisecond}})
	}
	lat := m.Latency()
	if len(lat) != 7 {
		t.Fatalf("%d stages", len(lat))
	}
	tag := lat[3]
	if tag.Stage != "tag" || tag.Count != 100 || tag.P50 != 50*time.Microsecond || tag.P99 != 99*time.Microsecond || tag.Max != 100*time.Microsecond {
		t.Errorf("tag = %+v, want 100 samples, P50 50µs, P99 99µs, max 100µs", tag)
	}
	wantBuckets := map[time.Duration]uint64{10 * time.Microsecond: 10, 50 * time.Microsecond: 50, 100 * time.Microsecond: 100, 500 * time.Microsecond: 100, time.Second: 100}
	for _, b := range tag.Buckets {
		if w, ok := wantBuckets[b.UpperBound]; ok && b.Count != w {
			t.Errorf("tag bucket ≤%v = %d, want %d", b.UpperBound, b.Count, w)
		}
	}
	read := lat[0]
	if read.Count != 1100 || read.P50 != time.Millisecond || read.P99 != time.Millisecond || read.Max != time.Millisecond {
		t.Errorf("read = %+v, want 1100 samples, the last 1024 all 1ms", read)
	}
	if n := len(read.Buckets); n != 12 || read.Buckets[n-1].UpperBound != time.Second || read.Buckets[n-1].Count != 1100 ||
		read.Buckets[n-2].Count != 1024 {
		t.Errorf("read buckets = %+v", read.Buckets)
	}
	for _, i := range []int{1, 2, 4, 5, 6} {
		if l := lat[i]; l.Count != 0 || l.P50 != 0 || l.Max != 0 || len(l.Buckets) != 12 {
			t.Errorf("%s = %+v, want empty", l.Stage, l)
		}
	}
	if lat[6].Buckets[0].UpperBound != 500*time.Microsecond || lat[0].Buckets[0].UpperBound != 10*time.Microsecond {
		t.Errorf("bucket bounds: scan_to_relay from %v, read from %v", lat[6].Buckets[0].UpperBound, lat[0].Buckets[0].UpperBound)
	}

	b, err := json.Marshal(tag)
	if err != nil {
		t.Fatal(err)
	}
	var back StageLatency
	if err := json.Unmarshal(b, &back); err != nil || back.P50 != tag.P50 || back.P99 != tag.P99 || back.Max != tag.Max ||
		len(back.Buckets) != len(tag.Buckets) || back.Buckets[0] != tag.Buckets[0] {
		t.Errorf("JSON round trip: %s → %+v, %v", b, back, err)
	}
	if !strings.Contains(string(b), `"p50_seconds":0.00005`) {
		t.Errorf("JSON %s: want durations in seconds", b)
	}
}

func TestMethodsAndPaths(t *testing.T) {
	srv := newServer(t, New(Info{}, Sources{}, Options{}))
	for _, p := range []string{"/healthz", "/status", "/metrics"} {
		resp, err := http.Post(srv.URL+p, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s: %d, want 405", p, resp.StatusCode)
		}
		resp, err = http.Head(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("HEAD %s: %d, want 200", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/", "/metricz", "/metrics/", "/status/x", "/debug/pprof/"} {
		if code, _ := get(t, srv.URL+p); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
}

// No cert ID reaches /metrics, /status or /healthz, even where a source's
// error text names one.
func TestNoIdentityInOutput(t *testing.T) {
	clk := issuertest.NewClock(t0)
	id := testCert.String()
	src := fullSources(clk)
	feed, cacheSrc := src.Feed, src.Cache
	src.Feed = func() keysync.Status {
		s := feed()
		s.LastError = "feed: bad document: upsert 3 (cert " + id + "): unknown status 9"
		return s
	}
	src.Cache = func() (cache.Stats, error) {
		s, _ := cacheSrc()
		s.Feed.Resync = &cache.Resync{Epoch: 4, Snapshot: 90, After: testCert, Certs: 1200}
		return s, nil
	}
	src.Scanner = func() (scanner.Stats, bool) {
		return scanner.Stats{LastError: "read " + strings.ToUpper(id)}, true
	}
	src.Ready = hung(errors.New("stuck on " + id))
	m := New(Info{GateID: "G-07"}, src, Options{Now: clk.Now})
	srv := newServer(t, m)
	for _, r := range verify.Reasons() {
		m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(r, 1), ScanAt: t0, At: t0.Add(time.Millisecond)})
	}
	m.Observe(grant(t0, time.Millisecond, gate.Stages{Tag: time.Microsecond}))

	var bodies []string
	for _, p := range []string{"/metrics", "/status", "/healthz"} {
		_, body := get(t, srv.URL+p)
		bodies = append(bodies, body)
	}
	// And with the cache failing with the ID in its error.
	src.Cache = func() (cache.Stats, error) { return cache.Stats{}, fmt.Errorf("cache: corrupt: record of cert %s", id) }
	_, body := get(t, newServer(t, New(Info{}, src, Options{})).URL+"/status")
	bodies = append(bodies, body)

	for i, body := range bodies {
		low := strings.ToLower(body)
		for _, part := range []string{id, id[:16], id[16:]} {
			if strings.Contains(low, part) {
				t.Errorf("output %d holds the cert ID (%s):\n%s", i, part, body)
			}
		}
	}
	if !strings.Contains(bodies[1], `"certs": 1200`) || !strings.Contains(bodies[1], "[redacted]") || !strings.Contains(bodies[3], "[redacted]") {
		t.Errorf("status lacks the resync progress or the redacted errors:\n%s\n%s", bodies[1], bodies[3])
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"":                                      "",
		"issuer unreachable":                    "issuer unreachable",
		"cursor 12345678901234567 behind":       "cursor 12345678901234567 behind", // a number, not an ID
		"cert a1b2c3d4e5f60718293a4b5c6d7e8f90": "cert [redacted]",
		"(cert A1B2C3D4E5F60718293A4B5C6D7E8F90)":                     "(cert [redacted])",
		"after a1b2c3d4e5f60718 and 12345678901234567890123456789012": "after [redacted] and [redacted]",
		"deadbeef": "deadbeef",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// Observe from the controller's goroutine (and a second caller) while
// scrapes, /status and diag's readers run: clean under -race.
func TestConcurrentObserveAndScrape(t *testing.T) {
	clk := issuertest.NewClock(t0)
	m := New(Info{GateID: "G-07"}, fullSources(clk), Options{Now: clk.Now, CacheEvery: time.Millisecond})
	srv := newServer(t, m)

	stop := make(chan struct{})
	var observed atomic.Int64
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			st := gate.Stages{Read: 300 * time.Microsecond, Decode: 10 * time.Microsecond, Lookup: 50 * time.Microsecond,
				Tag: 20 * time.Microsecond, Record: 500 * time.Microsecond, Relay: 60 * time.Microsecond}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if (i+w)%3 == 0 {
					m.Observe(gate.Outcome{Kind: gate.Denied, Decision: decision(verify.CodeStale, int64(i%5-2)), ScanAt: t0, Stages: st})
				} else {
					m.Observe(grant(t0, time.Duration(i%3000)*time.Microsecond, st))
				}
				observed.Add(1)
			}
		})
	}
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for range 20 {
				clk.Advance(time.Millisecond)
				if _, err := tryScrape(srv); err != nil {
					t.Error(err)
				}
				if code, _, err := tryGet(srv.URL + "/status"); err != nil || code != 200 {
					t.Errorf("/status: %d, %v", code, err)
				}
				m.Latency()
				m.Drift()
			}
		})
	}
	readers.Wait()
	close(stop)
	wg.Wait()

	got := scrape(t, srv)
	total := got[`gateagent_outcomes_total{kind="granted"}`] + got[`gateagent_outcomes_total{kind="denied"}`]
	if int64(total) != observed.Load() {
		t.Errorf("outcomes counted %v, observed %d", total, observed.Load())
	}
	var lat StageLatency
	for _, l := range m.Latency() {
		if l.Stage == "tag" {
			lat = l
		}
	}
	if int64(lat.Count) != observed.Load() || lat.P50 != 20*time.Microsecond {
		t.Errorf("tag latency %+v after %d outcomes", lat, observed.Load())
	}
	if d := m.Drift(); d.N != driftRingSize {
		t.Errorf("drift N = %d, want %d", d.N, driftRingSize)
	}
}

var benchOutcome = gate.Outcome{
	Kind:     gate.Granted,
	Decision: verify.Decision{Reason: verify.OK, CertID: testCert, StepOffset: -1, At: t0},
	ScanAt:   t0,
	At:       t0.Add(1200 * time.Microsecond),
	Stages: gate.Stages{Read: 300 * time.Microsecond, Decode: 10 * time.Microsecond, Lookup: 50 * time.Microsecond,
		Tag: 20 * time.Microsecond, Record: 700 * time.Microsecond, Relay: 60 * time.Microsecond},
}

// BenchmarkObserve is the cost of one granted scan's Observe (every stage
// set); compare with BenchmarkObserveFloor in the same run.
func BenchmarkObserve(b *testing.B) {
	m := New(Info{}, Sources{}, Options{})
	b.ReportAllocs()
	for b.Loop() {
		m.Observe(benchOutcome)
	}
}

// BenchmarkObserveFloor is the least a metrics hook can cost: one bare
// Prometheus counter Inc and one histogram Observe.
func BenchmarkObserveFloor(b *testing.B) {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "floor_total", Help: "floor"})
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "floor_seconds", Help: "floor", Buckets: scanToRelayBuckets})
	o := benchOutcome
	b.ReportAllocs()
	for b.Loop() {
		c.Inc()
		h.Observe(o.At.Sub(o.ScanAt).Seconds())
	}
}
