package diag_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/config/configtest"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/hw"
	"gateagent/hw/gpiohw"
	"gateagent/hw/hwtest"
	"gateagent/verify"
)

// offlineGate is a gate with its daemon stopped and the spec's two
// certificates in a real cache file; its issuer is out of reach, so diag
// checks codes on the gate's own clock.
type offlineGate struct {
	t               *testing.T
	dir, cfg, cache string
	pins            *hwtest.Board
	now             time.Time
}

func newOfflineGate(t *testing.T, now time.Time) *offlineGate {
	t.Helper()
	g := &offlineGate{t: t, dir: t.TempDir(), pins: hwtest.NewBoard(), now: now}
	g.cache = filepath.Join(g.dir, "cache.db")
	c, err := cache.Open(g.cache, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	b := &cache.Batch{From: 0, Next: 2, Upserts: []verify.Cert{vecCert(t, vecCertID, vecKey, vecAt), vecCert(t, vecSpaceCert, vecSpaceKey, vecAt)},
		Feed: cache.FeedState{SyncedAt: now, MaxAge: 30 * time.Minute}}
	if b.Upserts[0].ID.String() > b.Upserts[1].ID.String() {
		b.Upserts[0], b.Upserts[1] = b.Upserts[1], b.Upserts[0]
	}
	if _, err := c.Apply(b); err != nil {
		t.Fatal(err)
	}
	c.Close()
	// The journal beside it, as the agent's first start leaves it.
	j, err := cache.OpenJournal(cache.JournalPath(g.cache), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	text := strings.NewReplacer("{CACHE}", g.cache, "{URL}", "http://127.0.0.1:1/", "{KEY}", "k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk=",
		"{PORT}", filepath.Join(g.dir, "no-scanner"), "{RELAY}", hwtest.Relay, "{SOCKET}", filepath.Join(g.dir, "none.sock"), "{REFUSE}", "false", "{KEYS}", configtest.CredentialsTOML(t)).Replace(configText)
	g.cfg = filepath.Join(g.dir, "gateagent.toml")
	if err := os.WriteFile(g.cfg, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return g
}

func (g *offlineGate) run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	env := diag.Env{
		Now:          func() time.Time { return g.now },
		OpenBoard:    func(cfg *config.Config) (*hw.Board, error) { return gpiohw.OpenPins(cfg.Pins(), g.pins.Lookup) },
		TrustedAfter: time.Unix(0, 0),
		FeedTimeout:  2 * time.Second,
		AgentUser:    me(g.t),
	}
	code := diag.Command(append(args, "--config", g.cfg), &out, &errb, env)
	return code, out.String(), errb.String()
}

// verdict is what the verifier itself says of text on the same cache
// file at the same time.
func (g *offlineGate) verdict(t *testing.T, text string) verify.Reason {
	t.Helper()
	c, err := cache.Open(g.cache, cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := vecVerifier(t, c, g.now).VerifyAt([]byte(text), g.now)
	if err != nil {
		t.Fatal(err)
	}
	return d.Reason
}

// TestDiagTokenAgreesOnSpecVectors: `gateagent diag token` on every
// vector of the spec, and on the spec's malformed variants, says what the
// verifier says, with the exit status of its verdict.
func TestDiagTokenAgreesOnSpecVectors(t *testing.T) {
	first := vecTokens[0].token
	texts := []string{vecSpaceToken, strings.ToLower(first), "TR2:" + first[4:], first + "A", first[:57], first[:57] + "#",
		"TR1:GGW" + first[7:]}
	for _, v := range vecTokens {
		texts = append(texts, v.token)
	}
	for _, at := range []time.Time{vecAt, verify.StepStart(vecTokens[1].step), verify.StepStart(0).Add(30 * time.Second), time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)} {
		g := newOfflineGate(t, at)
		for _, text := range texts {
			want := g.verdict(t, text)
			code, out, errs := g.run("token", text, "--json")
			var r diag.TokenReport
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("diag token %q: no report (%v): %s %s", text, err, out, errs)
			}
			wantCode := 2
			if want == verify.OK {
				wantCode = 0
			}
			if r.Reason != want.String() || code != wantCode {
				t.Errorf("at %v, diag token %q: %s exit %d; the verifier says %s", at, text, r.Reason, code, want)
			}
			if strings.Contains(out, text) {
				t.Errorf("the report repeats the code's text")
			}
		}
	}
}

// TestDiagDecode: photos of the passenger's screen, made by Debian's
// qrencode and by gozxing, are read and explained like the text.
func TestDiagDecode(t *testing.T) {
	g := newOfflineGate(t, vecAt)
	for _, text := range []string{vecTokens[0].token, vecSpaceToken} {
		for name, png := range map[string]string{"qrencode": qrencodePNG(t, text), "gozxing": gozxingPNG(t, text)} {
			code, out, errs := g.run("decode", png)
			if code != 0 || !strings.Contains(out, "OK") || !strings.Contains(out, filepath.Base(png)) {
				t.Errorf("%s image of %q: exit %d\n%s%s", name, text, code, out, errs)
			}
		}
	}
	blank := filepath.Join(t.TempDir(), "blank.txt")
	os.WriteFile(blank, []byte("not an image"), 0o600)
	if code, _, errs := g.run("decode", blank); code != 2 || !strings.Contains(errs, "blank.txt") {
		t.Errorf("decode of a text file: exit %d: %s", code, errs)
	}
}

// TestDiagOutputsStandalone: relay, indicators and sensors with the
// agent stopped drive the board themselves, exactly as asked.
func TestDiagOutputsStandalone(t *testing.T) {
	g := newOfflineGate(t, time.Now())
	// Someone pushes through when the relay unlocks (active-low: Low), and
	// is out again once the gate has read the passage sensor with them in
	// it (the board's journal shows the read).
	outs := g.pins.WaitOut(hwtest.Relay) // subscribed before the test can move it
	seen := make(chan struct{}, 1)
	g.pins.Journal.Subscribe(func(op hwtest.Op) {
		if op.Pin == hwtest.Passage && op.Kind == "read" && op.Level == gpio.High {
			select {
			case seen <- struct{}{}:
			default:
			}
		}
	})
	go func() {
		for l := range outs {
			if l == gpio.Low {
				g.pins.Set(hwtest.Passage, true)
				select { // not read within 10 s: diag relay below says nobody passed
				case <-seen:
				case <-time.After(10 * time.Second):
				}
				g.pins.Set(hwtest.Passage, false)
				return
			}
		}
	}()
	code, out, errs := g.run("relay", "--pulse", "200ms")
	if code != 0 || !strings.Contains(out, "PASS") {
		t.Fatalf("diag relay: exit %d\n%s%s", code, out, errs)
	}
	if got := g.pins.Journal.Levels(hwtest.Relay); len(got) != 3 || got[0] != gpio.High || got[1] != gpio.Low || got[2] != gpio.High {
		t.Errorf("relay went %v, want locked, unlocked, locked", got)
	}
	j, err := cache.OpenJournal(cache.JournalPath(g.cache), cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	evs, _ := j.Events(0, 10)
	j.Close()
	if len(evs) != 1 || evs[0].Kind != event.Technician || !strings.Contains(evs[0].Detail, "relay") {
		t.Errorf("events after the relay test: %+v", evs)
	}

	// Nobody pushes: the relay still moves once, but it is not confirmed.
	code, out, _ = g.run("relay", "--pulse", "100ms")
	if code != 1 || !strings.Contains(out, "WARN") || !strings.Contains(out, "nobody passed") {
		t.Errorf("unconfirmed relay test: exit %d\n%s", code, out)
	}

	code, out, _ = g.run("indicators", "--json")
	var ch diag.Check
	if err := json.Unmarshal([]byte(out), &ch); err != nil || code != 0 || ch.Status != diag.Pass {
		t.Errorf("indicators: exit %d %v\n%s", code, err, out)
	}
	for _, pin := range []string{hwtest.Green, hwtest.Red, hwtest.Buzzer} {
		if lv := g.pins.Journal.Levels(pin); len(lv) < 2 || lv[len(lv)-1] != gpio.Low {
			t.Errorf("%s went %v during the indicator test, want on then off", pin, lv)
		}
	}

	g.pins.Set(hwtest.Emergency, true)
	code, out, _ = g.run("sensors", "--seconds", "1")
	if code != 0 || !strings.Contains(out, "passage=clear") || !strings.Contains(out, "emergency=ENGAGED") {
		t.Errorf("diag sensors: exit %d\n%s", code, out)
	}
}

// TestDiagScanStandalone reads one code from the scanner's port itself.
func TestDiagScanStandalone(t *testing.T) {
	st := newStation(t)
	peer := st.peer()
	c := st.certs[3]
	done := make(chan struct{})
	var code int
	var out, errs string
	go func() {
		defer close(done)
		code, out, errs = st.run("scan", "--timeout", "10s")
	}()
	// The code stays in view: the scanner sends it again every 100 ms
	// until diag, which opens the port itself, has read it.
	for waiting := true; waiting; {
		peer.Write([]byte(token(c, st.gateNow) + "\r"))
		select {
		case <-done:
			waiting = false
		case <-time.After(100 * time.Millisecond):
		}
	}
	if code != 0 || !strings.Contains(out, "result: PASS OK") || !strings.Contains(out, c.ID.String()) {
		t.Fatalf("diag scan: exit %d\n%s%s", code, out, errs)
	}
}

func TestUsage(t *testing.T) {
	g := newOfflineGate(t, time.Now())
	for _, args := range [][]string{{"frobnicate"}, {"token"}, {"token", "a", "b"}, {"relay"}, {"sensors", "--seconds", "0"}, {"--bogus"}} {
		code, _, errs := g.run(args...)
		if code != 64 || !strings.Contains(errs, "usage: gateagent diag") {
			t.Errorf("diag %v: exit %d, stderr %q", args, code, errs)
		}
	}
	if got := g.pins.Journal.Levels(hwtest.Relay); len(got) != 0 {
		t.Errorf("a refused command moved the relay: %v", got)
	}
}

// TestRelayPulseOutOfRange: a pulse outside 50ms..5s is a usage error
// before anything happens; diag does not say it energises the relay.
func TestRelayPulseOutOfRange(t *testing.T) {
	g := newOfflineGate(t, time.Now())
	for _, p := range []string{"1h", "1ms"} {
		code, out, errs := g.run("relay", "--pulse", p)
		if code != 64 || strings.Contains(out+errs, "energising") || !strings.Contains(errs, "use 50ms to 5s") {
			t.Errorf("--pulse %s: exit %d\n%s%s", p, code, out, errs)
		}
	}
	if got := g.pins.Journal.Levels(hwtest.Relay); slices.Contains(got, gpio.Low) {
		t.Errorf("the relay moved: %v", got)
	}
}
