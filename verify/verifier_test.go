package verify_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gateagent/verify"
	"gateagent/verify/memstore"
)

// vecNow lies inside the step of the spec's first vector.
var (
	vecNow       = time.Date(2022, 1, 15, 10, 15, 30, 0, time.UTC)
	trustedAfter = time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC)
)

func newTestVerifier(t testing.TB, s verify.Store, p verify.Policy) *verify.Verifier {
	t.Helper()
	v, err := verify.New(verify.Config{
		Store:        s,
		Clock:        verify.ClockFunc(func() time.Time { return vecNow }),
		Policy:       p,
		TrustedAfter: trustedAfter,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// fixture is one certificate valid for 24 hours around vecNow.
type fixture struct {
	cert  verify.Cert
	store *memstore.Store
}

func newFixture(t testing.TB) *fixture {
	c := verify.Cert{
		ID:        mustID(t, specCertID),
		Key:       mustKey(t, specKey),
		NotBefore: vecNow.Add(-2 * time.Hour),
		NotAfter:  vecNow.Add(22 * time.Hour),
	}
	return &fixture{cert: c, store: memstore.New(c)}
}

func (f *fixture) token(step uint32) []byte {
	return []byte(verify.NewToken(&f.cert.Key, f.cert.ID, step).String())
}

var nowStep = verify.StepOf(vecNow)

// reasonCase is a code and a moment that produce one decision: the
// reason, and the checks of Explain that pass (P), fail (F) or are not
// run (-), in order.
type reasonCase struct {
	name     string
	setup    func(f *fixture, p *verify.Policy) (token []byte, now time.Time)
	want     verify.Reason
	outcomes string
}

// reasonCases produce each of the spec's reasons, and OK, for VerifyAt
// and for Explain.
func reasonCases(t *testing.T) []reasonCase {
	otherKey := mustKey(t, spaceKey)
	return []reasonCase{
		{"valid code", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return f.token(nowStep), vecNow
		}, verify.OK, "PPPPPPPPPP"},
		{"garbage", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return []byte("https://example.com/not-a-ticket"), vecNow
		}, verify.Malformed, "F---------"},
		{"board booted in 1970", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return f.token(nowStep), time.Unix(30, 0)
		}, verify.ClockUntrusted, "PFPP--P---"},
		{"clock never set", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return f.token(nowStep), time.Time{}
		}, verify.ClockUntrusted, "PFPP--P---"},
		{"clock a second before the build date", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return f.token(verify.StepOf(trustedAfter)), trustedAfter.Add(-time.Second)
		}, verify.ClockUntrusted, "PFPP--P---"},
		{"cert not in cache", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			stranger := f.cert.ID
			stranger[0] ^= 1
			return []byte(verify.NewToken(&f.cert.Key, stranger, nowStep).String()), vecNow
		}, verify.UnknownCert, "PPF-------"},
		{"signed with another key", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return []byte(verify.NewToken(&otherKey, f.cert.ID, nowStep).String()), vecNow
		}, verify.BadTag, "PPPF------"},
		{"tag with one bit flipped", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			tok := verify.NewToken(&f.cert.Key, f.cert.ID, nowStep)
			tok.Tag[15] ^= 0x01
			return []byte(tok.String()), vecNow
		}, verify.BadTag, "PPPF------"},
		{"step changed, tag kept", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			tok := verify.NewToken(&f.cert.Key, f.cert.ID, nowStep)
			tok.Step++
			return []byte(tok.String()), vecNow
		}, verify.BadTag, "PPPF------"},
		{"code two minutes old", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return f.token(nowStep - 2), vecNow
		}, verify.CodeStale, "PPPPFPPPPP"},
		{"code two minutes ahead", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			return f.token(nowStep + 2), vecNow
		}, verify.CodeFromFuture, "PPPPPFPPPP"},
		{"revoked", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			f.store.Revoke(f.cert.ID)
			return f.token(nowStep), vecNow
		}, verify.Revoked, "PPPPPPFPPP"},
		{"approved later", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			f.cert.NotBefore = vecNow.Add(time.Second)
			f.store.Put(f.cert)
			return f.token(nowStep), vecNow
		}, verify.NotYetValid, "PPPPPPPFPP"},
		{"expired a second ago", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			f.cert.NotAfter = vecNow.Add(-time.Second)
			f.store.Put(f.cert)
			return f.token(nowStep), vecNow
		}, verify.Expired, "PPPPPPPPFP"},
		{"exit gate, expired past the grace", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			p.Direction, p.ExitGrace = verify.Exit, time.Hour
			f.cert.NotAfter = vecNow.Add(-61 * time.Minute)
			f.store.Put(f.cert)
			return f.token(nowStep), vecNow
		}, verify.Expired, "PPPPPPPPFP"},
		{"exit gate, expired within the grace", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			p.Direction, p.ExitGrace = verify.Exit, time.Hour
			f.cert.NotAfter = vecNow.Add(-59 * time.Minute)
			f.store.Put(f.cert)
			return f.token(nowStep), vecNow
		}, verify.OK, "PPPPPPPPPP"},
		{"passed five minutes ago", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			f.store.RecordPass(f.cert.ID, verify.Entry, vecNow.Add(-5*time.Minute))
			return f.token(nowStep), vecNow
		}, verify.Passback, "PPPPPPPPPF"},
		{"passage recorded in the future", func(f *fixture, p *verify.Policy) ([]byte, time.Time) {
			f.store.RecordPass(f.cert.ID, verify.Entry, vecNow.Add(time.Hour))
			return f.token(nowStep), vecNow
		}, verify.Passback, "PPPPPPPPPF"},
	}
}

// TestEveryReason produces each of the spec's reasons, and OK.
func TestEveryReason(t *testing.T) {
	eachReason(t, func(t *testing.T, tc reasonCase, v *verify.Verifier, tok []byte, now time.Time) verify.Reason {
		d, err := v.VerifyAt(tok, now)
		if err != nil {
			t.Fatal(err)
		}
		if d.Reason != tc.want {
			t.Fatalf("reason %v, want %v", d.Reason, tc.want)
		}
		if d.Granted() != (tc.want == verify.OK) {
			t.Errorf("Granted() = %v for %v", d.Granted(), d.Reason)
		}
		return d.Reason
	})
}

// eachReason runs check on every reason case, in a subtest of its own on
// a new fixture with the case set up, and fails the test if the reasons
// check returns leave one of the spec's out.
func eachReason(t *testing.T, check func(t *testing.T, tc reasonCase, v *verify.Verifier, tok []byte, now time.Time) verify.Reason) {
	seen := map[verify.Reason]bool{}
	for _, tc := range reasonCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := verify.DefaultPolicy(verify.Entry)
			tok, now := tc.setup(f, &p)
			seen[check(t, tc, newTestVerifier(t, f.store, p), tok, now)] = true
		})
	}
	for _, r := range verify.Reasons() {
		if r != verify.Undecided && !seen[r] {
			t.Errorf("no case produces %v", r)
		}
	}
}

// TestBoundaries checks each limit on both sides.
func TestBoundaries(t *testing.T) {
	tests := []struct {
		name   string
		policy func(*verify.Policy)
		cert   func(*verify.Cert)
		pass   func(*memstore.Store, verify.CertID)
		step   uint32
		want   verify.Reason
		offset int64
	}{
		{name: "one step behind", step: nowStep - 1, want: verify.OK, offset: -1},
		{name: "one step ahead", step: nowStep + 1, want: verify.OK, offset: 1},
		{name: "three behind with max_past 3", step: nowStep - 3, want: verify.OK, offset: -3,
			policy: func(p *verify.Policy) { p.MaxPastSteps = 3 }},
		{name: "four behind with max_past 3", step: nowStep - 4, want: verify.CodeStale, offset: -4,
			policy: func(p *verify.Policy) { p.MaxPastSteps = 3 }},
		{name: "one ahead with max_future 0", step: nowStep + 1, want: verify.CodeFromFuture, offset: 1,
			policy: func(p *verify.Policy) { p.MaxFutureSteps = 0 }},
		{name: "far future step 2^32-1", step: 1<<32 - 1, want: verify.CodeFromFuture, offset: 1<<32 - 1 - int64(nowStep)},
		{name: "step 0", step: 0, want: verify.CodeStale, offset: -int64(nowStep)},
		{name: "not_before is now", step: nowStep, want: verify.OK,
			cert: func(c *verify.Cert) { c.NotBefore = vecNow }},
		{name: "not_after is now", step: nowStep, want: verify.OK,
			cert: func(c *verify.Cert) { c.NotAfter = vecNow }},
		{name: "expired, exit gate within grace", step: nowStep, want: verify.OK,
			policy: func(p *verify.Policy) { p.Direction, p.ExitGrace = verify.Exit, time.Hour },
			cert:   func(c *verify.Cert) { c.NotAfter = vecNow.Add(-59 * time.Minute) }},
		{name: "expired, exit gate past grace", step: nowStep, want: verify.Expired,
			policy: func(p *verify.Policy) { p.Direction, p.ExitGrace = verify.Exit, time.Hour },
			cert:   func(c *verify.Cert) { c.NotAfter = vecNow.Add(-61 * time.Minute) }},
		{name: "passed exactly one window ago", step: nowStep, want: verify.OK,
			pass: func(s *memstore.Store, id verify.CertID) { s.RecordPass(id, verify.Entry, vecNow.Add(-30*time.Minute)) }},
		{name: "passed the other way", step: nowStep, want: verify.OK,
			pass: func(s *memstore.Store, id verify.CertID) { s.RecordPass(id, verify.Exit, vecNow.Add(-time.Minute)) }},
		{name: "passback off", step: nowStep, want: verify.OK,
			policy: func(p *verify.Policy) { p.PassbackWindow = 0 },
			pass:   func(s *memstore.Store, id verify.CertID) { s.RecordPass(id, verify.Entry, vecNow.Add(-time.Minute)) }},
		{name: "passage recorded in the future", step: nowStep, want: verify.Passback,
			pass: func(s *memstore.Store, id verify.CertID) { s.RecordPass(id, verify.Entry, vecNow.Add(time.Hour)) }},
		{name: "passed another gate a minute ago", step: nowStep, want: verify.Passback,
			pass: func(s *memstore.Store, id verify.CertID) {
				s.Sight(id, verify.Entry, "E01", vecNow.Add(-time.Minute), false)
			}},
		{name: "passed another gate one window ago", step: nowStep, want: verify.OK,
			pass: func(s *memstore.Store, id verify.CertID) {
				s.Sight(id, verify.Entry, "E01", vecNow.Add(-30*time.Minute), false)
			}},
		{name: "held at another gate", step: nowStep, want: verify.Passback,
			pass: func(s *memstore.Store, id verify.CertID) {
				s.Sight(id, verify.Entry, "E01", vecNow.Add(-time.Second), true)
			}},
		{name: "held at another gate, passback off", step: nowStep, want: verify.OK,
			policy: func(p *verify.Policy) { p.PassbackWindow = 0 },
			pass: func(s *memstore.Store, id verify.CertID) {
				s.Sight(id, verify.Entry, "E01", vecNow.Add(-time.Second), true)
			}},
		{name: "passed another gate the other way", step: nowStep, want: verify.OK,
			pass: func(s *memstore.Store, id verify.CertID) {
				s.Sight(id, verify.Exit, "X01", vecNow.Add(-time.Minute), false)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := verify.DefaultPolicy(verify.Entry)
			if tc.policy != nil {
				tc.policy(&p)
			}
			if tc.cert != nil {
				tc.cert(&f.cert)
				f.store.Put(f.cert)
			}
			if tc.pass != nil {
				tc.pass(f.store, f.cert.ID)
			}
			d, err := newTestVerifier(t, f.store, p).VerifyAt(f.token(tc.step), vecNow)
			if err != nil || d.Reason != tc.want {
				t.Fatalf("%v, %v; want %v", d.Reason, err, tc.want)
			}
			if d.StepOffset != tc.offset {
				t.Errorf("step offset %d, want %d", d.StepOffset, tc.offset)
			}
		})
	}
}

// TestCheckOrder: where several checks fail, the first in the spec's order
// decides.
func TestCheckOrder(t *testing.T) {
	otherKey := mustKey(t, spaceKey)
	tests := []struct {
		name string
		prep func(f *fixture) (token []byte, now time.Time)
		want verify.Reason
	}{
		{"unknown cert and untrusted clock", func(f *fixture) ([]byte, time.Time) {
			f.store = memstore.New()
			return f.token(0), time.Unix(0, 0)
		}, verify.ClockUntrusted},
		{"revoked and bad tag", func(f *fixture) ([]byte, time.Time) {
			f.store.Revoke(f.cert.ID)
			return []byte(verify.NewToken(&otherKey, f.cert.ID, nowStep).String()), vecNow
		}, verify.BadTag},
		{"revoked and stale", func(f *fixture) ([]byte, time.Time) {
			f.store.Revoke(f.cert.ID)
			return f.token(nowStep - 5), vecNow
		}, verify.CodeStale},
		{"expired and revoked", func(f *fixture) ([]byte, time.Time) {
			f.cert.NotAfter = vecNow.Add(-time.Hour)
			f.store.Put(f.cert)
			f.store.Revoke(f.cert.ID)
			return f.token(nowStep), vecNow
		}, verify.Revoked},
		{"expired and passed back", func(f *fixture) ([]byte, time.Time) {
			f.cert.NotAfter = vecNow.Add(-time.Hour)
			f.store.Put(f.cert)
			f.store.RecordPass(f.cert.ID, verify.Entry, vecNow.Add(-time.Minute))
			return f.token(nowStep), vecNow
		}, verify.Expired},
		{"not yet valid and expired", func(f *fixture) ([]byte, time.Time) {
			f.cert.NotBefore, f.cert.NotAfter = vecNow.Add(time.Hour), vecNow.Add(-time.Hour)
			f.store.Put(f.cert)
			return f.token(nowStep), vecNow
		}, verify.NotYetValid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tok, now := tc.prep(f)
			d, err := newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry)).VerifyAt(tok, now)
			if err != nil || d.Reason != tc.want {
				t.Fatalf("%v, %v; want %v", d.Reason, err, tc.want)
			}
		})
	}
}

type brokenStore struct{}

func (brokenStore) Lookup(verify.CertID, verify.Direction) (verify.Record, bool, error) {
	return verify.Record{}, false, errors.New("input/output error")
}

func TestStoreErrorIsUndecided(t *testing.T) {
	f := newFixture(t)
	d, err := newTestVerifier(t, brokenStore{}, verify.DefaultPolicy(verify.Entry)).VerifyAt(f.token(nowStep), vecNow)
	if !errors.Is(err, verify.ErrStore) {
		t.Fatalf("error %v, want ErrStore", err)
	}
	if d.Reason != verify.Undecided || d.Granted() {
		t.Fatalf("decision %v on a store error; want UNDECIDED and no grant", d.Reason)
	}
}

func TestDecisionFields(t *testing.T) {
	f := newFixture(t)
	v := newTestVerifier(t, f.store, verify.DefaultPolicy(verify.Entry))
	d, err := v.Verify(f.token(nowStep - 1))
	if err != nil {
		t.Fatal(err)
	}
	if d.CertID != f.cert.ID || d.Step != nowStep-1 || d.StepOffset != -1 || !d.At.Equal(vecNow) || !d.Authentic() {
		t.Errorf("decision %+v", d)
	}
}

func TestPolicyValidate(t *testing.T) {
	bad := map[string]verify.Policy{
		"zero policy":           {},
		"no direction":          {MaxPastSteps: 1, MaxFutureSteps: 1},
		"past window too large": {MaxPastSteps: 11, Direction: verify.Entry},
		"future too large":      {MaxFutureSteps: 1000, Direction: verify.Entry},
		"negative grace":        {ExitGrace: -time.Second, Direction: verify.Exit},
		"grace at entry":        {ExitGrace: time.Minute, Direction: verify.Entry},
		"grace too long":        {ExitGrace: 7 * time.Hour, Direction: verify.Exit},
		"negative passback":     {PassbackWindow: -time.Second, Direction: verify.Entry},
		"passback of a week":    {PassbackWindow: 7 * 24 * time.Hour, Direction: verify.Entry},
	}
	for name, p := range bad {
		if err := p.Validate(); !errors.Is(err, verify.ErrConfig) {
			t.Errorf("%s: Validate() = %v, want ErrConfig", name, err)
		}
		if _, err := verify.New(verify.Config{Store: memstore.New(), Clock: verify.ClockFunc(time.Now), Policy: p, TrustedAfter: trustedAfter}); err == nil {
			t.Errorf("%s: New accepted the policy", name)
		}
	}
	for _, d := range []verify.Direction{verify.Entry, verify.Exit} {
		if err := verify.DefaultPolicy(d).Validate(); err != nil {
			t.Errorf("DefaultPolicy(%v): %v", d, err)
		}
	}
	if _, err := verify.New(verify.Config{Store: memstore.New(), Clock: verify.ClockFunc(time.Now), Policy: verify.DefaultPolicy(verify.Entry)}); !errors.Is(err, verify.ErrConfig) {
		t.Errorf("New without TrustedAfter: %v", err)
	}
}

func TestReasonText(t *testing.T) {
	want := []string{"UNDECIDED", "OK", "MALFORMED", "CLOCK_UNTRUSTED", "UNKNOWN_CERT", "BAD_TAG",
		"CODE_STALE", "CODE_FROM_FUTURE", "REVOKED", "NOT_YET_VALID", "EXPIRED", "PASSBACK"}
	rs := verify.Reasons()
	if len(rs) != len(want) {
		t.Fatalf("%d reasons, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if r.String() != want[i] {
			t.Errorf("reason %d is %q, want %q", i, r, want[i])
		}
		b, err := r.MarshalText()
		var back verify.Reason
		if err != nil || back.UnmarshalText(b) != nil || back != r {
			t.Errorf("%v does not round-trip through text: %q, %v", r, b, err)
		}
	}
	if verify.Reason(200).Valid() {
		t.Error("Reason(200) is valid")
	}
	if verify.OK.Family() != verify.FamilyGranted || verify.CodeStale.Family() != verify.FamilyRefresh ||
		verify.Expired.Family() != verify.FamilyManual || verify.Revoked.Family() != verify.FamilyInvalid ||
		verify.Undecided.Family() != verify.FamilyFault {
		t.Error("reason families are off")
	}
}

func TestKeyNeverPrints(t *testing.T) {
	k := mustKey(t, specKey)
	c := verify.Cert{Key: k}
	for _, format := range []string{"%v", "%+v", "%#v", "%s", "%x"} {
		for _, arg := range []any{k, c, &c} {
			if s := fmt.Sprintf(format, arg); strings.Contains(s, "0102030405") || strings.Contains(s, "1 2 3 4 5") {
				t.Errorf("Sprintf(%q) printed key material: %s", format, s)
			}
		}
	}
}

// TestPassbackSaysWhere: a refusal for a passage or a hold at another gate
// of the station names that gate; one for this gate's own passage names
// none. A hold at another gate that is older than this gate's own passage
// still decides: it stands until its passenger passes.
func TestPassbackSaysWhere(t *testing.T) {
	for _, c := range []struct {
		name   string
		prep   func(*memstore.Store, verify.CertID)
		seenAt string
		held   bool
	}{
		{"own passage", func(s *memstore.Store, id verify.CertID) { s.RecordPass(id, verify.Entry, vecNow.Add(-time.Minute)) }, "", false},
		{"passage at E01", func(s *memstore.Store, id verify.CertID) {
			s.Sight(id, verify.Entry, "E01", vecNow.Add(-time.Second), false)
		}, "E01", false},
		{"older passage at E01 than here", func(s *memstore.Store, id verify.CertID) {
			s.RecordPass(id, verify.Entry, vecNow.Add(-time.Minute))
			s.Sight(id, verify.Entry, "E01", vecNow.Add(-2*time.Minute), false)
		}, "", false},
		{"held at E02", func(s *memstore.Store, id verify.CertID) {
			s.RecordPass(id, verify.Entry, vecNow.Add(-time.Minute))
			s.Sight(id, verify.Entry, "E02", vecNow.Add(-2*time.Minute), true)
		}, "E02", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.prep(f.store, f.cert.ID)
			p := verify.DefaultPolicy(verify.Entry)
			v := newTestVerifier(t, f.store, p)
			d, err := v.VerifyAt(f.token(nowStep), vecNow)
			if err != nil || d.Reason != verify.Passback || d.SeenAt != c.seenAt || d.Held != c.held {
				t.Fatalf("%v (seen at %q, held %v), %v; want PASSBACK seen at %q, held %v", d.Reason, d.SeenAt, d.Held, err, c.seenAt, c.held)
			}
			x, err := explainAgrees(t, v, f.token(nowStep), vecNow)
			if err != nil || x.Decision.SeenAt != c.seenAt || x.Decision.Held != c.held || x.Cert.SeenAt != c.seenAt {
				t.Fatalf("explained as %+v / %+v, %v", x.Decision, x.Cert, err)
			}
			detail := x.Checks[verify.NumChecks-1].Detail
			want := "passed this gate"
			switch {
			case c.held:
				want = "held at gate " + c.seenAt
			case c.seenAt != "":
				want = "passed gate " + c.seenAt
			}
			if !strings.Contains(detail, want) {
				t.Errorf("check 10 says %q, want it to say %q", detail, want)
			}
		})
	}
}
