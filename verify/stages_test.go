package verify_test

import (
	"testing"
	"time"

	"gateagent/verify"
)

// slowStore is a store whose lookups take at least delay, so that the
// lookup stage has a known lower bound.
type slowStore struct {
	verify.Store
	delay time.Duration
}

func (s slowStore) Lookup(id verify.CertID, dir verify.Direction) (verify.Record, bool, error) {
	time.Sleep(s.delay) // the stimulus: a store this slow, the lookup stage's lower bound
	return s.Store.Lookup(id, dir)
}

func newStagesVerifier(t *testing.T, s verify.Store, stages bool) *verify.Verifier {
	t.Helper()
	v, err := verify.New(verify.Config{
		Store:        s,
		Clock:        verify.ClockFunc(func() time.Time { return vecNow }),
		Policy:       verify.DefaultPolicy(verify.Entry),
		TrustedAfter: trustedAfter,
		Stages:       stages,
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestStagesTimed: with Config.Stages a grant carries the time of each
// stage, the lookup's at least the store's delay; without it every stage
// is zero; the decision is otherwise the same, whatever the reason.
func TestStagesTimed(t *testing.T) {
	const delay = 2 * time.Millisecond
	f := newFixture(t)
	store := slowStore{Store: f.store, delay: delay}
	on := newStagesVerifier(t, store, true)
	off := newStagesVerifier(t, store, false)

	d, err := on.VerifyAt(f.token(nowStep), vecNow)
	if err != nil || d.Reason != verify.OK {
		t.Fatalf("%v, %v; want OK", d.Reason, err)
	}
	if d.Stages.Lookup < delay {
		t.Errorf("lookup stage %v, want at least the store's %v", d.Stages.Lookup, delay)
	}
	if d.Stages.Tag <= 0 {
		t.Errorf("stages %+v: want a tag stage > 0", d.Stages)
	}

	stranger := f.cert.ID
	stranger[0] ^= 1
	tokens := map[string][]byte{
		"ok":        f.token(nowStep),
		"malformed": []byte("not a token"),
		"unknown":   []byte(verify.NewToken(&f.cert.Key, stranger, nowStep).String()),
		"bad tag":   []byte(verify.NewToken(&verify.Key{}, f.cert.ID, nowStep).String()),
		"stale":     f.token(nowStep - 2),
	}
	for name, tok := range tokens {
		dOn, errOn := on.VerifyAt(tok, vecNow)
		dOff, errOff := off.VerifyAt(tok, vecNow)
		if (errOn == nil) != (errOff == nil) {
			t.Errorf("%s: errors %v / %v", name, errOn, errOff)
		}
		if dOff.Stages != (verify.Stages{}) {
			t.Errorf("%s: stages %+v without Config.Stages, want zero", name, dOff.Stages)
		}
		if name != "malformed" && dOn.Stages.Lookup < delay {
			t.Errorf("%s: lookup stage %v, want at least %v", name, dOn.Stages.Lookup, delay)
		}
		if name == "malformed" && (dOn.Stages.Lookup != 0 || dOn.Stages.Tag != 0) {
			t.Errorf("%s: stages %+v: a check that stopped at the text timed later stages", name, dOn.Stages)
		}
		if name == "unknown" && dOn.Stages.Tag != 0 {
			t.Errorf("%s: tag stage %v for a cert that was not found", name, dOn.Stages.Tag)
		}
		dOn.Stages = verify.Stages{}
		if dOn != dOff {
			t.Errorf("%s: decision with stages %+v, without %+v: want the same", name, dOn, dOff)
		}
	}
}

// TestStagesDoNotAllocate: timing the stages costs no allocation (the
// verifier on the in-memory store allocates nothing per check).
func TestStagesDoNotAllocate(t *testing.T) {
	f := newFixture(t)
	v := newStagesVerifier(t, f.store, true)
	tok := f.token(nowStep)
	if n := testing.AllocsPerRun(100, func() {
		if d, _ := v.VerifyAt(tok, vecNow); d.Reason != verify.OK {
			t.Fatal(d.Reason)
		}
	}); n != 0 {
		t.Errorf("%v allocations per check with stages, want 0", n)
	}
}

// BenchmarkVerifyMemStages is BenchmarkVerifyMem with Config.Stages: the
// cost of timing the stages.
func BenchmarkVerifyMemStages(b *testing.B) {
	f := newFixture(b)
	v, err := verify.New(verify.Config{
		Store:        f.store,
		Clock:        verify.ClockFunc(func() time.Time { return vecNow }),
		Policy:       verify.DefaultPolicy(verify.Entry),
		TrustedAfter: trustedAfter,
		Stages:       true,
	})
	if err != nil {
		b.Fatal(err)
	}
	text := f.token(nowStep)
	b.ReportAllocs()
	for b.Loop() {
		if d, _ := v.Verify(text); d.Reason != verify.OK {
			b.Fatal(d.Reason)
		}
	}
}
