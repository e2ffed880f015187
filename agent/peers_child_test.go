package agent_test

// The processes of the station peers' end-to-end test (peers_e2e_test.go):
// a gate (the whole agent, as `gateagent run` builds it from its config
// file, on the simulated board with its scanner on a pseudo-terminal),
// driven by the test over its stdin and reporting over its stdout, and a
// rogue host without the station key.

import (
	"bufio"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"gateagent/agent"
	"gateagent/config"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/internal/eventually"
	"gateagent/internal/pty"
	"gateagent/internal/sdnotify"
	stn "gateagent/station"
	"gateagent/station/stationtest"
	"gateagent/verify"
)

// The environment that makes the test binary one of the test's processes.
const (
	peerChildEnv = "GATEAGENT_PEER_CHILD" // the config file: run as a gate
	peerRogueEnv = "GATEAGENT_PEER_ROGUE" // the rogue's spec (rogueSpec, JSON)
	// peerLinkEnv: loopback mode: the station's traffic goes through a
	// link the test can cut (stationtest.Link), since no network
	// namespace can be made.
	peerLinkEnv = "GATEAGENT_PEER_LINK"
)

// childMsg is one line a child writes to its stdout.
type childMsg struct {
	Ev     string        `json:"ev"` // ready, outcome, events, status, seen, ok, error, rogue
	Kind   string        `json:"kind,omitempty"`
	Reason string        `json:"reason,omitempty"`
	Cert   string        `json:"cert,omitempty"`
	SeenAt string        `json:"seen_at,omitempty"`
	Held   bool          `json:"held,omitempty"`
	Synced bool          `json:"synced,omitempty"`
	Found  bool          `json:"found,omitempty"`
	Gate   string        `json:"gate,omitempty"`
	Events []event.Event `json:"events,omitempty"`
	Status *stn.Status   `json:"status,omitempty"`
	Err    string        `json:"err,omitempty"`
}

// out serialises a child's messages onto its stdout.
type out struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (o *out) send(m childMsg) {
	b, _ := json.Marshal(m)
	o.mu.Lock()
	defer o.mu.Unlock()
	o.w.Write(append(b, '\n'))
	o.w.Flush()
}

// runPeerChild runs a gate from the config file at path, and takes the
// test's commands from stdin, one per line:
//
//	scan TOKEN     type the code into the scanner's line
//	enter, leave   the passage sensor goes active, clear
//	events         the gate's event log
//	status         the station node's status
//	seen CERT      what the station's other gates know of CERT (entry)
//	cut IP...      (loopback mode) lose all traffic with those hosts
//	heal           (loopback mode) restore it
//	quit           stop the gate as SIGTERM does
func runPeerChild(path string) int {
	o := &out{w: bufio.NewWriter(os.Stdout)}
	fail := func(err error) int {
		o.send(childMsg{Ev: "error", Err: err.Error()})
		return 1
	}
	cfg, err := config.Load(path)
	if err != nil {
		return fail(err)
	}
	tty, err := pty.Open()
	if err != nil {
		return fail(err)
	}
	defer tty.Close()
	cfg.Scanner.Port = tty.SlavePath
	sim := hw.NewSim(nil, nil)
	// Outcomes go out through a queue: Observe must not block.
	outcomes := make(chan childMsg, 100000)
	go func() {
		for m := range outcomes {
			o.send(m)
		}
	}()
	quiet, _ := sdnotify.FromEnv(func(string) string { return "" })
	opts := agent.Options{Board: sim.Board(), Logger: agent.SetupLogger(cfg.Log, os.Stderr), Notifier: quiet,
		Observe: func(oc gate.Outcome) {
			m := childMsg{Ev: "outcome", Kind: oc.Kind.String()}
			if oc.Kind == gate.Granted || oc.Kind == gate.Denied || oc.Kind == gate.Passed || oc.Kind == gate.Closed || oc.Kind == gate.Lapsed {
				m.Reason, m.Cert, m.SeenAt, m.Held = oc.Decision.Reason.String(), oc.Decision.CertID.String(), oc.Decision.SeenAt, oc.Decision.Held
			}
			select {
			case outcomes <- m:
			default:
			}
		}}
	var link *stationtest.Link
	if os.Getenv(peerLinkEnv) != "" {
		host, port, _ := net.SplitHostPort(cfg.Station.Bind)
		var p int
		fmt.Sscan(port, &p)
		if link, err = stationtest.NewLink(host, p); err != nil {
			return fail(err)
		}
		opts.StationTransport = link
	}
	a, err := agent.New(cfg, opts)
	if err != nil {
		return fail(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	// Ready: the peers' state pulled (or given up on), and the scanner
	// open, which the agent does only after that.
	<-a.Station().Ready()
	if !eventually.Within(time.Minute, func() bool { return a.Scanner().Stats().Connected }) {
		return fail(fmt.Errorf("scanner not connected after a minute"))
	}
	o.send(childMsg{Ev: "ready", Synced: a.Station().Synced(), Gate: cfg.Gate.ID})

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "scan":
			if _, err := tty.Master.Write([]byte(arg + "\r")); err != nil {
				o.send(childMsg{Ev: "error", Err: err.Error()})
			}
		case "enter":
			sim.Input("passage").Set(true)
		case "leave":
			sim.Input("passage").Set(false)
		case "events":
			ev, err := a.Journal().Events(0, 1<<20)
			m := childMsg{Ev: "events", Events: ev}
			if err != nil {
				m = childMsg{Ev: "error", Err: err.Error()}
			}
			o.send(m)
		case "status":
			st := a.Station().Status()
			o.send(childMsg{Ev: "status", Status: &st})
		case "seen":
			id, err := verify.ParseCertID(arg)
			if err != nil {
				o.send(childMsg{Ev: "error", Err: err.Error()})
				continue
			}
			sg, ok := a.Station().Seen(id, verify.Entry)
			o.send(childMsg{Ev: "seen", Found: ok, SeenAt: sg.Gate, Held: sg.Held})
		case "cut":
			if link != nil {
				link.Cut(strings.Fields(arg)...)
			}
			o.send(childMsg{Ev: "ok"})
		case "heal":
			if link != nil {
				link.Heal()
			}
			o.send(childMsg{Ev: "ok"})
		case "quit":
			cancel()
			err := <-done
			close(outcomes)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			return 0
		}
	}
	cancel()
	<-done
	return 0
}

// rogueSpec is what the rogue host knows: the group's name and gates, the
// gates' addresses, a gate's name to claim, and where it listens. It has a
// key, but not the station's.
type rogueSpec struct {
	Bind   string   `json:"bind"`
	Claim  string   `json:"claim"`
	Group  string   `json:"group"`
	Gates  []string `json:"gates"`
	Seeds  []string `json:"seeds"`
	Forged string   `json:"forged"` // a cert ID whose passage it forges
	Key    []byte   `json:"key"`
}

// runRogue tries to join the group with the wrong key, then sends forged
// passages in memberlist's framing to every gate: sealed with its own key,
// in plain datagrams, and over TCP. It reports whether it got in, then
// waits for "quit".
func runRogue(spec string) int {
	o := &out{w: bufio.NewWriter(os.Stdout)}
	var rs rogueSpec
	if err := json.Unmarshal([]byte(spec), &rs); err != nil {
		o.send(childMsg{Ev: "error", Err: err.Error()})
		return 1
	}
	n, err := stn.Start(stn.Config{GateID: rs.Claim, Group: rs.Group, Gates: rs.Gates, Bind: rs.Bind, Seeds: rs.Seeds,
		Keys: [][]byte{rs.Key}, Window: 30 * time.Minute, JoinTimeout: 2 * time.Second})
	if err != nil {
		o.send(childMsg{Ev: "error", Err: err.Error()})
		return 1
	}
	defer n.Close()
	<-n.Ready()
	id, _ := verify.ParseCertID(rs.Forged)
	msg := forgedPassage(id, "S02")
	label := "gateagent/" + rs.Group
	hdr := append([]byte{244, byte(len(label))}, label...) // memberlist's label header
	plain := append(append(append([]byte(nil), hdr...), 8), msg...)
	block, _ := aes.NewCipher(rs.Key)
	gcm, _ := cipher.NewGCM(block)
	nonce := make([]byte, 12)
	rand.Read(nonce)
	sealed := append(append(append([]byte(nil), hdr...), 1), nonce...)
	sealed = gcm.Seal(sealed, nonce, append([]byte{8}, msg...), []byte(label))
	// From the rogue's own address (on loopback, the default source would
	// be 127.0.0.1).
	host, _, _ := net.SplitHostPort(rs.Bind)
	ip := net.ParseIP(host)
	udp := net.Dialer{LocalAddr: &net.UDPAddr{IP: ip}}
	tcp := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: time.Second}
	for _, s := range rs.Seeds {
		if c, err := udp.Dial("udp", s); err == nil {
			for range 3 {
				c.Write(plain)
				c.Write(sealed)
			}
			c.Close()
		}
		if c, err := tcp.Dial("tcp", s); err == nil {
			c.Write(plain)
			c.Close()
		}
	}
	st := n.Status()
	o.send(childMsg{Ev: "rogue", Synced: n.Synced(), Status: &st})
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if in.Text() == "quit" {
			break
		}
	}
	return 0
}

// forgedPassage is a passage message as a gate would send it (station's
// wire format, version 1).
func forgedPassage(id verify.CertID, gateID string) []byte {
	now := uint64(time.Now().UnixNano())
	b := []byte{1, 3, 1, byte(len(gateID))}
	b = append(b, gateID...)
	b = append(b, id[:]...)
	for _, v := range []uint64{now, now, now} {
		for i := 7; i >= 0; i-- {
			b = append(b, byte(v>>(8*i)))
		}
	}
	return b
}
