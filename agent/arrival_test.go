package agent_test

import (
	"testing"
	"time"

	"gateagent/agent"
	"gateagent/cache"
	"gateagent/gate"
	"gateagent/internal/eventually"
)

// TestArrivingCodeHoldsTheCacheWrites: from a code's first byte on the
// scanner's line, the key cache's own writes wait for the gate's decision
// on it, so that the one under way when a passenger's code begins has
// ended when the gate writes its grant, and none begins meanwhile. The
// maintenance begun while half a code has come in is done only after the
// grant.
func TestArrivingCodeHoldsTheCacheWrites(t *testing.T) {
	st := newStation(t, stationOpts{})
	c := st.issue()
	code := st.token(c.ID, time.Now()) + "\r"
	half := len(code) / 2
	before := st.ag.Scanner().Stats().Bytes
	st.write(code[:half])
	eventually.True(t, 5*time.Second, "the scanner reads the code's first half", func() bool {
		return st.ag.Scanner().Stats().Bytes >= before+uint64(half)
	})

	purged := make(chan time.Time, 1)
	started := time.Now()
	go func() {
		if _, err := st.ag.Cache().Purge(time.Now(), agent.PurgeRetention(0)); err != nil {
			t.Error(err)
		}
		purged <- time.Now()
	}()
	// The stimulus: the rest of the code comes later (at 9600 baud, a
	// code takes 60 ms), here within cache.MaxYield (100 ms).
	time.Sleep(30 * time.Millisecond)
	select {
	case <-purged:
		t.Fatal("the maintenance ran while a code was coming in")
	default:
	}
	st.write(code[half:])
	o := st.want(gate.Granted)
	select {
	case at := <-purged:
		// A write waits for a decision cache.MaxYield at most: on a slow
		// machine the grant may come later.
		if at.Before(o.At) && o.At.Sub(started) < cache.MaxYield {
			t.Errorf("the maintenance ended at %v, before the grant was decided (%v)", at, o.At)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the maintenance did not end within 5 s of the grant")
	}
}
