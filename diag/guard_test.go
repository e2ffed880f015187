package diag_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/diag"
	"gateagent/hw/hwtest"
	"gateagent/internal/instance"
	"gateagent/internal/kclock"
)

// TestAgentRunningWithoutSocket: an agent holds the cache but its control
// socket does not answer. diag must not open the board or the port beside
// it (opening the board drives every output off: it would lock a gate the
// emergency input holds open).
func TestAgentRunningWithoutSocket(t *testing.T) {
	st := newStation(t)
	agentCache, err := cache.Open(st.cache, cachetest.Options(nil)) // the agent's exclusive lock
	if err != nil {
		t.Fatal(err)
	}
	defer agentCache.Close()

	code, r, _ := st.report()
	c, ok := r.Find(diag.NameAgent)
	if code != 2 || !ok || c.Status != diag.Fail || !strings.Contains(c.Line, "control socket does not answer") {
		t.Fatalf("exit %d:\n%s", code, describe(r))
	}
	for _, args := range [][]string{{"sensors", "--seconds", "1"}, {"relay", "--pulse", "100ms"}, {"indicators"}, {"scan", "--timeout", "1s"}} {
		code, out, errs := st.run(args...)
		if code != 2 || !strings.Contains(out+errs, "an agent is running") {
			t.Errorf("diag %v beside a running agent: exit %d: %s", args, code, errs)
		}
	}
	if ops := st.pins.Journal.Ops(); len(ops) != 0 {
		t.Errorf("diag touched the board beside a running agent: %v", ops)
	}
}

// TestAgentStartingHoldsTheGate: an agent that has taken the gate's lock
// but not yet opened its cache (it is starting, or rebuilding a damaged
// cache) keeps diag off the board as well.
func TestAgentStartingHoldsTheGate(t *testing.T) {
	st := newStation(t)
	lock, err := instance.Acquire(instance.PathFor(st.cache))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Release()
	code, r, _ := st.report()
	if c, ok := r.Find(diag.NameAgent); code != 2 || !ok || c.Status != diag.Fail || !strings.Contains(c.Line, "an agent is running") {
		t.Fatalf("exit %d:\n%s", code, describe(r))
	}
	if code, out, errs := st.run("relay", "--pulse", "100ms"); code != 2 || !strings.Contains(out+errs, "an agent is running") {
		t.Errorf("diag relay beside a starting agent: exit %d: %s", code, errs)
	}
	if ops := st.pins.Journal.Ops(); len(ops) != 0 {
		t.Errorf("diag touched the board beside a starting agent: %v", ops)
	}
}

// TestFreshnessOnTheRawClock: the last sync is stamped on the gate's own
// clock, so a slow gate that synced 10 minutes ago is fresh (as the agent
// judges it), and only its clock is flagged.
func TestFreshnessOnTheRawClock(t *testing.T) {
	st := newSkewedStation(t, -40*time.Minute)
	st.kernel = kclock.State{MaxError: 16 * time.Second, Unsync: true} // the gate is the wrong one
	st.srv.Clock.Advance(10 * time.Minute)
	st.gateNow = st.gateNow.Add(10 * time.Minute)
	code, r, _ := st.report()
	cache, _ := r.Find(diag.NameCache)
	clock, _ := r.Find(diag.NameClock)
	if cache.Status != diag.Pass || !strings.Contains(cache.Line, "last synced 10m0s ago") || clock.Status != diag.Warn || code != 1 {
		t.Fatalf("exit %d:\n%s", code, describe(r))
	}
}

// TestStaleRefusalExplained: with refuse_when_stale, diag token on a
// stale cache says the gate cannot decide, as the agent would.
func TestStaleRefusalExplained(t *testing.T) {
	st := newStation(t)
	st.fields["REFUSE"] = "true"
	st.srv.Clock.Advance(2 * time.Hour)
	st.gateNow = st.srv.Clock.Now()
	code, out, errs := st.run("token", token(st.certs[0], st.gateNow))
	if code != 2 || !strings.Contains(out, "UNDECIDED") || !strings.Contains(out, "stale") {
		t.Fatalf("diag token on a stale cache with refuse_when_stale: exit %d\n%s%s", code, out, errs)
	}
	st.fields["REFUSE"] = "false"
	if code, out, _ := st.run("token", token(st.certs[0], st.gateNow)); code != 0 {
		t.Fatalf("without refuse_when_stale: exit %d\n%s", code, out)
	}
}

// TestNoCacheNoOutputTest: diag never creates the cache file (one made
// by root would keep the agent out), so it refuses to test the outputs
// before the agent has run once.
func TestNoCacheNoOutputTest(t *testing.T) {
	st := newStation(t)
	os.Remove(st.cache)
	for _, args := range [][]string{{"relay", "--pulse", "100ms"}, {"indicators"}} {
		code, out, errs := st.run(args...)
		if code != 2 || !strings.Contains(out+errs, "no cache file") {
			t.Errorf("diag %v without a cache: exit %d: %s", args, code, errs)
		}
	}
	if _, err := os.Stat(st.cache); err == nil {
		t.Error("diag created the cache file")
	}
	if got := st.pins.Journal.Levels(hwtest.Relay); len(got) != 0 {
		t.Errorf("relay moved: %v", got)
	}
}
