package agent_test

import (
	"os"
	"slices"
	"testing"
	"time"

	"gateagent/config"
	"gateagent/gate"
	"gateagent/hw/hwtest"
	"gateagent/verify"
)

// BenchmarkScanToRelay measures, for a valid token, the time from its last
// byte written to the scanner's pty to the relay pin changing: serial read,
// framing, verification (bbolt lookup, HMAC), the durable event write (a
// bbolt commit with fsync) and the relay output. Each grant then lapses
// (no passage), so the same passenger may scan again. It reports the 50th
// and 99th percentiles (p50-ms, p99-ms).
func BenchmarkScanToRelay(b *testing.B) {
	st := newStation(b, stationOpts{mod: func(c *config.Config) {
		c.Timing.PassTimeout = 10 * time.Millisecond
	}})
	c := st.issue()
	key, err := verify.ParseKey(c.Key) // the phone's secret, returned once at issuance
	if err != nil {
		b.Fatal(err)
	}
	code := func() []byte { return []byte(verify.NewToken(&key, c.ID, verify.StepOf(time.Now())).String() + "\r") }
	tok := code()
	if os.Getenv("BENCH_NO_ISSUER") != "" {
		st.srv.Stop()
	}
	changes := make(chan time.Time, 16)
	st.pins.Journal.Subscribe(func(op hwtest.Op) {
		if op.Pin == hwtest.Relay && op.Kind == "out" && op.Level == unlocked {
			changes <- time.Now()
		}
	})
	relayOff := st.pins.WaitOut(hwtest.Relay)
	lat := make([]float64, 0, b.N)
	read := make([]float64, 0, b.N)   // last byte written → the scanner's read returned
	decide := make([]float64, 0, b.N) // read returned → relay set (verify, event fsync, relay)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i%1000 == 999 { // keep the code current across minutes
			b.StopTimer()
			tok = code()
			b.StartTimer()
		}
		if _, err := st.peer.Write(tok); err != nil {
			b.Fatal(err)
		}
		sent := time.Now()
		select {
		case at := <-changes:
			lat = append(lat, float64(at.Sub(sent).Microseconds())/1000)
			o := <-st.outcomes
			for o.Kind != gate.Granted {
				o = <-st.outcomes
			}
			read = append(read, float64(o.ScanAt.Sub(sent).Microseconds())/1000)
			decide = append(decide, float64(o.At.Sub(o.ScanAt).Microseconds())/1000)
		case <-time.After(5 * time.Second):
			b.Fatal("relay did not move within 5 s of a valid code")
		}
		// Wait for the grant to lapse and the relay to lock again.
		for l := range relayOff {
			if l == locked {
				break
			}
		}
	}
	b.StopTimer()
	pct := func(xs []float64, p float64) float64 {
		slices.Sort(xs)
		return xs[min(len(xs)-1, int(p*float64(len(xs))))]
	}
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(lat, 1), "max-ms")
	b.ReportMetric(pct(read, 0.99), "read-p99-ms")
	b.ReportMetric(pct(decide, 0.99), "decide-p99-ms")
}
