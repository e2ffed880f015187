// Package demo walks through what a station sees, on one machine with
// nothing but this repository: the reference issuer runs in-process on
// loopback, a passenger's certificate is issued, and a gate runs on
// simulated hardware with its scanner on a real pseudo-terminal, read
// through the same serial code as a gate's scanner cable. Each step checks
// that the gate did what a station expects; Run fails if one did not.
package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gateagent/agent"
	"gateagent/cache"
	"gateagent/config"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/feed"
	"gateagent/gate"
	"gateagent/hw"
	"gateagent/internal/logging"
	"gateagent/internal/pty"
	"gateagent/internal/sdnotify"
	"gateagent/internal/wait"
	"gateagent/issuer"
	"gateagent/issuer/idcard"
	"gateagent/qrcode"
	"gateagent/verify"
)

// Options tune the walk-through.
type Options struct {
	// Dir holds the issuer's and the gate's files; default a temporary
	// directory, removed at the end.
	Dir string
	// Log receives the agent's and issuer's own log lines; default
	// Dir/demo.log.
	Log io.Writer
	// QR prints the passenger's first code as a QR code in the terminal.
	QR bool
}

// demo is one walk-through's state.
type demo struct {
	w        io.Writer
	iss      *issuer.Issuer
	sim      *hw.Sim
	ag       *agent.Agent
	tty      *pty.Pair
	outcomes chan gate.Outcome
	cert     issuer.Certificate
	gateID   string
	step     int
	qr       bool   // print the next code as a QR code
	socket   string // the agent's control socket
	gate2    *neighbour
}

// Run runs the walk-through, printing it to w.
func Run(ctx context.Context, w io.Writer, o Options) (err error) {
	if o.Dir == "" {
		dir, err := os.MkdirTemp("", "gateagent-demo-")
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer os.RemoveAll(dir)
		o.Dir = dir
	}
	if o.Log == nil {
		f, err := os.Create(filepath.Join(o.Dir, "demo.log"))
		if err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		defer f.Close()
		o.Log = f
	}
	log := logging.New(o.Log, logging.Options{}) // one key per attribute: the agent adds its parts to "gate"
	d := &demo{w: w, outcomes: make(chan gate.Outcome, 64), gateID: "DEMO-E01", qr: o.QR}

	// The issuer, in-process on loopback.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	signer, err := feed.NewSigner("demo-1", priv)
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	// The gate fleet's key pair: the issuer seals certificate keys to its
	// public part; the gate opens them with the private part, and seals
	// its cache under a cache key of its own. On a real gate both are
	// systemd credentials; the demo writes them to key files.
	keys, fleetPub, err := demoKeys(filepath.Join(o.Dir, "keys"))
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	if d.iss, err = issuer.Open(filepath.Join(o.Dir, "issuer.db"), issuer.Options{Signer: signer, Fleet: []feed.FleetPublic{fleetPub}, Logger: log.With("part", "issuer")}); err != nil {
		return fmt.Errorf("demo: start the issuer: %w", err)
	}
	defer d.iss.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: listen on loopback: %w", err)
	}
	srv := &http.Server{Handler: d.iss.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	issuerURL := "http://" + ln.Addr().String() + "/"

	// The scanner's cable: a pseudo-terminal pair.
	if d.tty, err = pty.Open(); err != nil {
		return fmt.Errorf("demo: make the scanner's serial line: %w", err)
	}
	defer d.tty.Close()

	cfg := config.Default()
	cfg.Version = config.Version
	cfg.Gate = config.Gate{ID: d.gateID, Direction: "entry", Cache: filepath.Join(o.Dir, "cache.db")}
	cfg.Feed.URL = issuerURL
	cfg.Feed.TrustedKeys = []string{signer.Public().String()}
	cfg.Feed.Interval = time.Second
	cfg.Scanner.Port = d.tty.SlavePath
	cfg.Scanner.Baud = 115200
	cfg.Scanner.RepeatWindow = 0 // the demo shows the same code twice on purpose
	cfg.HW.Kind = "sim"
	cfg.Keys = keys
	cfg.Control.Socket = filepath.Join(o.Dir, "control.sock")
	d.socket = cfg.Control.Socket
	addr2, err := stationConfig(&cfg, o.Dir)
	if err != nil {
		return fmt.Errorf("demo: the station key and addresses: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("demo: its own config: %w", err)
	}
	d.sim = hw.NewSim(nil, nil)
	quiet, _ := sdnotify.FromEnv(func(string) string { return "" })
	if d.ag, err = agent.New(&cfg, agent.Options{Board: d.sim.Board(), Logger: log.With("part", "gate"),
		Observe: func(o gate.Outcome) {
			select { // Observe must not block; the demo waits for each outcome long before 64 pile up
			case d.outcomes <- o:
			default:
			}
		}, Notifier: quiet}); err != nil {
		return fmt.Errorf("demo: start the gate: %w", err)
	}
	actx, stop := context.WithCancel(ctx)
	defer stop()
	agentDone := make(chan error, 1)
	go func() { agentDone <- d.ag.Run(actx) }()
	defer func() {
		stop()
		if aerr := <-agentDone; aerr != nil && err == nil {
			err = aerr
		}
	}()
	if d.gate2, err = startNeighbour(ctx, cfg, addr2, o.Dir, log.With("part", "gate 2")); err != nil {
		return err
	}
	defer func() {
		if gerr := d.gate2.close(); gerr != nil && err == nil {
			err = gerr
		}
	}()

	d.say("gatedemo: an entry gate on simulated hardware, with a local issuer\n")
	d.say("  issuer   %s (in-process reference issuer, feed key demo-1)\n", issuerURL)
	d.say("  scanner  %s (a pseudo-terminal: the demo types the QR texts into it)\n", d.tty.SlavePath)
	d.say("  gate     %s, relay locked, lamps off\n", d.gateID)
	d.say("  gate 2   %s beside it, the same station group (%s): the two share grants and passages over loopback\n\n", gate2ID, demoGroup)

	for _, s := range []func(context.Context) error{d.issue, d.valid, d.companion, d.stale, d.passback, d.revoked, d.emergency, d.upload, d.diag} {
		if err := s(ctx); err != nil {
			return err
		}
		d.say("\n")
	}
	stop()
	if err := <-agentDone; err != nil {
		agentDone <- err
		return err
	}
	agentDone <- nil
	if d.sim.Output("relay") {
		return errors.New("demo: the relay is not locked after shutdown")
	}
	d.say("The gate shut down cleanly: relay locked, cache closed. Every step behaved as a station expects.\n")
	return nil
}

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.w, format, a...) }

func (d *demo) title(s string) {
	d.step++
	d.say("%d. %s\n", d.step, s)
}

// demoNumber is a made-up resident ID number with a correct check
// character (area 110105, born 1990-03-07).
func demoNumber() string {
	n := "11010519900307123"
	return n + string(idcard.CheckChar(n))
}

func (d *demo) issue(ctx context.Context) error {
	d.title("A passenger who forgot their ID card applies in the 12306 app.")
	var err error
	d.cert, err = d.iss.Apply(issuer.Application{Name: "demo passenger", DocType: issuer.DocResidentID,
		DocNumber: demoNumber(), City: "广州", FaceCheck: "passed"})
	if err != nil {
		return fmt.Errorf("demo: issue the certificate: %w", err)
	}
	d.say("   issuer     face check passed: certificate %s…, valid until %s\n",
		d.cert.ID.String()[:8], d.cert.NotAfter.In(issuer.CST).Format("2006-01-02 15:04 CST"))
	start := time.Now()
	if err := d.waitCache(ctx, func(r verify.Record, ok bool) bool { return ok }); err != nil {
		return err
	}
	d.say("   gate       learnt the certificate's key from the signed key feed in %s; it checks codes offline from now on\n",
		time.Since(start).Round(time.Millisecond))
	if err := waitCacheOf(ctx, d.gate2.ag.Cache(), d.cert.ID); err != nil {
		return err
	}
	d.say("   gate 2     learnt it too, from the same feed\n")
	return nil
}

func (d *demo) valid(ctx context.Context) error {
	d.title("The passenger shows the QR code on their phone (it changes every minute).")
	o, err := d.scan(ctx, time.Now(), gate.Granted)
	if err != nil {
		return err
	}
	if !d.sim.Output("relay") || !d.sim.Output("green") {
		return errors.New("demo: granted, but the relay or the green lamp is off")
	}
	d.say("   gate       GRANTED: event recorded, relay unlocked, green lamp, one short beep (%.1f ms from scan to relay)\n",
		float64(o.At.Sub(o.ScanAt).Microseconds())/1000)
	d.sim.Input("passage").Set(true)
	if _, err := d.want(ctx, gate.Passed); err != nil {
		return err
	}
	d.say("   passenger  walks into the passage: passage recorded, anti-passback armed\n")
	d.sim.Input("passage").Set(false)
	if _, err := d.want(ctx, gate.Closed); err != nil {
		return err
	}
	if d.sim.Output("relay") {
		return errors.New("demo: the passage is clear but the relay is still unlocked")
	}
	d.say("   gate       passage clear: relay locked, green lamp off\n")
	return nil
}

func (d *demo) stale(ctx context.Context) error {
	d.title("Someone shows a screenshot of that code taken two minutes ago.")
	return d.denied(ctx, time.Now().Add(-2*time.Minute), verify.CodeStale)
}

func (d *demo) passback(ctx context.Context) error {
	d.title("The same passenger tries to enter again with a fresh code.")
	return d.denied(ctx, time.Now(), verify.Passback)
}

func (d *demo) revoked(ctx context.Context) error {
	d.title("The station revokes the certificate (say, the phone was reported stolen).")
	if err := d.iss.Revoke(d.cert.ID); err != nil {
		return fmt.Errorf("demo: revoke: %w", err)
	}
	start := time.Now()
	if err := d.waitCache(ctx, func(r verify.Record, ok bool) bool { return ok && r.Revoked }); err != nil {
		return err
	}
	d.say("   gate       the revocation arrived with the next poll of the feed (%s)\n", time.Since(start).Round(time.Millisecond))
	return d.denied(ctx, time.Now(), verify.Revoked)
}

func (d *demo) emergency(ctx context.Context) error {
	d.title("Fire alarm: the station control room engages the emergency input.")
	d.sim.Input("emergency").Set(true)
	if _, err := d.want(ctx, gate.EmergencyOn); err != nil {
		return err
	}
	if !d.sim.Output("relay") {
		return errors.New("demo: emergency engaged but the relay is locked")
	}
	d.say("   gate       relay held open, green lamp: free passage, event recorded\n")
	d.sim.Input("passage").Set(true)
	if _, err := d.want(ctx, gate.FreePassage); err != nil {
		return err
	}
	d.sim.Input("passage").Set(false)
	d.say("   passengers walk out without scanning; no alarm\n")
	d.sim.Input("emergency").Set(false)
	if _, err := d.want(ctx, gate.EmergencyOff); err != nil {
		return err
	}
	if d.sim.Output("relay") {
		return errors.New("demo: emergency released but the relay is still unlocked")
	}
	d.say("   gate       emergency released: relay locked, back in service, event recorded\n")
	return nil
}

func (d *demo) upload(ctx context.Context) error {
	d.title("The gate uploads its event log to the issuer.")
	var got []json.RawMessage
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		got, err = d.iss.GateEvents(d.gateID)
		if err != nil {
			return fmt.Errorf("demo: read the issuer's events: %w", err)
		}
		pending, err := d.ag.Journal().Events(0, 1000)
		if err != nil {
			return fmt.Errorf("demo: read the gate's events: %w", err)
		}
		if len(got) >= 7 && len(pending) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("demo: the issuer holds %d events of the gate and %d are still pending after 15 s", len(got), len(pending))
		}
		if err := wait.Sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	kinds := map[event.Kind]int{}
	for _, raw := range got {
		var e event.Event
		if err := json.Unmarshal(raw, &e); err != nil {
			return fmt.Errorf("demo: an event at the issuer: %w", err)
		}
		kinds[e.Kind]++
	}
	d.say("   issuer     holds the gate's %d events: %d decisions, %d passage, %d emergency, %d alarms; none left on the gate\n",
		len(got), kinds[event.Decision], kinds[event.Passage], kinds[event.Emergency], kinds[event.Alarm]+kinds[event.ForcedPassage])
	if len(got) != 7 || kinds[event.Decision] != 4 || kinds[event.Passage] != 1 || kinds[event.Emergency] != 2 {
		return errors.New("demo: the event log is not what the walk-through did")
	}
	return nil
}

// diag runs `gateagent diag` against the running gate, as a technician
// would: every check must pass but the keys', which warns that the
// demo's keys are files in the clear (a gate seals them with systemd
// credentials).
func (d *demo) diag(ctx context.Context) error {
	d.title("A technician runs `gateagent diag` at the gate (it asks the running agent over its control socket).")
	var out, errb strings.Builder
	code := diag.Command([]string{"--socket", d.socket, "--config", filepath.Join(filepath.Dir(d.socket), "none.toml")}, &out, &errb, diag.Env{})
	unwell := code != 0 && code != 1 || !strings.Contains(out.String(), "daemon mode")
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		d.say("   %s\n", line)
		if strings.HasPrefix(line, "FAIL ") || strings.HasPrefix(line, "WARN ") && !strings.HasPrefix(line, "WARN  keys ") {
			unwell = true
		}
	}
	if unwell {
		return fmt.Errorf("demo: gateagent diag found the gate unwell (exit %d): %s", code, errb.String())
	}
	d.say("   (the one warning: the demo keeps its keys in files; a gate's are sealed with systemd credentials)\n")
	return nil
}

// denied scans a code made at `at` and checks the gate refused it for want.
func (d *demo) denied(ctx context.Context, at time.Time, want verify.Reason) error {
	o, err := d.scan(ctx, at, gate.Denied)
	if err != nil {
		return err
	}
	if o.Decision.Reason != want {
		return fmt.Errorf("demo: the gate said %v, want %v", o.Decision.Reason, want)
	}
	if d.sim.Output("relay") {
		return errors.New("demo: denied, but the relay moved")
	}
	d.say("   gate       DENIED %v: red lamp, %s; the relay did not move\n", o.Decision.Reason, signal(o.Decision.Reason.Family()))
	return nil
}

func signal(f verify.Family) string {
	switch f {
	case verify.FamilyRefresh:
		return "two short beeps (\"refresh the code on your phone\")"
	case verify.FamilyManual:
		return "one long beep (\"please go to the manual channel\")"
	case verify.FamilyInvalid:
		return "three short beeps (\"this code is not valid\")"
	}
	return "a long double beep (\"gate out of service\")"
}

// scan types the code of `at` into the scanner line and waits for kind.
func (d *demo) scan(ctx context.Context, at time.Time, kind gate.OutcomeKind) (gate.Outcome, error) {
	tok, err := d.iss.Token(d.cert.ID, at)
	if err != nil {
		return gate.Outcome{}, fmt.Errorf("demo: the phone's code: %w", err)
	}
	text := tok.String()
	d.say("   phone      %s (the code of %s)\n", text, verify.StepStart(tok.Step).In(issuer.CST).Format("15:04 CST"))
	if d.qr {
		d.qr = false
		if m, err := qrcode.Encode(text); err == nil {
			_ = m.Terminal(d.w)
		}
	}
	if _, err := d.tty.Master.Write([]byte(text + "\r")); err != nil {
		return gate.Outcome{}, fmt.Errorf("demo: type into the scanner line: %w", err)
	}
	return d.want(ctx, kind)
}

func (d *demo) want(ctx context.Context, kind gate.OutcomeKind) (gate.Outcome, error) {
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
	select {
	case o := <-d.outcomes:
		if o.Kind != kind {
			return o, fmt.Errorf("demo: the gate did %v (%v), want %v", o.Kind, o.Decision.Reason, kind)
		}
		return o, nil
	case <-t.C:
		return gate.Outcome{}, fmt.Errorf("demo: the gate did nothing within 10 s, want %v", kind)
	case <-ctx.Done():
		return gate.Outcome{}, ctx.Err()
	}
}

// waitCacheOf waits until c holds certificate id.
func waitCacheOf(ctx context.Context, c *cache.Cache, id verify.CertID) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, found, err := c.Lookup(id, verify.Entry)
		if err != nil {
			return fmt.Errorf("demo: read gate 2's cache: %w", err)
		}
		if found {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("demo: gate 2's cache did not catch up with the issuer within 15 s")
		}
		if err := wait.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitCache waits until the gate's cache holds the certificate as ok says.
func (d *demo) waitCache(ctx context.Context, ok func(verify.Record, bool) bool) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, found, err := d.ag.Cache().Lookup(d.cert.ID, verify.Entry)
		if err != nil {
			return fmt.Errorf("demo: read the gate's cache: %w", err)
		}
		if ok(r, found) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("demo: the gate's cache did not catch up with the issuer within 15 s")
		}
		if err := wait.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// demoKeys makes the gate's keys in dir (mode 0700): a fleet key pair and
// a cache key, in key files of mode 0600. It returns the config's [keys]
// section and the fleet public key for the issuer.
func demoKeys(dir string) (config.KeySources, feed.FleetPublic, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return config.KeySources{}, feed.FleetPublic{}, err
	}
	fk, err := feed.GenerateFleetKey()
	if err != nil {
		return config.KeySources{}, feed.FleetPublic{}, err
	}
	text, err := fk.MarshalText()
	if err != nil {
		return config.KeySources{}, feed.FleetPublic{}, err
	}
	ks := config.KeySources{CacheKey: filepath.Join(dir, "cache.key"), FleetKeys: []string{filepath.Join(dir, "fleet.key")}}
	if err := os.WriteFile(ks.FleetKeys[0], text, 0o600); err != nil {
		return config.KeySources{}, feed.FleetPublic{}, err
	}
	ck := make([]byte, cache.KeyLen)
	rand.Read(ck)
	if err := os.WriteFile(ks.CacheKey, ck, 0o600); err != nil {
		return config.KeySources{}, feed.FleetPublic{}, err
	}
	return ks, fk.Public(), nil
}
