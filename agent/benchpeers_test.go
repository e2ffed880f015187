package agent_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"testing"
	"time"

	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"
	stn "gateagent/station"
)

// benchPeersEnv makes the test binary run BenchmarkScanToRelayWithPeers'
// peer gates (benchPeerSpec, JSON).
const benchPeersEnv = "GATEAGENT_BENCH_PEERS"

// benchPeerSpec is the peers' station group: the gate's name and address,
// the peers' names, the key.
type benchPeerSpec struct {
	Gate     string   `json:"gate"`
	GateAddr string   `json:"gate_addr"`
	IDs      []string `json:"ids"`
	Key      []byte   `json:"key"`
}

// runBenchPeers starts the peers on 127.0.0.50 and up, prints their
// addresses (one JSON line), and then, for each line on stdin, the
// smallest number of holds any of them took; it stops at the end of stdin.
func runBenchPeers(spec string) int {
	var s benchPeerSpec
	if err := json.Unmarshal([]byte(spec), &s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var nodes []*stn.Node
	var addrs []string
	for i, id := range s.IDs {
		n, err := stn.Start(stn.Config{GateID: id, Group: "BENCH", Gates: append([]string{s.Gate}, s.IDs...),
			Bind: fmt.Sprintf("127.0.0.%d:0", 50+i), Seeds: append([]string{s.GateAddr}, addrs...), Keys: [][]byte{s.Key},
			Window: 30 * time.Minute, JoinTimeout: time.Second})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer n.Close()
		nodes = append(nodes, n)
		addrs = append(addrs, n.Addr())
	}
	out := bufio.NewWriter(os.Stdout)
	json.NewEncoder(out).Encode(addrs)
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		least := uint64(1 << 62)
		for _, n := range nodes {
			least = min(least, n.Status().Received["hold"])
		}
		fmt.Fprintln(out, least)
		out.Flush()
	}
	return 0
}

// benchPeers is the peers' process.
type benchPeers struct {
	addrs []string
	stdin io.WriteCloser
	out   *bufio.Scanner
}

func startBenchPeers(b *testing.B, spec benchPeerSpec) *benchPeers {
	b.Helper()
	js, _ := json.Marshal(spec)
	cmd := exec.Command("nice", "-n", "19", os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchPeersEnv+"="+string(js))
	logs := &syncbuf.Buffer{}
	cmd.Stderr = logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	p := &benchPeers{out: bufio.NewScanner(stdout)}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.stdin.Close(); cmd.Wait() })
	if !p.out.Scan() || json.Unmarshal(p.out.Bytes(), &p.addrs) != nil || len(p.addrs) != len(spec.IDs) {
		b.Fatalf("the peers did not start: %s", logs.String())
	}
	return p
}

// awaitHolds waits until every peer took at least n holds.
func (p *benchPeers) awaitHolds(b *testing.B, n int) {
	b.Helper()
	var got int
	if !eventually.Within(10*time.Second, func() bool {
		fmt.Fprintln(p.stdin, "count")
		if !p.out.Scan() {
			b.Fatal("the peers' process ended")
		}
		fmt.Sscan(p.out.Text(), &got)
		return got >= n
	}) {
		b.Fatalf("a peer heard of %d of %d grants", got, n)
	}
}
