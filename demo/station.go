package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gateagent/agent"
	"gateagent/config"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/internal/pty"
	"gateagent/internal/sdnotify"
	"gateagent/internal/wait"
	"gateagent/issuer"
	"gateagent/verify"
)

// The demo's station group: its two gates on loopback.
const (
	demoGroup = "DEMO-entry"
	gate2ID   = "DEMO-E02"
)

// neighbour is the second gate of the demo's station: its own simulated
// board, scanner line, cache and control socket, and the same issuer.
type neighbour struct {
	ag       *agent.Agent
	sim      *hw.Sim
	tty      *pty.Pair
	outcomes chan gate.Outcome
	done     chan error
	stop     context.CancelFunc
}

// stationConfig gives cfg (gate 1's) a [station] section shared with the
// second gate: a key file for the group, loopback addresses on free ports.
// It returns gate 2's address.
func stationConfig(cfg *config.Config, dir string) (string, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return "", err
	}
	keyFile := filepath.Join(dir, "station.key")
	if err := os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		return "", err
	}
	a1, err := freeAddr()
	if err != nil {
		return "", err
	}
	a2, err := freeAddr()
	if err != nil {
		return "", err
	}
	cfg.Station.Group = demoGroup
	cfg.Station.Gates = []string{cfg.Gate.ID, gate2ID}
	cfg.Station.Bind = a1
	cfg.Station.Seeds = []string{a1, a2} // the same list on both gates
	cfg.Station.KeyFiles = []string{keyFile}
	cfg.Station.JoinTimeout = 3 * time.Second
	return a2, nil
}

// freeAddr is a loopback address whose port is free for TCP and UDP now.
func freeAddr() (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr, nil
		}
	}
	return "", errors.New("no free loopback port for TCP and UDP")
}

// startNeighbour starts the second gate from gate 1's config.
func startNeighbour(ctx context.Context, cfg1 config.Config, addr, dir string, log *slog.Logger) (*neighbour, error) {
	n := &neighbour{outcomes: make(chan gate.Outcome, 64), done: make(chan error, 1)}
	var err error
	if n.tty, err = pty.Open(); err != nil {
		return nil, fmt.Errorf("demo: make gate 2's scanner line: %w", err)
	}
	// Its own state directory: one agent per gate, each with its lock
	// beside its cache.
	dir = filepath.Join(dir, "gate2")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.tty.Close()
		return nil, fmt.Errorf("demo: %w", err)
	}
	cfg := cfg1
	cfg.Gate.ID = gate2ID
	cfg.Gate.Cache = filepath.Join(dir, "cache.db")
	cfg.Scanner.Port = n.tty.SlavePath
	cfg.Control.Socket = filepath.Join(dir, "control.sock")
	cfg.Station.Bind = addr
	if err := cfg.Validate(); err != nil {
		n.tty.Close()
		return nil, fmt.Errorf("demo: gate 2's config: %w", err)
	}
	n.sim = hw.NewSim(nil, nil)
	quiet, _ := sdnotify.FromEnv(func(string) string { return "" })
	if n.ag, err = agent.New(&cfg, agent.Options{Board: n.sim.Board(), Logger: log, Notifier: quiet,
		Observe: func(o gate.Outcome) {
			select {
			case n.outcomes <- o:
			default:
			}
		}}); err != nil {
		n.tty.Close()
		return nil, fmt.Errorf("demo: start gate 2: %w", err)
	}
	actx, stop := context.WithCancel(ctx)
	n.stop = stop
	go func() { n.done <- n.ag.Run(actx) }()
	return n, nil
}

// close stops the second gate and reports how it stopped.
func (n *neighbour) close() error {
	n.stop()
	err := <-n.done
	n.tty.Close()
	if err == nil && n.sim.Output("relay") {
		err = errors.New("demo: gate 2's relay is not locked after shutdown")
	}
	return err
}

// companion: the passenger who passed gate 1 hands the phone to someone at
// gate 2 a second later.
func (d *demo) companion(ctx context.Context) error {
	d.title("The passenger hands the phone to a companion at gate 2, a second later.")
	n := d.gate2
	if err := wait.Sleep(ctx, time.Second); err != nil {
		return err
	}
	tok, err := d.iss.Token(d.cert.ID, time.Now())
	if err != nil {
		return fmt.Errorf("demo: the phone's code: %w", err)
	}
	d.say("   phone      %s (the code of %s)\n", tok.String(), verify.StepStart(tok.Step).In(issuer.CST).Format("15:04 CST"))
	if _, err := n.tty.Master.Write([]byte(tok.String() + "\r")); err != nil {
		return fmt.Errorf("demo: type into gate 2's scanner line: %w", err)
	}
	var o gate.Outcome
	select {
	case o = <-n.outcomes:
	case <-time.After(10 * time.Second):
		return errors.New("demo: gate 2 did nothing within 10 s")
	case <-ctx.Done():
		return ctx.Err()
	}
	if o.Kind != gate.Denied || o.Decision.Reason != verify.Passback || o.Decision.SeenAt != d.gateID {
		return fmt.Errorf("demo: gate 2 did %v (%v, seen at %q), want a PASSBACK seen at gate %s", o.Kind, o.Decision.Reason, o.Decision.SeenAt, d.gateID)
	}
	if n.sim.Output("relay") {
		return errors.New("demo: gate 2 denied, but its relay moved")
	}
	ev, err := n.ag.Journal().Events(0, 100)
	if err != nil {
		return fmt.Errorf("demo: read gate 2's events: %w", err)
	}
	var detail string
	for _, e := range ev {
		if e.Kind == event.Decision && e.Reason == verify.Passback {
			detail = e.Detail
		}
	}
	if !strings.Contains(detail, "seen at gate "+d.gateID) {
		return fmt.Errorf("demo: gate 2's event says %q, want that it was seen at gate %s", detail, d.gateID)
	}
	st := n.ag.Station().Status()
	d.say("   gate 2     DENIED %v \"%s\": red lamp, %s; the relay did not move\n", o.Decision.Reason, detail, signal(o.Decision.Reason.Family()))
	d.say("   station    gate 1 told gate 2 of the grant and the passage at once, sealed with the station key (%s from gate 1's grant to gate 2, p50 over %d reports)\n",
		ms(st.Propagation.P50), st.Propagation.Count)
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
