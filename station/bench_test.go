package station

import (
	"crypto/rand"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"gateagent/internal/eventually"
	"gateagent/verify"
)

// BenchmarkStationPropagation: one gate's grant (Hold) until its hold is
// in the state of all seven other gates of an eight-gate group, each a
// Node on its own loopback address, over memberlist's UDP with the
// station key (AES-GCM), by a direct report or a push/pull, whichever
// comes first. Grants follow each other at once (far more often than at
// any gate line, with the gossip of each on top). Reports p50-ms, p99-ms
// and max-ms of the seventh arrival. Its floor is
// BenchmarkUDPRoundTripFloor.
func BenchmarkStationPropagation(b *testing.B) {
	const gates = 8
	key := make([]byte, 32)
	rand.Read(key)
	var ids []string
	for i := range gates {
		ids = append(ids, fmt.Sprintf("B%02d", i+1))
	}
	var nodes []*Node
	var seeds []string
	for i, id := range ids {
		n, err := Start(Config{GateID: id, Group: "BENCH", Gates: ids, Bind: fmt.Sprintf("127.0.0.%d:0", 40+i), Seeds: seeds,
			Keys: [][]byte{key}, Window: 30 * time.Minute, JoinTimeout: 5 * time.Second})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
		seeds = append(seeds, n.Addr())
	}
	for _, n := range nodes {
		eventually.True(b, 10*time.Second, n.cfg.GateID+" sees every other gate", func() bool { return n.Status().Alive == gates-1 })
	}
	// Each receiving node says when the cert under way enters its state,
	// by a report or a push/pull, whichever comes first.
	var want atomic.Value
	want.Store(verify.CertID{})
	arrived := make(chan struct{}, 64)
	for _, n := range nodes[1:] {
		n.mu.Lock() // onChange is read under or after the state's lock
		n.onChange = func(id verify.CertID) {
			if id == want.Load().(verify.CertID) {
				arrived <- struct{}{}
			}
		}
		n.mu.Unlock()
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var id verify.CertID
		rand.Read(id[:])
		want.Store(id)
		now := time.Now()
		nodes[0].Hold(id, verify.Entry, now, now.Add(8*time.Second))
		for range gates - 1 {
			select {
			case <-arrived:
			case <-time.After(5 * time.Second):
				for _, n := range nodes {
					st := n.Status()
					b.Logf("%s: alive %d, sent %v, received %v, dropped %v", st.Gate, st.Alive, st.Sent, st.Received, st.Dropped)
				}
				b.Fatalf("a hold did not reach every gate within 5 s")
			}
		}
		lat = append(lat, time.Since(now))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

// BenchmarkUDPRoundTripFloor is BenchmarkStationPropagation's floor: one
// datagram of a report's size from one loopback address to another and
// back, through the kernel, with nothing else.
func BenchmarkUDPRoundTripFloor(b *testing.B) {
	a, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 60)})
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	echo, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 61)})
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFromUDP(buf)
			if err != nil {
				return
			}
			echo.WriteToUDP(buf[:n], from)
		}
	}()
	msg := make([]byte, 160) // a sealed report with memberlist's framing
	buf := make([]byte, 2048)
	to := echo.LocalAddr().(*net.UDPAddr)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := a.WriteToUDP(msg, to); err != nil {
			b.Fatal(err)
		}
		if _, _, err := a.ReadFromUDP(buf); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, lat)
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
}
