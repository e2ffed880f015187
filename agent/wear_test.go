package agent_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gateagent/config"
	"gateagent/control"
	"gateagent/diag"
	"gateagent/gate"
	"gateagent/wear"
)

// wearStation is a running agent whose meter reads the process's real
// /proc/self/io on a clock the test moves (by shift), having let one
// passenger through (its event and passage written with fsync).
func wearStation(t *testing.T, shift *atomic.Int64, mods ...func(*config.Config)) (*station, string) {
	meter := wear.NewMeter(wear.ReadSelf, func() time.Time { return time.Now().Add(time.Duration(shift.Load())) })
	sock := t.TempDir() + "/control.sock"
	st := newStation(t, stationOpts{wear: meter, mod: func(c *config.Config) {
		c.Control.Socket = sock
		for _, m := range mods {
			m(c)
		}
	}})
	waitSocket(t, sock)
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	st.walkThrough()
	return st, sock
}

// storageStatus is /status's storage part, from the control socket.
func storageStatus(t *testing.T, sock string) map[string]any {
	t.Helper()
	resp, err := control.NewClient(sock).Do(context.Background(), http.MethodGet, "/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var s struct {
		Storage map[string]any `json:"storage"`
	}
	if err := json.Unmarshal(body, &s); err != nil || s.Storage == nil {
		t.Fatalf("/status has no storage part (%v): %s", err, body)
	}
	return s.Storage
}

// TestDiagWearPass: through the running agent, diag wear measures first,
// then, a day later on the meter's clock, projects the agent's real
// writes to a lifetime far beyond the default device's service life.
func TestDiagWearPass(t *testing.T) {
	var shift atomic.Int64
	_, sock := wearStation(t, &shift)

	code, out, errs := runDiag(t, sock, "wear")
	if code != 0 || !strings.HasPrefix(out, "PASS") || !strings.Contains(out, "measuring:") || !strings.Contains(out, "since the agent started") {
		t.Fatalf("diag wear at start: exit %d\n%s\n%s", code, out, errs)
	}
	if s := storageStatus(t, sock); s["bytes_per_day"] != nil || s["counter"] != "wchar" || s["device_bytes"] != 8e9 {
		t.Errorf("/status at start: %v", s)
	}

	shift.Store(int64(wear.Day + time.Minute))
	code, out, errs = runDiag(t, sock, "wear", "--json")
	var c diag.Check
	if err := json.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("diag wear --json: %v\n%s\n%s", err, out, errs)
	}
	if code != 0 || c.Status != diag.Pass || !strings.Contains(c.Line, "over the last 24 h") || !strings.Contains(c.Line, "planned 10") {
		t.Fatalf("a day later: exit %d, %s: %s", code, c.Status, c.Line)
	}
	perDay, _ := c.Facts["bytes_per_day"].(float64)
	years, _ := c.Facts["lifetime_years"].(float64)
	// The grant's event and passage alone were written with fsync: a few
	// pages each.
	if perDay < 8192 || years < 10 || c.Facts["projected_from"] != wear.FromLast24h {
		t.Errorf("a day later: %v a day, %v years, from %v", c.Facts["bytes_per_day"], c.Facts["lifetime_years"], c.Facts["projected_from"])
	}
	if !strings.Contains(c.Line, "certificate files") || !strings.Contains(c.Line, "(cache ") || !strings.Contains(c.Line, "live records (1 certificate × 65 B") {
		t.Errorf("no files in the line: %s", c.Line)
	}
	s := storageStatus(t, sock)
	// /status's files are those diag measured last.
	if v, _ := s["bytes_per_day"].(float64); v < 8192 || s["lifetime_short"] != false || s["projected_from"] != "last_24h" || s["live_certificates"] != 1.0 {
		t.Errorf("/status a day later: %v", s)
	}
}

// TestDiagWearWarns: on a device described as too small to last, the
// same writes are a WARN that says what to do, in diag wear and in the
// full report (exit 1), and /status says the lifetime is short.
func TestDiagWearWarns(t *testing.T) {
	var shift atomic.Int64
	_, sock := wearStation(t, &shift, func(c *config.Config) {
		// 64 MiB, 1 cycle, amplification 100, 100 years: a budget of 18
		// bytes a day.
		c.Storage = config.Storage{DeviceBytes: 64 << 20, RatedCycles: 1, DeviceAmplification: 100, ServiceYears: 100}
	})
	shift.Store(int64(time.Hour))
	code, out, errs := runDiag(t, sock, "wear")
	if code != 1 || !strings.HasPrefix(out, "WARN") || !strings.Contains(out, "flash wears out early") || !strings.Contains(out, "projected from the 1h0m0s since the agent started") ||
		!strings.Contains(out, "planned 100") || !strings.Contains(out, "feed.interval") || !strings.Contains(out, "docs/flash.md") {
		t.Fatalf("diag wear: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = runDiag(t, sock, "--json")
	var r diag.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if w, ok := r.Find(diag.NameWear); !ok || w.Status != diag.Warn || code != 1 {
		t.Errorf("report: exit %d, wear %+v", code, w)
	}
	if s := storageStatus(t, sock); s["lifetime_short"] != true || s["service_years"] != 100.0 {
		t.Errorf("/status: %v", s)
	}
}
