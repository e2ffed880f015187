package station

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"gateagent/verify"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).UnixNano()

const (
	sec    = int64(time.Second)
	window = 30 * time.Minute
	hold   = 8 * time.Second
)

func cert(i byte) verify.CertID {
	var c verify.CertID
	c[0], c[15] = i, 0xa5
	return c
}

func newTestState(self string) *state {
	return newState(self, []string{"E01", "E02", "E03"}, window, 2*time.Minute, 30*time.Second, 1000)
}

// holdOf is the grant gate made of c at at, held for the pass timeout.
func holdOf(gate string, c verify.CertID, at int64) grant {
	return grant{cert: c, dir: verify.Entry, gate: gate, at: at, until: at + int64(hold)}
}

func TestSeenHoldStandsUntilItLapsesOrExpires(t *testing.T) {
	s := newTestState("E02")
	c := cert(1)
	if _, drop, _ := s.merge(holdOf("E01", c, t0), t0+sec, nil); drop != dropNone {
		t.Fatalf("hold dropped: %v", drop)
	}
	sg, ok := s.seen(c, verify.Entry, t0+sec)
	if !ok || !sg.Held || sg.Gate != "E01" || sg.At.UnixNano() != t0 {
		t.Fatalf("seen %+v %v, want held at E01 since t0", sg, ok)
	}
	if _, ok := s.seen(c, verify.Exit, t0+sec); ok {
		t.Fatal("a hold in the entry direction is seen for exit")
	}
	// Unresolved after its end: the hold no longer stands.
	if sg, ok := s.seen(c, verify.Entry, t0+int64(hold)); ok {
		t.Fatalf("hold seen after its end: %+v", sg)
	}
	// Released early: the passenger stepped back and may use another gate.
	if _, drop, _ := s.merge(grant{cert: c, dir: verify.Entry, gate: "E01", at: t0, released: t0 + 2*sec}, t0+3*sec, nil); drop != dropNone {
		t.Fatal(drop)
	}
	if sg, ok := s.seen(c, verify.Entry, t0+3*sec); ok {
		t.Fatalf("a released hold is still seen: %+v", sg)
	}
}

func TestSeenPassageWithinTheWindow(t *testing.T) {
	s := newTestState("E03")
	c := cert(2)
	g := holdOf("E01", c, t0)
	g.passed = t0 + 2*sec
	s.merge(g, t0+3*sec, nil)
	sg, ok := s.seen(c, verify.Entry, t0+3*sec)
	if !ok || sg.Held || sg.Gate != "E01" || sg.At.UnixNano() != t0+2*sec {
		t.Fatalf("seen %+v %v, want passed at E01 at t0+2s", sg, ok)
	}
	if _, ok := s.seen(c, verify.Entry, t0+2*sec+int64(window)-1); !ok {
		t.Fatal("not seen just inside the window")
	}
	if _, ok := s.seen(c, verify.Entry, t0+2*sec+int64(window)); ok {
		t.Fatal("seen at the window's end")
	}
	// A passage "in the future" (the clock was set back) counts as within.
	if _, ok := s.seen(c, verify.Entry, t0); !ok {
		t.Fatal("a passage recorded in the future is not seen")
	}
}

func TestOwnGrantsAreNeverSightings(t *testing.T) {
	s := newTestState("E01")
	c := cert(3)
	s.local(kindHold, c, verify.Entry, t0, t0+int64(hold), nil)
	if sg, ok := s.seen(c, verify.Entry, t0+sec); ok {
		t.Fatalf("this gate's own hold refuses its own passenger: %+v", sg)
	}
	s.local(kindPassed, c, verify.Entry, t0+sec, 0, nil)
	if sg, ok := s.seen(c, verify.Entry, t0+2*sec); ok {
		t.Fatalf("own passage seen (the cache has it): %+v", sg)
	}
	// Learnt back from a peer after a restart: still this gate's own.
	s2 := newTestState("E01")
	g := holdOf("E01", c, t0)
	g.passed = t0 + sec
	s2.merge(g, t0+2*sec, nil)
	if _, ok := s2.seen(c, verify.Entry, t0+2*sec); ok {
		t.Fatal("own passage learnt from a peer is a sighting")
	}
}

func TestLocalReportsFollowTheLatestGrant(t *testing.T) {
	s := newTestState("E01")
	c := cert(4)
	m, ok, _ := s.local(kindRelease, c, verify.Entry, t0, 0, nil)
	if ok {
		t.Fatalf("a lapse without a grant is sent: %+v", m)
	}
	s.local(kindHold, c, verify.Entry, t0, t0+int64(hold), nil)
	m, ok, _ = s.local(kindRelease, c, verify.Entry, t0+2*sec, 0, nil)
	if !ok || m.kind != kindRelease || m.at != t0 || m.t != t0+2*sec || m.gate != "E01" {
		t.Fatalf("release message %+v", m)
	}
	// A lapse at the end of the hold, as the hold said, is not sent: the
	// peers' copy of the hold ends there by itself.
	s.local(kindHold, c, verify.Entry, t0+10*sec, t0+18*sec, nil)
	if m, ok, _ = s.local(kindRelease, c, verify.Entry, t0+18*sec, 0, nil); ok {
		t.Fatalf("a lapse at the hold's end is sent: %+v", m)
	}
	if g := s.byCert[keyOf(c, verify.Entry)]; g[len(g)-1].released != t0+18*sec {
		t.Fatal("the lapse is not recorded here")
	}
	s.local(kindHold, c, verify.Entry, t0+20*sec, t0+28*sec, nil)
	m, _, _ = s.local(kindPassed, c, verify.Entry, t0+21*sec, 0, nil)
	if m.at != t0+20*sec {
		t.Fatalf("passage names grant %d, want the latest (t0+20s)", m.at-t0)
	}
	// A passage whose grant this process never saw stands for both.
	m, ok, _ = s.local(kindPassed, cert(5), verify.Exit, t0+sec, 0, nil)
	if !ok || m.at != t0+sec || m.t != t0+sec {
		t.Fatalf("passage without a grant: %+v %v", m, ok)
	}
	if s.n != 4 {
		t.Fatalf("%d grants, want 4", s.n)
	}
}

func TestJudgeDropsWhatCannotBe(t *testing.T) {
	now := t0 + 10*sec
	for _, c := range []struct {
		name string
		g    grant
		want dropReason
	}{
		{"fine", holdOf("E01", cert(1), t0), dropNone},
		{"not a station gate", holdOf("ROGUE", cert(1), t0), dropUnknownGate},
		{"no grant time", grant{cert: cert(1), dir: verify.Entry, gate: "E01", passed: t0}, dropMalformed},
		{"hold ends before it starts", grant{cert: cert(1), dir: verify.Entry, gate: "E01", at: t0, until: t0 - 1}, dropMalformed},
		{"hold longer than any pass timeout", grant{cert: cert(1), dir: verify.Entry, gate: "E01", at: t0, until: t0 + int64(time.Hour)}, dropMalformed},
		{"passed before granted", grant{cert: cert(1), dir: verify.Entry, gate: "E01", at: t0, passed: t0 - sec}, dropMalformed},
		{"negative", grant{cert: cert(1), dir: verify.Entry, gate: "E01", at: t0, released: -5}, dropMalformed},
		{"granted in the future", holdOf("E01", cert(1), now+time.Minute.Nanoseconds()), dropFuture},
		{"passed in the future", grant{cert: cert(1), dir: verify.Entry, gate: "E01", at: t0, passed: now + time.Hour.Nanoseconds()}, dropFuture},
		{"within the skew", holdOf("E01", cert(1), now+20*sec), dropNone},
		{"outside the window", grant{cert: cert(1), dir: verify.Entry, gate: "E01", at: now - 2*int64(window), passed: now - 2*int64(window)}, dropExpired},
	} {
		s := newTestState("E02")
		changed, drop, _ := s.merge(c.g, now, nil)
		if drop != c.want || changed != (c.want == dropNone) {
			t.Errorf("%s: changed %v, drop %v; want drop %v", c.name, changed, drop, c.want)
		}
		if c.want != dropNone && s.n != 0 {
			t.Errorf("%s: dropped but stored", c.name)
		}
	}
}

// TestMergeConverges: the same reports in any order, any number of times,
// give the same state.
func TestMergeConverges(t *testing.T) {
	c := cert(6)
	reports := []grant{
		holdOf("E01", c, t0),
		{cert: c, dir: verify.Entry, gate: "E01", at: t0, passed: t0 + 3*sec},
		{cert: c, dir: verify.Entry, gate: "E01", at: t0, released: t0 + 9*sec}, // a late, contradicting report
		holdOf("E03", c, t0+40*sec),
		{cert: c, dir: verify.Entry, gate: "E03", at: t0 + 40*sec, released: t0 + 48*sec},
		{cert: c, dir: verify.Entry, gate: "E03", at: t0 + 40*sec, released: t0 + 47*sec},
	}
	var want []grant
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		s := newTestState("E02")
		order := rng.Perm(len(reports) * 2)
		for _, i := range order {
			s.merge(reports[i%len(reports)], t0+50*sec, nil)
		}
		_, got := s.snapshot()
		if s.n != 2 || len(got) != 2 {
			t.Fatalf("round %d: %d grants, want 2", round, len(got))
		}
		if got[0].gate > got[1].gate {
			got[0], got[1] = got[1], got[0]
		}
		if want == nil {
			want = got
			continue
		}
		if got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("round %d: %+v, want %+v", round, got, want)
		}
	}
	if want[0].passed != t0+3*sec || want[1].released != t0+47*sec || want[1].until != t0+48*sec {
		t.Fatalf("merged %+v", want)
	}
}

func TestStateIsBounded(t *testing.T) {
	s := newState("E02", []string{"E01"}, window, 2*time.Minute, 30*time.Second, 10)
	for i := range 12 {
		_, drop, _ := s.merge(holdOf("E01", cert(byte(i)), t0), t0, nil)
		if want := dropNone; i >= 10 {
			if drop != dropFull {
				t.Fatalf("grant %d: %v, want full", i, drop)
			}
		} else if drop != want {
			t.Fatalf("grant %d: %v", i, drop)
		}
	}
	// News of a grant already held is still taken.
	g := holdOf("E01", cert(0), t0)
	g.passed = t0 + sec
	if changed, drop, _ := s.merge(g, t0+sec, nil); !changed || drop != dropNone {
		t.Fatalf("update of a held grant: %v %v", changed, drop)
	}
	// This gate's own grants are always recorded.
	if _, ok, _ := s.local(kindHold, cert(99), verify.Entry, t0, t0+int64(hold), nil); !ok || s.n != 11 {
		t.Fatalf("own hold not recorded in a full state: %d", s.n)
	}
	s.prune(t0 + int64(hold) + int64(window) + 2*sec)
	if s.n != 0 || len(s.byCert) != 0 || len(s.last) != 0 {
		t.Fatalf("after the window: %d grants, %d keys", s.n, len(s.byCert))
	}
}

// TestDoubleUse: which pairs of grants at two gates are double uses.
func TestDoubleUse(t *testing.T) {
	passAfter := func(g grant, d int64) grant { g.passed = g.at + d; return g }
	lapse := func(g grant) grant { g.released = g.until; return g }
	for _, c := range []struct {
		name       string
		here, peer grant
		want       bool
	}{
		{"companion 50ms after a passage", passAfter(holdOf("E01", cert(1), t0), 10), holdOf("E02", cert(1), t0+50*int64(time.Millisecond)), true},
		{"companion while the passenger walks up", holdOf("E01", cert(1), t0), holdOf("E02", cert(1), t0+sec), true},
		{"granted elsewhere first, then here", holdOf("E01", cert(1), t0+2*sec), passAfter(holdOf("E02", cert(1), t0), sec), true},
		{"same instant", holdOf("E01", cert(1), t0), holdOf("E02", cert(1), t0), true},
		{"after a lapse: the passenger stepped back", lapse(holdOf("E01", cert(1), t0)), holdOf("E02", cert(1), t0+9*sec), false},
		{"after the window", passAfter(holdOf("E01", cert(1), t0), sec), holdOf("E02", cert(1), t0+sec+int64(window)), false},
		{"other direction", passAfter(holdOf("E01", cert(1), t0), sec), func() grant { g := holdOf("E02", cert(1), t0+2*sec); g.dir = verify.Exit; return g }(), false},
		{"other certificate", passAfter(holdOf("E01", cert(1), t0), sec), holdOf("E02", cert(2), t0+2*sec), false},
	} {
		s := newTestState("E01")
		now := max(c.here.at, c.peer.at) + sec
		var uses []DoubleUse
		_, _, uses = s.local(kindHold, c.here.cert, c.here.dir, c.here.at, c.here.until, uses)
		if c.here.passed != 0 {
			_, _, uses = s.local(kindPassed, c.here.cert, c.here.dir, c.here.passed, 0, uses)
		}
		if c.here.released != 0 {
			_, _, uses = s.local(kindRelease, c.here.cert, c.here.dir, c.here.released, 0, uses)
		}
		_, drop, uses := s.merge(c.peer, now, uses)
		if drop != dropNone {
			t.Fatalf("%s: %v", c.name, drop)
		}
		if got := len(uses) > 0; got != c.want {
			t.Errorf("%s: double use %v, want %v (%+v)", c.name, got, c.want, uses)
			continue
		}
		if c.want {
			u := uses[0]
			if len(uses) != 1 || u.Gate != "E02" || u.Here.UnixNano() != c.here.at || u.There.UnixNano() != c.peer.at || u.Cert != c.here.cert {
				t.Errorf("%s: %+v", c.name, uses)
			}
			// Reported once, however often the peer's grant is heard.
			g := c.peer
			g.released = g.until
			if _, _, again := s.merge(g, now, nil); len(again) != 0 {
				t.Errorf("%s: reported again: %+v", c.name, again)
			}
		}
	}
}

// TestDoubleUseOnBothGates: the two gates concerned each find the double
// use once they hold each other's grant; a third gate that hears of both
// reports nothing.
func TestDoubleUseOnBothGates(t *testing.T) {
	c := cert(7)
	a, b, third := newTestState("E01"), newTestState("E02"), newTestState("E03")
	var ua, ub []DoubleUse
	ma, _, ua := a.local(kindHold, c, verify.Entry, t0, t0+int64(hold), ua)
	mp, _, ua := a.local(kindPassed, c, verify.Entry, t0+sec, 0, ua)
	mb, _, ub := b.local(kindHold, c, verify.Entry, t0+sec/2, t0+sec/2+int64(hold), ub)
	now := t0 + 2*sec
	for _, m := range []message{mb} {
		_, _, ua = a.merge(fromMessage(&m), now, ua)
	}
	for _, m := range []message{ma, mp} {
		_, _, ub = b.merge(fromMessage(&m), now, ub)
	}
	var u3 []DoubleUse
	for _, m := range []message{ma, mp, mb} {
		_, _, u3 = third.merge(fromMessage(&m), now, u3)
	}
	if len(ua) != 1 || ua[0].Gate != "E02" || len(ub) != 1 || ub[0].Gate != "E01" {
		t.Fatalf("E01 found %+v, E02 found %+v; want one each, naming the other", ua, ub)
	}
	if len(u3) != 0 {
		t.Fatalf("a third gate reported %+v", u3)
	}
}

// TestOneCertificateAgainAndAgain: a passenger who scans and steps back a
// thousand times (each grant lapses), and a peer reporting a thousand
// grants of one certificate, keep at most maxPerCert grants of it, the
// newest, and still find a double use among them.
func TestOneCertificateAgainAndAgain(t *testing.T) {
	s := newTestState("E01")
	c := cert(9)
	for i := range int64(1000) {
		at := t0 + i*10*sec
		s.local(kindHold, c, verify.Entry, at, at+int64(hold), nil)
		s.local(kindRelease, c, verify.Entry, at+int64(hold), 0, nil)
		s.merge(grant{cert: c, dir: verify.Entry, gate: "E02", at: at + 9*sec, released: at + 9*sec + 1}, at+9*sec, nil)
	}
	if n := len(s.byCert[keyOf(c, verify.Entry)]); n != maxPerCert || s.n != maxPerCert {
		t.Fatalf("%d grants of one certificate kept (state %d), want %d", n, s.n, maxPerCert)
	}
	last := t0 + 999*10*sec
	if g := s.byCert[keyOf(c, verify.Entry)]; slices.IndexFunc(g, func(x grant) bool { return x.at == last && x.gate == "E01" }) < 0 {
		t.Fatal("the newest grant was dropped")
	}
	// A grant elsewhere while this gate's newest stood.
	now := last + 10*sec
	s.local(kindHold, c, verify.Entry, now, now+int64(hold), nil)
	if _, _, uses := s.merge(holdOf("E03", c, now+sec), now+sec, nil); len(uses) != 1 || uses[0].Gate != "E03" {
		t.Fatalf("double use among many grants: %+v", uses)
	}
	// A report older than every grant kept changes nothing.
	if changed, drop, _ := s.merge(holdOf("E03", c, now-20*60*sec), now, nil); changed || drop != dropNone {
		t.Fatalf("an old report: changed %v, %v", changed, drop)
	}
}
