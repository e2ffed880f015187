package verify

import (
	"crypto/hmac"
	"fmt"
	"time"
)

// Outcome is what became of one check in an Explanation.
type Outcome uint8

// The outcomes. NotRun is the zero Outcome.
const (
	NotRun Outcome = iota // not evaluated: an earlier check left nothing to evaluate it on
	Passed
	Failed
)

var outcomeNames = [...]string{NotRun: "NOT RUN", Passed: "PASS", Failed: "FAIL"}

// String returns "NOT RUN", "PASS" or "FAIL".
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// NumChecks is the number of checks in tr1-token.md.
const NumChecks = 10

// checkTable names the spec's checks, in its order, with the reason each gives
// when it fails.
var checkTable = [NumChecks]struct {
	name   string
	reason Reason
}{
	{"format", Malformed},
	{"clock", ClockUntrusted},
	{"known cert", UnknownCert},
	{"tag", BadTag},
	{"not stale", CodeStale},
	{"not from future", CodeFromFuture},
	{"not revoked", Revoked},
	{"valid yet", NotYetValid},
	{"not expired", Expired},
	{"no passback", Passback},
}

// CheckResult is one of the spec's checks, as Explain found it.
type CheckResult struct {
	Number  int    // 1..10, as in the spec
	Name    string // short: "format", "clock", "known cert", ...
	Reason  Reason // what the check gives when it fails
	Outcome Outcome
	Detail  string // what was found, or why the check was not run
}

// CertInfo is what the key cache holds on a token's certificate, less its
// key, which an Explanation never carries.
type CertInfo struct {
	Found     bool      `json:"found"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	Revoked   bool      `json:"revoked"`
	// LastPass is the last passage in the gate's direction; zero if none.
	LastPass time.Time `json:"last_pass,omitzero"`
	// SeenAt names the other gate of the station that passage was at, or
	// that holds the certificate (Held); empty: this gate's own.
	SeenAt string `json:"seen_at,omitempty"`
	Held   bool   `json:"held,omitempty"`
}

// Explanation is every check of one token with its outcome, for a
// technician. It holds no key material: the token's cert ID, step and tag,
// and what the cache holds on the certificate.
type Explanation struct {
	Token   *Token // the parsed token; nil when it is malformed
	NowStep uint32 // the gate's step at the time of the check
	// Cert is the cache's record; zero when it was not looked up (a
	// malformed token, an unreadable cache).
	Cert   CertInfo
	Checks []CheckResult // all ten, in the spec's order
	// Decision is what VerifyAt decides for the same token and time
	// (without Stages): the first check that failed decides.
	Decision Decision
}

// Decisive returns the number of the check that decided a refusal, the
// first that failed, or 0 when none failed (OK, or undecided).
func (x *Explanation) Decisive() int {
	for _, c := range x.Checks {
		if c.Outcome == Failed {
			return c.Number
		}
	}
	return 0
}

// Explain runs the spec's ten checks against now as VerifyAt does, and
// reports each. Its Decision is VerifyAt's: the first failing check decides
// it. The checks after that one are still evaluated where that means
// something, so that a code both stale and expired shows both; they are
// not run after a malformed text (nothing to check), an unknown
// certificate (no record) or a wrong tag (the step and cert ID are not the
// holder's). With an untrusted clock, the checks that do not depend on the
// time (3, 4, 7) are still run.
//
// The error is VerifyAt's: non-nil, wrapping ErrStore, when the cache
// could not be read; the explanation then holds what was found until then
// and its decision is Undecided.
//
// Explain is for the technician's tool, never the scan path: it repeats
// VerifyAt's predicates rather than sharing them, and the tests hold the two
// to the same decision on every input.
func (v *Verifier) Explain(token []byte, now time.Time) (Explanation, error) {
	x := Explanation{NowStep: StepOf(now), Checks: make([]CheckResult, NumChecks)}
	for i, c := range checkTable {
		x.Checks[i] = CheckResult{Number: i + 1, Name: c.name, Reason: c.reason}
	}
	err := v.explain(&x, token, now)
	x.Decision = x.decide(now)
	return x, err
}

// explain fills x.Token, x.Cert and x.Checks.
func (v *Verifier) explain(x *Explanation, text []byte, now time.Time) error {
	c := x.Checks // c[n-1] is check n

	// 1. The text is a TR1 token. The detail is the decision's.
	tok, err := ParseToken(text)
	if err != nil {
		c[0].set(false, err.Error())
		x.notRun(2, "not checked: the text is not a token")
		return nil
	}
	x.Token = &tok
	c[0].set(true, fmt.Sprintf("a TR1 token: cert %s, step %d (the minute from %s)", tok.CertID, tok.Step, stamp(StepStart(tok.Step))))

	// 2. The gate's clock is set and not before the agent's build date.
	clockOK := !now.Before(v.trustedAfter)
	if clockOK {
		c[1].set(true, fmt.Sprintf("gate clock %s, not before the agent's build date %s", stamp(now), stamp(v.trustedAfter)))
	} else {
		c[1].set(false, fmt.Sprintf("gate clock %s is before the agent's build date %s: set the clock before checking tokens", stamp(now), stamp(v.trustedAfter)))
	}

	// 3. The certificate is in the cache. VerifyAt does not look it up
	// when the clock is untrusted, so a store error then decides nothing.
	e, found, err := v.store.Lookup(tok.CertID, v.policy.Direction)
	if err != nil {
		err = fmt.Errorf("%w: looking up cert %s: %w", ErrStore, tok.CertID, err)
		c[2].Detail = "not checked: " + err.Error()
		x.notRun(4, "not checked: the key cache could not be read")
		if !clockOK {
			return nil
		}
		return err
	}
	x.Cert = CertInfo{Found: found}
	if !found {
		c[2].set(false, fmt.Sprintf("cert %s is not in the key cache: not issued, not yet synced to this gate, or purged", tok.CertID))
		x.notRun(4, "not checked: the certificate is not in the key cache")
		return nil
	}
	x.Cert = CertInfo{Found: true, NotBefore: e.NotBefore, NotAfter: e.NotAfter, Revoked: e.Revoked, LastPass: e.LastPass,
		SeenAt: e.SeenAt, Held: e.Held}
	c[2].set(true, fmt.Sprintf("cert %s is in the key cache", tok.CertID))

	// 4. The tag is right, compared in constant time.
	want := ComputeTag(&e.Key, &tok.CertID, tok.Step)
	if !hmac.Equal(want[:], tok.Tag[:]) {
		c[3].set(false, "the tag does not match the certificate's key: a forged or damaged code, or made with another key")
		x.notRun(5, "not checked: the tag is not authentic, so the code's step and cert are not the holder's")
		return nil
	}
	c[3].set(true, "authentic: the tag matches the certificate's key")

	// 7 does not depend on the time; 5, 6, 8, 9 and 10 do, and are not run
	// on an untrusted clock.
	if e.Revoked {
		c[6].set(false, "the certificate is revoked")
	} else {
		c[6].set(true, "the certificate is not revoked")
	}
	if !clockOK {
		for _, n := range []int{5, 6, 8, 9, 10} {
			c[n-1].Detail = "not checked: the gate's clock is not trusted"
		}
		return nil
	}

	// 5 and 6. The step lies within the window around the gate's step.
	p := v.policy
	offset := int64(tok.Step) - int64(x.NowStep)
	where := fmt.Sprintf("step %d is %s", tok.Step, stepsFromGate(offset))
	c[4].set(!(offset < -int64(p.MaxPastSteps)), fmt.Sprintf("%s (window: %d behind)", where, p.MaxPastSteps))
	c[5].set(!(offset > int64(p.MaxFutureSteps)), fmt.Sprintf("%s (window: %d ahead)", where, p.MaxFutureSteps))

	// 8 and 9. The certificate is valid now.
	if now.Before(e.NotBefore) {
		c[7].set(false, fmt.Sprintf("not_before %s, %s from now", stamp(e.NotBefore), span(e.NotBefore.Sub(now))))
	} else {
		c[7].set(true, fmt.Sprintf("not_before %s, %s ago", stamp(e.NotBefore), span(now.Sub(e.NotBefore))))
	}
	notAfter, grace := e.NotAfter, ""
	if p.Direction == Exit {
		notAfter = notAfter.Add(p.ExitGrace)
		if p.ExitGrace > 0 {
			grace = " + " + span(p.ExitGrace) + " exit grace"
		}
	}
	if now.After(notAfter) {
		c[8].set(false, fmt.Sprintf("not_after %s%s, expired %s ago", stamp(e.NotAfter), grace, span(now.Sub(notAfter))))
	} else {
		c[8].set(true, fmt.Sprintf("not_after %s%s, %s left", stamp(e.NotAfter), grace, span(notAfter.Sub(now))))
	}

	// 10. It has not passed here (or at another gate of the station) in
	// this direction within the window, and no other gate holds it; a
	// passage recorded in the future counts as within it.
	w, last, dir := p.PassbackWindow, e.LastPass, p.Direction
	seenAt := "this gate"
	if e.SeenAt != "" {
		seenAt = "gate " + e.SeenAt
	}
	switch {
	case w <= 0:
		c[9].set(true, "anti-passback is off at this gate")
	case e.Held:
		c[9].set(false, fmt.Sprintf("held at gate %s: granted there %s ago (%s) and its passenger has not passed yet", e.SeenAt, span(now.Sub(last)), dir))
	case last.IsZero():
		c[9].set(true, fmt.Sprintf("no %s passage on record", dir))
	case now.Sub(last) < w && last.After(now):
		c[9].set(false, fmt.Sprintf("%s passage at %s recorded %s in the future (the clock was set back): within the %s anti-passback window", dir, seenAt, span(last.Sub(now)), span(w)))
	case now.Sub(last) < w:
		c[9].set(false, fmt.Sprintf("passed %s (%s) %s ago, within the %s anti-passback window", seenAt, dir, span(now.Sub(last)), span(w)))
	default:
		c[9].set(true, fmt.Sprintf("last passed %s (%s) %s ago, outside the %s anti-passback window", seenAt, dir, span(now.Sub(last)), span(w)))
	}
	return nil
}

// decide returns VerifyAt's decision from the checks: the first that did
// not pass decides it. A check left unrun before any failed is the cache
// that could not be read: Undecided.
func (x *Explanation) decide(now time.Time) Decision {
	d := Decision{At: now}
	if x.Token == nil {
		d.Reason, d.Detail = Malformed, x.Checks[0].Detail
		return d
	}
	d.CertID, d.Step = x.Token.CertID, x.Token.Step
	d.Reason = OK
	n := NumChecks + 1 // the number of the deciding check; past the last for OK
	for _, c := range x.Checks {
		if c.Outcome != Passed {
			d.Reason, n = Undecided, c.Number
			if c.Outcome == Failed {
				d.Reason = c.Reason
			}
			break
		}
	}
	if d.Reason == Passback {
		d.SeenAt, d.Held = x.Cert.SeenAt, x.Cert.Held
	}
	if n > 4 { // checks 1 to 4 passed: the step is the holder's own
		d.StepOffset = int64(d.Step) - int64(x.NowStep)
	}
	return d
}

// notRun marks checks from..10 not run, for why.
func (x *Explanation) notRun(from int, why string) {
	for i := from - 1; i < NumChecks; i++ {
		x.Checks[i].Outcome, x.Checks[i].Detail = NotRun, why
	}
}

func (c *CheckResult) set(pass bool, detail string) {
	c.Outcome, c.Detail = Failed, detail
	if pass {
		c.Outcome = Passed
	}
}

// stepsFromGate says where a step lies relative to the gate's.
func stepsFromGate(offset int64) string {
	switch {
	case offset == 0:
		return "the gate's own minute"
	case offset == -1:
		return "1 minute behind the gate"
	case offset == 1:
		return "1 minute ahead of the gate"
	case offset < 0:
		return fmt.Sprintf("%d minutes behind the gate", -offset)
	}
	return fmt.Sprintf("%d minutes ahead of the gate", offset)
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// span writes a non-negative duration for a person: "45s", "12m", "2h",
// "2h05m", "3d04h".
func span(d time.Duration) string {
	d = d.Abs()
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int64(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int64(d/time.Minute))
	case d < 48*time.Hour:
		h, m := int64(d/time.Hour), int64(d%time.Hour/time.Minute)
		if m == 0 {
			return fmt.Sprintf("%dh", h)
		}
		return fmt.Sprintf("%dh%02dm", h, m)
	}
	return fmt.Sprintf("%dd%02dh", int64(d/(24*time.Hour)), int64(d%(24*time.Hour)/time.Hour))
}
