package diag

import (
	"context"
	"errors"
	"time"

	"gateagent/gate"
	"gateagent/metrics"
	"gateagent/station"
)

// backend is how diag reaches the gate: through the running agent over
// its control socket (agentBackend), or, with the agent stopped, through
// the gate's own config, files, board and scanner port (localBackend).
// Each subcommand is written once against it.
type backend interface {
	// report runs every check; deep asks for a fresh integrity check.
	report(ctx context.Context, deep bool) (*Report, error)
	// clock is the clock check alone.
	clock(ctx context.Context) (Check, error)
	// scan waits up to timeout for a code at the scanner and explains it;
	// nothing moves and nothing is recorded.
	scan(ctx context.Context, timeout time.Duration) (TokenReport, error)
	// token explains text, a code from source ("argument", a file name).
	token(ctx context.Context, text []byte, source string) (TokenReport, error)
	// test runs a technician's test of the outputs.
	test(ctx context.Context, kind gate.TestKind, pulse time.Duration) (gate.TestResult, error)
	// sensors calls emit with the inputs' levels for d, at each change.
	sensors(ctx context.Context, d time.Duration, emit func(Reading) error) error
	// latency is the running agent's per-stage latency; errNotRunning
	// without an agent.
	latency(ctx context.Context) ([]metrics.StageLatency, error)
	// peers is the station peers' check and, through a running agent, its
	// node's status (nil with the agent stopped or without a group).
	peers(ctx context.Context) (Check, *station.Status, error)
	// wear is the flash wear check alone.
	wear(ctx context.Context) (Check, error)
	// mode is "daemon" or "standalone".
	mode() string
}

// errNotRunning: what was asked exists only in a running agent.
var errNotRunning = errors.New("no figures: the agent keeps them in memory while it runs, and it is not running")
