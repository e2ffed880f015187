package agent_test

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
	bolt "go.etcd.io/bbolt"

	"gateagent/agent"
	"gateagent/config"
	"gateagent/gate"
	"gateagent/hw/hwtest"
	"gateagent/internal/eventually"
	"gateagent/scanner/scannertest"
	"gateagent/station/stationtest"
	"gateagent/verify"
)

// BenchmarkScanToRelay measures, for a valid token, the time from its last
// byte written to the scanner's pty to the relay pin changing: serial read,
// framing, verification (bbolt lookup, HMAC), the durable event write (a
// bbolt commit with fsync) and the relay output. Each grant then lapses
// (no passage), so the same passenger may scan again. It reports the 50th
// and 99th percentiles (p50-ms, p99-ms).
func BenchmarkScanToRelay(b *testing.B) { benchScanToRelay(b, 0) }

// BenchmarkScanToRelayWithPeers is BenchmarkScanToRelay with the gate in a
// station group of eight: seven peer gates (station.Node, each on its own
// loopback address) are told of every grant and every lapse, sealed with
// the station key, and probe and gossip with the gate as memberlist does.
// Telling them happens after the relay, off the controller's goroutine:
// the figures should be BenchmarkScanToRelay's. The seven run in a process
// of their own at the lowest priority (nice 19): on a station they are
// other boards, and here they must not take the gate's two cores from it.
func BenchmarkScanToRelayWithPeers(b *testing.B) { benchScanToRelay(b, 7) }

// benchScanToRelay is the gate alone (peers 0) or in a station group with
// peers other gates.
func benchScanToRelay(b *testing.B, peers int) {
	var peerIDs, peerAddrs []string
	var peerProc *benchPeers
	gateAddr := stationtest.FreeAddr(b, "127.0.0.1")
	stationKey := make([]byte, 32)
	rand.Read(stationKey)
	for i := range peers {
		peerIDs = append(peerIDs, fmt.Sprintf("P%02d", i+1))
	}
	if peers > 0 {
		peerProc = startBenchPeers(b, benchPeerSpec{Gate: "E2E-01", GateAddr: gateAddr, IDs: peerIDs, Key: stationKey})
		peerAddrs = peerProc.addrs
	}
	keyFile := filepath.Join(b.TempDir(), "station.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(stationKey)), 0o600); err != nil {
		b.Fatal(err)
	}
	st := newStation(b, stationOpts{mod: func(c *config.Config) {
		c.Timing.PassTimeout = 10 * time.Millisecond
		c.HW.Poll = 50 * time.Millisecond // as in production: inputs wake on edges
		if peers > 0 {
			c.Station = config.Station{Group: "BENCH", Gates: append([]string{"E2E-01"}, peerIDs...), Bind: gateAddr,
				Seeds: peerAddrs, KeyFiles: []string{keyFile}, JoinTimeout: 5 * time.Second, PushPull: 15 * time.Second,
				Probe: time.Second, Reconnect: time.Second}
		}
	}})
	if peers > 0 {
		eventually.True(b, 10*time.Second, fmt.Sprintf("the gate sees its %d peers", peers), func() bool { return st.ag.Station().Status().Alive == peers })
	}
	c := st.issue()
	key, err := verify.ParseKey(c.Key) // the phone's secret, returned once at issuance
	if err != nil {
		b.Fatal(err)
	}
	code := func() []byte { return []byte(verify.NewToken(&key, c.ID, verify.StepOf(time.Now())).String() + "\r") }
	if os.Getenv("BENCH_NO_ISSUER") != "" {
		st.srv.Stop()
	}
	scanToRelay(b, st, code, nil)
	// Every peer heard of every grant (the benchmark's grants are real
	// ones, not a dry run).
	if peerProc != nil {
		peerProc.awaitHolds(b, b.N)
	}
}

// scanToRelay writes code() to the scanner b.N times, each after the
// previous grant lapsed, and reports the latencies from the last byte
// written to the relay pin unlocking, and their stages; it returns the
// latencies, in ms, in the order of the scans. before, when set, is
// called before each write (with its number), untimed. The first
// scanWarmup grants are not counted: theirs are the start's figures (the
// collector's first cycles after the cache's open, the code paged in),
// which the cold start's benchmarks measure, not a gate at work.
func scanToRelay(b *testing.B, st *station, code func() []byte, before func(i int)) (latencies []float64) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	agent.SetProcs() // as gateagent run does
	tok := code()
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
	for i := -scanWarmup; i < b.N; i++ {
		if i == 0 {
			lat, read, decide = lat[:0], read[:0], decide[:0]
			b.ResetTimer()
		}
		if i%1000 == 999 { // keep the code current across minutes
			b.StopTimer()
			tok = code()
			b.StartTimer()
		}
		if before != nil {
			before(i)
		}
		sent := sendLine(b, st.peer, tok)
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
		// Wait for the grant to lapse: the relay locked again and the
		// lapse recorded, so that the next scan finds the gate at rest.
		for l := range relayOff {
			if l == locked {
				break
			}
		}
		for o := range st.outcomes {
			if o.Kind == gate.Lapsed {
				break
			}
		}
	}
	b.StopTimer()
	latencies = slices.Clone(lat)
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(pct(lat, 1), "max-ms")
	b.ReportMetric(pct(read, 0.50), "read-p50-ms")
	b.ReportMetric(pct(decide, 0.50), "decide-p50-ms")
	b.ReportMetric(pct(read, 0.99), "read-p99-ms")
	b.ReportMetric(pct(decide, 0.99), "decide-p99-ms")
	return latencies
}

// pct is the p quantile of xs, which it sorts.
func pct(xs []float64, p float64) float64 {
	slices.Sort(xs)
	return xs[min(len(xs)-1, int(p*float64(len(xs))))]
}

// floorLine is the floor's line: a TR1 code's length with its CR.
const floorLine = 59

// scanWarmup is the grants scanToRelay makes before it counts.
const scanWarmup = 20

// lineBaud is the scanner line the benchmarks model: 115200 baud, the
// faster of a scanner's two usual settings (at 9600, the default, a code
// takes 12 times as long to come in).
const lineBaud = 115200

// fifoBytes is what a UART's receive FIFO hands the driver at once.
const fifoBytes = 8

// sendLine writes line to the scanner's pty as a scanner on a lineBaud
// line sends it: fifoBytes at a time, each after the time the line takes
// to carry them (a pty has no baud rate), and returns when the last byte
// was written, from which the benchmarks time.
func sendLine(b *testing.B, peer *os.File, line []byte) (sent time.Time) {
	start := time.Now()
	for off := 0; off < len(line); off += fifoBytes {
		// The stimulus: the line's pace, each chunk at its own time (a
		// late wake-up does not delay the ones after it).
		time.Sleep(time.Until(start.Add(lineTime(off + fifoBytes))))
		if _, err := peer.Write(line[off:min(off+fifoBytes, len(line))]); err != nil {
			b.Fatal(err)
		}
	}
	return time.Now()
}

// byteTime is one byte on the line: a start bit, eight data bits, a stop bit.
const byteTime = 10 * time.Second / lineBaud

// lineTime is how long a line of n bytes takes to come in at lineBaud.
func lineTime(n int) time.Duration { return time.Duration(n) * byteTime }

// BenchmarkScanToRelayFloor is the floor beside BenchmarkScanToRelay: the
// same bytes through the same socat pty and go.bug.st/serial read, then
// one raw bbolt commit (a put of an event-sized value, with fsync) — the
// work no gate can skip — and nothing else: no framing, verification,
// controller or relay.
func BenchmarkScanToRelayFloor(b *testing.B) { scanFloor(b, nil) }

// scanFloor is BenchmarkScanToRelayFloor's loop; before, when set, is
// called before each line is written (with its number), untimed.
func scanFloor(b *testing.B, before func(i int)) {
	tty := scannertest.Start(b)
	peer := tty.OpenPeer(b)
	port, err := serial.Open(tty.Dev, &serial.Mode{BaudRate: lineBaud})
	if err != nil {
		b.Fatal(err)
	}
	defer port.Close()
	db, err := bolt.Open(filepath.Join(b.TempDir(), "floor.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("events")); return err }); err != nil {
		b.Fatal(err)
	}
	line := []byte(strings.Repeat("A", floorLine-1) + "\r")
	buf := make([]byte, 256)
	val := make([]byte, 96)
	lat := make([]float64, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if before != nil {
			before(i)
		}
		sent := sendLine(b, peer, line)
		for got := 0; got < len(line); {
			n, err := port.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			got += n
		}
		err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("events")).Put(binary.BigEndian.AppendUint64(nil, uint64(i)), val)
		})
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, float64(time.Since(sent).Microseconds())/1000)
		// The stimulus, not a wait: the gate pauses about as long between
		// grants (each lapses after 10 ms); an fsync after a pause costs
		// more than one right after another, so the floor pauses too.
		time.Sleep(11 * time.Millisecond) // the stimulus: the pause between grants
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[min(len(lat)-1, len(lat)*99/100)], "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
}
