package diag_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/internal/kclock"
	"gateagent/verify"
)

// recordRefusals puts in the gate's event log what the agent recorded
// while its issuer's clock was off: stale codes within the last hour (and
// one from before it, which does not count), one from the future.
func recordRefusals(t *testing.T, st *station, issuerNow time.Time) {
	t.Helper()
	c, err := cache.OpenJournal(cache.JournalPath(st.cache), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, e := range []struct {
		ago    time.Duration
		reason verify.Reason
	}{{90 * time.Minute, verify.CodeStale}, {50 * time.Minute, verify.CodeStale}, {20 * time.Minute, verify.CodeStale},
		{10 * time.Minute, verify.CodeFromFuture}, {time.Minute, verify.CodeStale}, {time.Minute, verify.OK}} {
		ev := event.Event{Time: issuerNow.Add(-e.ago), Kind: event.Decision, Reason: e.reason, Direction: verify.Entry, StepOffset: -120}
		if _, err := c.AppendEvent(ev); err != nil {
			t.Fatal(err)
		}
	}
}

// TestClockBlameIssuer: the issuer's clock is 2 h ahead, the gate's kernel
// clock is synchronised: diag blames the issuer, says codes are refused
// because the gate follows it, and counts them.
func TestClockBlameIssuer(t *testing.T) {
	st := newSkewedStation(t, -2*time.Hour) // the gate keeps real time; the issuer is 2 h ahead
	recordRefusals(t, st, st.srv.Clock.Now())
	code, out, errs := st.run("clock")
	if code != 2 {
		t.Errorf("diag clock: exit %d, want 2 (FAIL)\n%s%s", code, out, errs)
	}
	for _, want := range []string{"FAIL  clock", "the issuer's clock is wrong", "it is 2h0m0s ahead of the gate's",
		"whose clock is synchronised (NTP)", "the agent applies this offset once it runs",
		"3 codes refused as CODE_STALE and 1 as CODE_FROM_FUTURE in the last hour", "fix the issuer's clock",
		"blame:", "issuer", "code_stale_last_hour:"} {
		if !strings.Contains(out, want) {
			t.Errorf("diag clock does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "check NTP") {
		t.Errorf("diag clock sends the technician to the gate's NTP:\n%s", out)
	}
	// The full report's clock check says the same.
	_, r, _ := st.report()
	if c, _ := r.Find(diag.NameClock); c.Status != diag.Fail || !strings.Contains(c.Line, "the issuer's clock is wrong") {
		t.Errorf("report's clock check: %s %s", c.Status, c.Line)
	}
	// As JSON, for a remote tool.
	_, out, _ = st.run("clock", "--json")
	var c diag.Check
	if err := json.Unmarshal([]byte(out), &c); err != nil || c.Facts["blame"] != "issuer" || c.Facts["code_stale_last_hour"] != 3.0 {
		t.Errorf("diag clock --json: %v %+v", err, c)
	}
}

// TestClockBlameGate: the same offset with the gate's kernel clock not
// synchronised: the gate is the one to fix.
func TestClockBlameGate(t *testing.T) {
	st := newSkewedStation(t, -2*time.Hour)
	st.kernel = kclock.State{Unsync: true, MaxError: 16 * time.Second}
	recordRefusals(t, st, st.srv.Clock.Now())
	code, out, _ := st.run("clock")
	if code != 1 {
		t.Errorf("diag clock: exit %d, want 1 (WARN)\n%s", code, out)
	}
	for _, want := range []string{"WARN  clock", "2h0m0s behind the issuer", "not synchronised", "check NTP (timedatectl timesync-status)",
		"3 codes refused as CODE_STALE", "blame:", "gate"} {
		if !strings.Contains(out, want) {
			t.Errorf("diag clock does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "issuer's clock is wrong") {
		t.Errorf("diag clock blames the issuer:\n%s", out)
	}
}
