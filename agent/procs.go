package agent

import (
	"os"
	"runtime"
	"strconv"
)

// MinProcs is the fewest processors (GOMAXPROCS) the agent runs its
// goroutines on, whatever the board's cores.
//
// A gate's goroutines spend much of their time in blocking system calls:
// the scanner's serial read, the fsyncs of the event log, the feed's
// batches and the maintenance. Go leaves a processor with a goroutine in
// such a call until its monitor (sysmon) takes it back, which after a
// quiet spell is up to 10 ms later (golang/go#18236, #28701). On a
// two-core board, with GOMAXPROCS at 2, the controller's goroutine woken
// by a scan then waits for a processor while one sits in the serial read
// and the other in a maintenance fsync: measured, 10 to 20 ms added to a
// grant, in BenchmarkScanToRelayUnderChurn/churn. With spare processors
// an idle one takes the woken goroutine at once; the kernel shares the
// cores between the threads as it does any others.
const MinProcs = 4

// SetProcs sets GOMAXPROCS to at least MinProcs unless the environment
// sets it to a number (the operator's word stands; Go ignores anything
// else there, and so does SetProcs), and returns the value in force.
func SetProcs() int {
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); (err != nil || n < 1) && runtime.GOMAXPROCS(0) < MinProcs {
		runtime.GOMAXPROCS(MinProcs)
	}
	return runtime.GOMAXPROCS(0)
}
