package verify_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"gateagent/verify"
	"gateagent/verify/memstore"
)

var checkNames = []string{"format", "clock", "known cert", "tag", "not stale",
	"not from future", "not revoked", "valid yet", "not expired", "no passback"}

// explainAgrees runs Explain and VerifyAt on the same input and fails the
// test unless they decide alike (Stages aside) and return the same error;
// then it checks the explanation's shape.
func explainAgrees(t testing.TB, v *verify.Verifier, token []byte, now time.Time) (verify.Explanation, error) {
	t.Helper()
	want, werr := v.VerifyAt(token, now)
	x, err := v.Explain(token, now)
	if (err == nil) != (werr == nil) || err != nil && err.Error() != werr.Error() {
		t.Fatalf("token %q at %v: Explain error %v, VerifyAt error %v", token, now, err, werr)
	}
	got := x.Decision
	got.Stages, want.Stages = verify.Stages{}, verify.Stages{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("token %q at %v:\nExplain decides  %+v\nVerifyAt decides %+v", token, now, got, want)
	}
	checkShape(t, &x)
	return x, err
}

// checkShape holds an explanation to what Explain promises.
func checkShape(t testing.TB, x *verify.Explanation) {
	t.Helper()
	if len(x.Checks) != verify.NumChecks {
		t.Fatalf("%d checks, want %d", len(x.Checks), verify.NumChecks)
	}
	outcome := func(n int) verify.Outcome { return x.Checks[n-1].Outcome }
	for i, c := range x.Checks {
		if c.Number != i+1 || c.Name != checkNames[i] || c.Reason != verify.Reason(i+2) {
			t.Errorf("check %d is %d %q %v", i+1, c.Number, c.Name, c.Reason)
		}
		if c.Detail == "" {
			t.Errorf("check %d %s: %v without a detail", c.Number, c.Name, c.Outcome)
		}
	}
	// The first check that did not pass decides: FAIL gives its reason,
	// NOT RUN (the cache unreadable) Undecided.
	want, decisive := verify.OK, 0
	for _, c := range x.Checks {
		if c.Outcome == verify.Passed {
			continue
		}
		want = verify.Undecided
		if c.Outcome == verify.Failed {
			want, decisive = c.Reason, c.Number
		}
		break
	}
	if x.Decision.Reason != want {
		t.Errorf("decision %v, but the first check not passed gives %v", x.Decision.Reason, want)
	}
	if d := x.Decisive(); decisive != 0 && d != decisive {
		t.Errorf("Decisive() = %d, want %d", d, decisive)
	}
	notRunFrom := func(from int, because string) {
		for n := from; n <= verify.NumChecks; n++ {
			if outcome(n) != verify.NotRun {
				t.Errorf("check %d is %v after %s", n, outcome(n), because)
			}
		}
	}
	if (x.Token == nil) != (outcome(1) == verify.Failed) {
		t.Errorf("token %v with check 1 %v", x.Token, outcome(1))
	}
	if outcome(1) != verify.Passed {
		notRunFrom(2, "a malformed text")
	}
	if outcome(3) != verify.Passed {
		notRunFrom(4, "no cache record")
	}
	if outcome(4) != verify.Passed {
		notRunFrom(5, "a wrong tag")
	}
	if x.Cert.Found != (outcome(3) == verify.Passed) {
		t.Errorf("cert found %v with check 3 %v", x.Cert.Found, outcome(3))
	}
	if x.NowStep != verify.StepOf(x.Decision.At) {
		t.Errorf("now step %d at %v", x.NowStep, x.Decision.At)
	}
}

// wantOutcomes compares the outcomes with a string of one letter per
// check: P pass, F fail, - not run.
func wantOutcomes(t testing.TB, x *verify.Explanation, want string) {
	t.Helper()
	letter := map[verify.Outcome]byte{verify.Passed: 'P', verify.Failed: 'F', verify.NotRun: '-'}
	got := make([]byte, len(x.Checks))
	for i, c := range x.Checks {
		got[i] = letter[c.Outcome]
	}
	if string(got) != want {
		var b strings.Builder
		for _, c := range x.Checks {
			fmt.Fprintf(&b, "\n  %2d %-16s %-7v %s", c.Number, c.Name, c.Outcome, c.Detail)
		}
		t.Fatalf("outcomes %s, want %s:%s", got, want, b.String())
	}
}

// TestExplainSpecVectors: on every vector of tr1-token.md, accepted or
// refused, Explain decides as VerifyAt does.
func TestExplainSpecVectors(t *testing.T) {
	key, id := mustKey(t, specKey), mustID(t, specCertID)
	for _, vec := range specVectors {
		now := verify.StepStart(vec.step).Add(30 * time.Second)
		v, err := verify.New(verify.Config{
			Store:        memstore.New(verify.Cert{ID: id, Key: key, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)}),
			Clock:        verify.ClockFunc(func() time.Time { return now }),
			Policy:       verify.DefaultPolicy(verify.Entry),
			TrustedAfter: time.Unix(0, 0), // step 0 lies in 1970
		})
		if err != nil {
			t.Fatal(err)
		}
		x, _ := explainAgrees(t, v, []byte(vec.token), now)
		if x.Decision.Reason != verify.OK || x.Token == nil || x.Token.Step != vec.step {
			t.Errorf("step %d: %v, token %+v", vec.step, x.Decision.Reason, x.Token)
		}
		wantOutcomes(t, &x, "PPPPPPPPPP")
	}

	key2, id2 := mustKey(t, spaceKey), mustID(t, spaceCert)
	v := newTestVerifier(t, memstore.New(verify.Cert{ID: id2, Key: key2, NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)}), verify.DefaultPolicy(verify.Entry))
	if x, _ := explainAgrees(t, v, []byte(spaceToken), vecNow); x.Decision.Reason != verify.OK {
		t.Errorf("space vector: %v", x.Decision.Reason)
	}

	v = newTestVerifier(t, memstore.New(verify.Cert{ID: id, Key: key, NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)}), verify.DefaultPolicy(verify.Entry))
	for name, text := range specMalformed() {
		t.Run(name, func(t *testing.T) {
			x, _ := explainAgrees(t, v, []byte(text), vecNow)
			if x.Decision.Reason != verify.Malformed || x.Token != nil {
				t.Fatalf("%v, token %+v", x.Decision.Reason, x.Token)
			}
			wantOutcomes(t, &x, "F---------")
			if d := x.Checks[1].Detail; d != "not checked: the text is not a token" {
				t.Errorf("check 2 detail %q", d)
			}
		})
	}

	for _, other := range []string{spaceKey, strings.Repeat("00", 32)} {
		v := newTestVerifier(t, memstore.New(verify.Cert{ID: id, Key: mustKey(t, other), NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)}), verify.DefaultPolicy(verify.Entry))
		x, _ := explainAgrees(t, v, []byte(specVectors[0].token), vecNow)
		if x.Decision.Reason != verify.BadTag {
			t.Errorf("key %s…: %v, want BAD_TAG", other[:8], x.Decision.Reason)
		}
		wantOutcomes(t, &x, "PPPF------")
	}
}

// TestExplainEveryReason produces each reason and checks that the checks
// before the decisive one passed and the decisive one failed.
func TestExplainEveryReason(t *testing.T) {
	eachReason(t, func(t *testing.T, tc reasonCase, v *verify.Verifier, tok []byte, now time.Time) verify.Reason {
		x, err := explainAgrees(t, v, tok, now)
		if err != nil {
			t.Fatal(err)
		}
		if x.Decision.Reason != tc.want {
			t.Fatalf("reason %v, want %v", x.Decision.Reason, tc.want)
		}
		wantOutcomes(t, &x, tc.outcomes)
		if n := x.Decisive(); tc.want == verify.OK && n != 0 || tc.want != verify.OK && x.Checks[n-1].Reason != tc.want {
			t.Errorf("Decisive() = %d for %v", n, tc.want)
		}
		return x.Decision.Reason
	})
}

// TestExplainBoundaries: on each limit and a second either side of it,
// Explain decides as VerifyAt does.
func TestExplainBoundaries(t *testing.T) {
	for _, d := range []time.Duration{-time.Second, -time.Nanosecond, 0, time.Nanosecond, time.Second} {
		f := newFixture(t)
		v := newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry))
		now := trustedAfter.Add(d)
		explainAgrees(t, v, f.token(verify.StepOf(now)), now) // the build date

		f.cert.NotBefore = vecNow.Add(d)
		f.store.Put(f.cert)
		explainAgrees(t, v, f.token(nowStep), vecNow) // not_before

		f = newFixture(t)
		f.cert.NotAfter = vecNow.Add(d)
		f.store.Put(f.cert)
		explainAgrees(t, newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry)), f.token(nowStep), vecNow) // not_after
		p := verify.DefaultPolicy(verify.Exit)
		p.ExitGrace = time.Hour
		f.cert.NotAfter = vecNow.Add(-time.Hour + d)
		f.store.Put(f.cert)
		explainAgrees(t, newTestVerifier(t, f.store, p), f.token(nowStep), vecNow) // not_after + exit grace

		f = newFixture(t)
		f.store.RecordPass(f.cert.ID, verify.Entry, vecNow.Add(-30*time.Minute+d))
		explainAgrees(t, newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry)), f.token(nowStep), vecNow) // anti-passback
	}
	f := newFixture(t)
	for _, window := range []uint32{0, 1, 3} {
		p := verify.DefaultPolicy(verify.Entry)
		p.MaxPastSteps, p.MaxFutureSteps = window, window
		v := newTestVerifier(t, f.store, p)
		for off := -int64(window) - 1; off <= int64(window)+1; off++ {
			explainAgrees(t, v, f.token(uint32(int64(nowStep)+off)), vecNow)
		}
	}
}

// TestExplainDetails: the details say what was found in a technician's
// words.
func TestExplainDetails(t *testing.T) {
	f := newFixture(t)
	f.store.RecordPass(f.cert.ID, verify.Entry, vecNow.Add(-45*time.Minute))
	v := newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry))
	x, _ := explainAgrees(t, v, f.token(nowStep-3), vecNow)
	want := map[int]string{
		1:  "a TR1 token: cert 00112233445566778899aabbccddeeff, step 27370692 (the minute from 2022-01-15T10:12:00Z)",
		2:  "gate clock 2022-01-15T10:15:30Z, not before the agent's build date 2022-01-01T00:00:00Z",
		5:  "step 27370692 is 3 minutes behind the gate (window: 1 behind)",
		6:  "step 27370692 is 3 minutes behind the gate (window: 1 ahead)",
		8:  "not_before 2022-01-15T08:15:30Z, 2h ago",
		9:  "not_after 2022-01-16T08:15:30Z, 22h left",
		10: "last passed this gate (entry) 45m ago, outside the 30m anti-passback window",
	}
	for n, w := range want {
		if got := x.Checks[n-1].Detail; got != w {
			t.Errorf("check %d detail\n got %q\nwant %q", n, got, w)
		}
	}

	// Exit grace shows in check 9.
	f = newFixture(t)
	f.cert.NotAfter = vecNow.Add(-30 * time.Minute)
	f.store.Put(f.cert)
	p := verify.DefaultPolicy(verify.Exit)
	p.ExitGrace = time.Hour
	x, _ = explainAgrees(t, newTestVerifier(t, f.store, p), f.token(nowStep), vecNow)
	if got, w := x.Checks[8].Detail, "not_after 2022-01-15T09:45:30Z + 1h exit grace, 30m left"; got != w {
		t.Errorf("check 9 detail %q, want %q", got, w)
	}
}

// TestExplainClockUntrusted: the checks that do not depend on the time are
// still run; the decision is the clock's, even where the cache cannot be
// read (VerifyAt does not read it then).
func TestExplainClockUntrusted(t *testing.T) {
	f := newFixture(t)
	f.store.Revoke(f.cert.ID)
	early := trustedAfter.Add(-time.Second)
	x, err := explainAgrees(t, newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry)), f.token(verify.StepOf(early)), early)
	if err != nil || x.Decision.Reason != verify.ClockUntrusted {
		t.Fatalf("%v, %v", x.Decision.Reason, err)
	}
	wantOutcomes(t, &x, "PFPP--F---")
	if d := x.Checks[4].Detail; d != "not checked: the gate's clock is not trusted" {
		t.Errorf("check 5 detail %q", d)
	}

	x, err = explainAgrees(t, newTestVerifier(t, brokenStore{}, verify.DefaultPolicy(verify.Entry)), f.token(0), time.Unix(0, 0))
	if err != nil || x.Decision.Reason != verify.ClockUntrusted {
		t.Fatalf("broken store: %v, %v", x.Decision.Reason, err)
	}
	wantOutcomes(t, &x, "PF--------")
	if d := x.Checks[2].Detail; !strings.Contains(d, "key cache unreadable") || !strings.Contains(d, "input/output error") {
		t.Errorf("check 3 detail %q does not name the cache error", d)
	}
}

// TestExplainStoreError: Explain returns VerifyAt's error, with the checks
// up to the lookup.
func TestExplainStoreError(t *testing.T) {
	f := newFixture(t)
	x, err := explainAgrees(t, newTestVerifier(t, brokenStore{}, verify.DefaultPolicy(verify.Entry)), f.token(nowStep), vecNow)
	if !errors.Is(err, verify.ErrStore) {
		t.Fatalf("error %v, want ErrStore", err)
	}
	if x.Decision.Reason != verify.Undecided || x.Decision.Granted() || x.Token == nil || x.Decisive() != 0 {
		t.Fatalf("decision %+v, token %v", x.Decision, x.Token)
	}
	wantOutcomes(t, &x, "PP--------")
}

// TestExplainMultiFault: a code stale, revoked and expired shows all three
// failures; the first decides.
func TestExplainMultiFault(t *testing.T) {
	f := newFixture(t)
	f.cert.NotAfter = vecNow.Add(-time.Hour)
	f.cert.Revoked = true
	f.store.Put(f.cert)
	x, _ := explainAgrees(t, newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry)), f.token(nowStep-5), vecNow)
	wantOutcomes(t, &x, "PPPPFPFPFP")
	if x.Decision.Reason != verify.CodeStale || x.Decisive() != 5 || x.Decision.StepOffset != -5 {
		t.Fatalf("decision %+v, decisive %d", x.Decision, x.Decisive())
	}
	if !x.Cert.Found || !x.Cert.Revoked || !x.Cert.NotAfter.Equal(f.cert.NotAfter) {
		t.Errorf("cert %+v", x.Cert)
	}

	// Revoked too, but a wrong tag: nothing past the tag is the holder's.
	otherKey := mustKey(t, spaceKey)
	x, _ = explainAgrees(t, newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry)), []byte(verify.NewToken(&otherKey, f.cert.ID, nowStep).String()), vecNow)
	wantOutcomes(t, &x, "PPPF------")
	if d := x.Checks[6].Detail; d != "not checked: the tag is not authentic, so the code's step and cert are not the holder's" {
		t.Errorf("check 7 detail %q", d)
	}
}

// TestExplainRandom: on random certificates, policies, tokens and times,
// Explain decides as VerifyAt does.
func TestExplainRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	otherKey := mustKey(t, spaceKey)
	seen := map[verify.Reason]int{}
	for range 3000 {
		f := newFixture(t)
		f.cert.NotBefore = vecNow.Add(time.Duration(r.IntN(241)-120) * time.Minute)
		f.cert.NotAfter = vecNow.Add(time.Duration(r.IntN(241)-120) * time.Minute)
		f.cert.Revoked = r.IntN(5) == 0
		p := verify.DefaultPolicy(verify.Direction(1 + r.IntN(2)))
		p.MaxPastSteps, p.MaxFutureSteps = uint32(r.IntN(3)), uint32(r.IntN(3))
		p.PassbackWindow = time.Duration(r.IntN(3)) * 15 * time.Minute
		if p.Direction == verify.Exit {
			p.ExitGrace = time.Duration(r.IntN(3)) * 30 * time.Minute
		}
		now := vecNow.Add(time.Duration(r.IntN(301)-150) * time.Second)
		switch r.IntN(20) {
		case 0:
			now = trustedAfter.Add(-time.Duration(r.IntN(1000)) * time.Hour)
		case 1:
			now = trustedAfter.Add(time.Duration(r.IntN(3)-1) * time.Nanosecond)
		}
		// Put every time limit on or next to now, now and then.
		near := func() time.Duration { return time.Duration(r.IntN(3)-1) * time.Second }
		if r.IntN(3) == 0 {
			f.cert.NotBefore = now.Add(near())
		}
		if r.IntN(3) == 0 {
			f.cert.NotAfter = now.Add(-p.ExitGrace + near())
		}
		f.store.Put(f.cert)
		switch r.IntN(3) {
		case 0:
			f.store.RecordPass(f.cert.ID, p.Direction, now.Add(time.Duration(r.IntN(121)-90)*time.Minute))
		case 1:
			f.store.RecordPass(f.cert.ID, p.Direction, now.Add(-p.PassbackWindow+near()))
		}
		// Now and then another gate of the station has seen it too.
		switch r.IntN(4) {
		case 0:
			f.store.Sight(f.cert.ID, p.Direction, "E02", now.Add(-p.PassbackWindow+near()), false)
		case 1:
			f.store.Sight(f.cert.ID, p.Direction, "E03", now.Add(-time.Duration(r.IntN(10))*time.Second), true)
		}
		key, id, step := f.cert.Key, f.cert.ID, uint32(int64(verify.StepOf(now))+int64(r.IntN(7)-3))
		switch r.IntN(20) {
		case 0:
			key = otherKey
		case 1:
			id[r.IntN(len(id))] ^= 1 << r.IntN(8)
		}
		text := []byte(verify.NewToken(&key, id, step).String())
		if r.IntN(20) == 0 {
			text[r.IntN(len(text))] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:#a"[r.IntN(47)]
		}
		x, _ := explainAgrees(t, newTestVerifier(t, f.store, p), text, now)
		seen[x.Decision.Reason]++
	}
	for _, reason := range verify.Reasons() {
		if reason != verify.Undecided && seen[reason] == 0 {
			t.Errorf("the random inputs never produced %v: %v", reason, seen)
		}
	}
}

// FuzzExplain: for any text and any time, against the spec's certificate
// at an entry or an exit gate, Explain decides as VerifyAt does and never
// panics.
func FuzzExplain(f *testing.F) {
	for i, s := range seedTokens() {
		f.Add([]byte(s), int64(30*(i%5-2)), i%2 == 0)
	}
	f.Add([]byte(specVectors[0].token), int64(-3600), false)
	f.Add([]byte(specVectors[0].token), int64(2*3600), true)
	f.Add([]byte(specVectors[0].token), -vecNow.Unix(), false)
	key, id := mustKey(f, specKey), mustID(f, specCertID)
	store := memstore.New(verify.Cert{ID: id, Key: key, NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)})
	store.RecordPass(id, verify.Entry, vecNow.Add(-10*time.Minute))
	entry := newTestVerifier(f, store, verify.DefaultPolicy(verify.Entry))
	p := verify.DefaultPolicy(verify.Exit)
	p.ExitGrace = 30 * time.Minute
	exit := newTestVerifier(f, store, p)
	f.Fuzz(func(t *testing.T, text []byte, seconds int64, atExit bool) {
		v := entry
		if atExit {
			v = exit
		}
		// Seconds from vecNow, kept within ±2^40 s (35,000 years).
		now := vecNow.Add(time.Duration(seconds%(1<<40)) * time.Second)
		if _, err := explainAgrees(t, v, text, now); err != nil {
			t.Fatalf("memstore cannot fail, got %v", err)
		}
	})
}

// TestExplainKeyNeverPrints: an explanation carries no key material, in
// any format.
func TestExplainKeyNeverPrints(t *testing.T) {
	f := newFixture(t)
	v := newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry))
	otherKey := mustKey(t, spaceKey)
	for _, text := range [][]byte{f.token(nowStep), f.token(nowStep - 5), []byte(verify.NewToken(&otherKey, f.cert.ID, nowStep).String())} {
		x, _ := explainAgrees(t, v, text, vecNow)
		for _, format := range []string{"%v", "%+v", "%#v"} {
			s := fmt.Sprintf(format, x)
			if strings.Contains(s, specKey) || strings.Contains(s, "1 2 3 4 5") || strings.Contains(s, "0x1, 0x2, 0x3") {
				t.Errorf("Sprintf(%q) printed key material: %s", format, s)
			}
		}
	}
}
