package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"gateagent/config"
	"gateagent/control"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/hw/hwtest"
	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
)

// diagStation is a running agent with its control socket in a temp dir.
func diagStation(t *testing.T, mods ...func(*config.Config)) (*station, string) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	st := newStation(t, stationOpts{mod: func(c *config.Config) {
		c.Control.Socket = sock
		for _, m := range mods {
			m(c)
		}
	}})
	// The socket opens after the scanner: wait for it, as a technician
	// would see it.
	waitSocket(t, sock)
	return st, sock
}

// runDiag runs `gateagent diag ARGS --socket SOCK` as a technician would
// against the running agent, and returns its exit status and output.
func runDiag(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	var out bytes.Buffer
	code, errs := runDiagTo(t, sock, &out, args...)
	return code, out.String(), errs
}

// runDiagTo is runDiag, its standard output written to out as it comes.
func runDiagTo(t *testing.T, sock string, out io.Writer, args ...string) (int, string) {
	t.Helper()
	var errb bytes.Buffer
	// No config file: diag finds the agent by its socket alone.
	code := diag.Command(append(args, "--socket", sock, "--config", filepath.Join(t.TempDir(), "none.toml")), out, &errb, diag.Env{})
	return code, errb.String()
}

// firstWrite is a shared buffer that closes started at its first write.
type firstWrite struct {
	syncbuf.Buffer
	once    sync.Once
	started chan struct{}
}

func (w *firstWrite) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	w.once.Do(func() { close(w.started) })
	return n, err
}

// TestDiagThroughTheRunningAgent: with the agent running, diag answers
// from the agent's own state over the control socket, and its latency
// figures come from the agent's scans.
func TestDiagThroughTheRunningAgent(t *testing.T) {
	st, sock := diagStation(t)
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	st.walkThrough()

	code, out, errs := runDiag(t, sock, "--json")
	var r diag.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("no report (%v): %s %s", err, out, errs)
	}
	if r.Mode != "daemon" || r.Gate != "E2E-01" {
		t.Errorf("mode %q gate %q", r.Mode, r.Gate)
	}
	for _, ch := range r.Checks {
		if ch.Status != diag.Pass && !(ch.Name == diag.NamePeers && ch.Status == diag.Skip) { // no [station] group here
			t.Errorf("%s is %s: %s", ch.Name, ch.Status, ch.Line)
		}
	}
	if code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	lat, _ := r.Find(diag.NameLatency)
	if !strings.Contains(lat.Line, "over 1 grant;") {
		t.Errorf("latency line: %s", lat.Line)
	}
	sc, _ := r.Find(diag.NameScanner)
	if !strings.Contains(sc.Line, "connected: 1 code read, 0 rejected lines") || !strings.Contains(sc.Line, "the scanner ends codes with CR") {
		t.Errorf("scanner line: %s", sc.Line)
	}

	// The per-stage histogram: every stage of the grant has its sample.
	code, out, _ = runDiag(t, sock, "latency")
	for _, stage := range []string{"read", "decode", "lookup", "tag", "record", "relay", "scan_to_relay"} {
		if !strings.Contains(out, stage) {
			t.Errorf("latency histogram lacks %s:\n%s", stage, out)
		}
	}
	if code != 0 || !strings.Contains(out, "<=") {
		t.Errorf("latency: exit %d\n%s", code, out)
	}

	// A token explained by the agent (its cache is locked to anyone else).
	code, out, errs = runDiag(t, sock, "token", st.token(c.ID, time.Now()))
	if code != 2 || !strings.Contains(out, "PASSBACK") {
		t.Errorf("diag token of a code that just passed: exit %d\n%s\n%s", code, out, errs)
	}

	// Prometheus metrics over the same socket.
	resp, err := control.NewClient(sock).Do(context.Background(), http.MethodGet, "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`gateagent_decisions_total{reason="OK"} 1`, "gateagent_scan_to_relay_seconds_count 1", "gateagent_events_backlog", "gateagent_scanner_reconnects_total 0"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestDiagScanMovesNothing: diag scan through the running agent explains
// the next code and neither moves the relay nor records a decision.
func TestDiagScanMovesNothing(t *testing.T) {
	st, sock := diagStation(t)
	c := st.issue()
	before := len(st.events())
	done := make(chan struct{})
	var code int
	var out string
	go func() {
		defer close(done)
		code, out, _ = runDiag(t, sock, "scan", "--timeout", "10s")
	}()
	// Offer the code once diag waits for it at the gate.
	eventually.True(t, 10*time.Second, "diag scan waiting at the gate", func() bool { return st.ag.Gate().Status().ScanWaiter })
	st.write(st.token(c.ID, time.Now()) + "\r")
	<-done
	if code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("diag scan: exit %d\n%s", code, out)
	}
	if got := levels(st.relayOuts()); got != "L" {
		t.Errorf("relay driven %s during diag scan, want only L (safe at start)", got)
	}
	for _, e := range st.events()[before:] {
		if e.Kind == event.Decision {
			t.Errorf("diag scan recorded a decision: %+v", e)
		}
	}
}

// TestDiagRelayPulse: the technician's relay test through the running
// agent moves the relay once, is confirmed by the passage sensor, and is
// in the event log.
func TestDiagRelayPulse(t *testing.T) {
	st, sock := diagStation(t)
	// Someone pushes through when the relay unlocks, and is out again
	// once the gate has seen them in the passage.
	outs := st.pins.WaitOut(hwtest.Relay) // subscribed before the test can move it
	go func() {
		for l := range outs {
			if l == unlocked {
				st.pins.Set(hwtest.Passage, gpio.High)
				// Not seen within 10 s: diag relay below says nobody passed.
				eventually.Within(10*time.Second, func() bool { return st.ag.Gate().Status().Passage })
				st.pins.Set(hwtest.Passage, gpio.Low)
				return
			}
		}
	}()
	code, out, errs := runDiag(t, sock, "relay", "--pulse", "300ms")
	if code != 0 || !strings.Contains(out, "PASS") || !strings.Contains(out, "passage sensor saw someone pass") {
		t.Fatalf("diag relay: exit %d\n%s%s", code, out, errs)
	}
	if got := levels(st.relayOuts()); got != "LUL" {
		t.Errorf("relay driven %s, want LUL", got)
	}
	found := false
	for _, e := range st.events() {
		found = found || e.Kind == event.Technician && strings.Contains(e.Detail, "relay")
	}
	if !found {
		t.Error("no technician event for the relay test")
	}
	// Nor through the socket without a pulse (0 is not "the default").
	for _, q := range []string{"", "?pulse=0", "?pulse=0s", "?pulse=-1s"} {
		resp, err := control.NewClient(sock).Do(context.Background(), http.MethodPost, "/diag/relay"+q, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("POST /diag/relay%s: %d, want 400", q, resp.StatusCode)
		}
	}
	// Without --pulse the relay is never moved.
	if code, _, errs := runDiag(t, sock, "relay"); code != 64 || !strings.Contains(errs, "--pulse") {
		t.Errorf("diag relay without --pulse: exit %d: %s", code, errs)
	}
	if got := levels(st.relayOuts()); got != "LUL" {
		t.Errorf("relay driven %s after a refused test", got)
	}
}

// TestDiagSensorsLive streams the inputs from the running agent.
func TestDiagSensorsLive(t *testing.T) {
	st, sock := diagStation(t)
	stdout := &firstWrite{started: make(chan struct{})}
	done := make(chan int, 1)
	go func() {
		code, _ := runDiagTo(t, sock, stdout, "sensors", "--seconds", "1")
		done <- code
	}()
	// The emergency engages once diag has printed the inputs as they were.
	select {
	case <-stdout.started:
	case <-time.After(10 * time.Second):
		t.Fatal("diag sensors printed nothing within 10 s")
	}
	st.pins.Set(hwtest.Emergency, gpio.High)
	code, out := <-done, stdout.String()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) < 2 || !strings.Contains(lines[0], "emergency=released") || !strings.Contains(out, "emergency=ENGAGED") {
		t.Fatalf("diag sensors: exit %d\n%s", code, out)
	}
	st.pins.Set(hwtest.Emergency, gpio.Low)
	st.want(gate.EmergencyOn)
}

// TestMetricsOnLoopback: control.metrics serves status and metrics over
// TCP, read only: none of diag's requests, which can move the relay.
func TestMetricsOnLoopback(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	newStation(t, stationOpts{mod: func(c *config.Config) { c.Control.Metrics = addr }})
	// get asks the metrics address, which may not be listening yet.
	get := func(method, path string) int {
		t.Helper()
		var code int
		var err error
		if !eventually.Within(10*time.Second, func() bool {
			req, _ := http.NewRequest(method, "http://"+addr+path, nil)
			var resp *http.Response
			if resp, err = http.DefaultClient.Do(req); err != nil {
				return false
			}
			resp.Body.Close()
			code = resp.StatusCode
			return true
		}) {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return code
	}
	// /healthz is 200 once the gate is in service (its first key sync).
	eventually.True(t, 10*time.Second, "GET /healthz on the metrics address: 200", func() bool { return get(http.MethodGet, "/healthz") == 200 })
	for path, want := range map[string]int{"/metrics": 200, "/status": 200, "/healthz": 200, "/diag": 404} {
		if got := get(http.MethodGet, path); got != want {
			t.Errorf("GET %s on the metrics address: %d, want %d", path, got, want)
		}
	}
	for _, path := range []string{"/diag/relay?pulse=500ms", "/diag/indicators", "/diag/scan"} {
		if got := get(http.MethodPost, path); got != 404 && got != 405 {
			t.Errorf("POST %s on the metrics address: %d, want 404 or 405", path, got)
		}
	}
}
