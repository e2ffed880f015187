package diag_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/config/configtest"
	"gateagent/diag"
	"gateagent/feed"
	"gateagent/feed/feedtest"
	"gateagent/hw"
	"gateagent/hw/gpiohw"
	"gateagent/hw/hwtest"
	"gateagent/internal/kclock"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/scanner/scannertest"
	"gateagent/verify"
)

// station is one gate with its daemon stopped: an issuer on loopback, a
// cache file synced from it, a scanner port (socat pty), fake GPIO pins
// and the config file that names them all.
type station struct {
	t       *testing.T
	srv     *issuertest.Server
	signer  *feed.Signer
	dir     string
	cache   string
	port    string
	tty     *scannertest.Socat
	pins    *hwtest.Board
	certs   []verify.Cert
	gateNow time.Time
	// kernel is what the gate's kernel says of its clock: synchronised
	// unless a test says otherwise.
	kernel kclock.State
	// agentUser is whom diag checks the cache's access as: the tests'
	// own user unless a test says otherwise, so that an agent's user on
	// the machine (a package installed) changes nothing.
	agentUser string
	fields    map[string]string // config text substitutions
}

var trustedAfter = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

func newStation(t *testing.T) *station { return newSkewedStation(t, 0) }

// newSkewedStation is a station whose gate clock is skew off the issuer's
// from the start (its cache synced on that clock).
func newSkewedStation(t *testing.T, skew time.Duration) *station {
	t.Helper()
	st := &station{t: t, dir: t.TempDir(), pins: hwtest.NewBoard(), kernel: kclock.State{Synced: true, MaxError: 20 * time.Millisecond}, agentUser: me(t)}
	st.signer = feedtest.Signer(t, "test-1", 1)
	st.srv = issuertest.Start(t, issuer.Options{Signer: st.signer})
	st.gateNow = st.srv.Clock.Now().Add(skew)
	st.cache = filepath.Join(st.dir, "cache.db")
	st.tty = scannertest.Start(t)
	st.port = st.tty.Dev
	// 40 certificates: enough that the certificates get pages of their
	// own in the cache file.
	st.certs = make([]verify.Cert, 40)
	nb := st.srv.Clock.Now().Truncate(time.Second).Add(-time.Hour)
	for i := range st.certs {
		h := sha256.Sum256([]byte{byte(i), 'd'})
		copy(st.certs[i].ID[:], h[:16])
		copy(st.certs[i].Key[:], h[:])
		st.certs[i].NotBefore, st.certs[i].NotAfter = nb, nb.Add(24*time.Hour)
	}
	if err := st.srv.InsertSynthetic(st.certs); err != nil {
		t.Fatal(err)
	}
	st.sync()
	st.fields = map[string]string{"URL": st.srv.URL, "KEY": st.signer.Public().String(), "PORT": st.port,
		"RELAY": hwtest.Relay, "CACHE": st.cache, "SOCKET": filepath.Join(st.dir, "control.sock"), "REFUSE": "false",
		"KEYS": configtest.CredentialsTOML(t)}
	return st
}

// peer is the scanner's end of the serial line.
func (st *station) peer() *os.File { return st.tty.OpenPeer(st.t) }

// sync brings the cache file up to the issuer, as the agent would, and
// closes it and the journal beside it.
func (st *station) sync() {
	t := st.t
	c, err := cache.Open(st.cache, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	j, err := cache.OpenJournal(cache.JournalPath(st.cache), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	cl, err := keysync.New(keysync.Config{URL: st.srv.URL, Keys: feedtest.Keyring(t, st.signer), Fleet: feedtest.Fleet(t), Cache: c, Journal: j, GateID: "DIAG-1",
		Now: func() time.Time { return st.gateNow }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

const configText = `version = 1
[gate]
id = "DIAG-1"
cache = "{CACHE}"
[feed]
url = "{URL}"
trusted_keys = ["{KEY}"]
refuse_when_stale = {REFUSE}
[scanner]
port = "{PORT}"
baud = 115200
[hw]
kind = "gpio"
debounce = "0s"
poll = "2ms"
[hw.relay]
pin = "{RELAY}"
active_low = true
[hw.green]
pin = "GREEN"
[hw.red]
pin = "RED"
[hw.buzzer]
pin = "BUZZER"
[hw.passage]
pin = "PASSAGE"
[hw.emergency]
pin = "EMERGENCY"
[control]
socket = "{SOCKET}"
{KEYS}`

func (st *station) writeConfig() string {
	text := configText
	for k, v := range st.fields {
		text = strings.ReplaceAll(text, "{"+k+"}", v)
	}
	path := filepath.Join(st.dir, "gateagent.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		st.t.Fatal(err)
	}
	return path
}

func (st *station) env() diag.Env {
	return diag.Env{
		Now:          func() time.Time { return st.gateNow },
		OpenBoard:    func(cfg *config.Config) (*hw.Board, error) { return gpiohw.OpenPins(cfg.Pins(), st.pins.Lookup) },
		TrustedAfter: trustedAfter,
		FeedTimeout:  5 * time.Second,
		ClockState:   func() (kclock.State, error) { return st.kernel, nil },
		AgentUser:    st.agentUser,
	}
}

// run runs `gateagent diag ARGS` against the station and returns the exit
// status and what it printed.
func (st *station) run(args ...string) (int, string, string) {
	st.t.Helper()
	path := st.writeConfig()
	var out, errb bytes.Buffer
	code := diag.Command(append(args, "--config", path), &out, &errb, st.env())
	return code, out.String(), errb.String()
}

// report runs the full diag with --json and decodes it.
func (st *station) report() (int, *diag.Report, string) {
	st.t.Helper()
	code, out, errs := st.run("--json")
	var r diag.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		st.t.Fatalf("diag --json printed no report (%v):\n%s\nstderr: %s", err, out, errs)
	}
	return code, &r, out
}

func token(c verify.Cert, at time.Time) string {
	tok := verify.NewToken(&c.Key, c.ID, verify.StepOf(at))
	b, _ := tok.AppendText(nil)
	return string(b)
}

func describe(r *diag.Report) string {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "  %s %s: %s\n", c.Status, c.Name, c.Line)
	}
	return b.String()
}

// me is the user the tests run as.
func me(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
