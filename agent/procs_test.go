package agent_test

import (
	"runtime"
	"testing"

	"gateagent/agent"
)

// TestSetProcs: the agent runs on at least MinProcs processors on a board
// of fewer cores, unless the operator set GOMAXPROCS.
func TestSetProcs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(1)
	if got := agent.SetProcs(); got != agent.MinProcs || runtime.GOMAXPROCS(0) != agent.MinProcs {
		t.Errorf("on GOMAXPROCS 1: SetProcs = %d, GOMAXPROCS %d; want %d", got, runtime.GOMAXPROCS(0), agent.MinProcs)
	}
	runtime.GOMAXPROCS(agent.MinProcs + 2)
	if got := agent.SetProcs(); got != agent.MinProcs+2 {
		t.Errorf("on GOMAXPROCS %d: SetProcs = %d, want it left", agent.MinProcs+2, got)
	}
	t.Setenv("GOMAXPROCS", "lots") // not a number: Go ignores it, and so does SetProcs
	runtime.GOMAXPROCS(1)
	if got := agent.SetProcs(); got != agent.MinProcs {
		t.Errorf("with GOMAXPROCS=lots in the environment: SetProcs = %d, want %d", got, agent.MinProcs)
	}
	t.Setenv("GOMAXPROCS", "1")
	runtime.GOMAXPROCS(1)
	if got := agent.SetProcs(); got != 1 {
		t.Errorf("with GOMAXPROCS=1 in the environment: SetProcs = %d, want the operator's 1", got)
	}
}
