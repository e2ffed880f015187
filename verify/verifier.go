package verify

import (
	"crypto/hmac"
	"fmt"
	"time"
)

// Direction is the way a gate lets passengers through.
type Direction uint8

// The directions. The zero Direction is not valid.
const (
	Entry Direction = 1
	Exit  Direction = 2
)

// String returns "entry" or "exit".
func (d Direction) String() string {
	switch d {
	case Entry:
		return "entry"
	case Exit:
		return "exit"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// ParseDirection parses "entry" or "exit".
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "entry":
		return Entry, nil
	case "exit":
		return Exit, nil
	}
	return 0, fmt.Errorf("direction %q: want \"entry\" or \"exit\"", truncate(s))
}

// Cert is what a gate knows of one certificate: never a name or an
// identity number. Times have a resolution of one second.
type Cert struct {
	ID        CertID
	Key       Key
	NotBefore time.Time
	NotAfter  time.Time
	Revoked   bool
}

// Record is a certificate as one gate sees it from one direction.
type Record struct {
	Cert
	// LastPass is when the certificate last passed this gate in the
	// direction looked up; zero when no passage is on record. With
	// station peers, it may be a passage at another gate (SeenAt).
	LastPass time.Time
	// SeenAt names the other gate of the station where LastPass
	// happened, or where the certificate is held (Held); empty when
	// LastPass is this gate's own.
	SeenAt string
	// Held: another gate (SeenAt) has granted the certificate and its
	// passenger has not passed yet; LastPass is then that grant. Check 10
	// refuses while a hold stands, whatever the window.
	Held bool
}

// Sighted returns r with what another gate of the station knows of its
// certificate folded in (package station): a hold there always (it stands
// until that passenger passes or the grant lapses), a passage there when
// it is later than this gate's own.
func (r Record) Sighted(gate string, at time.Time, held bool) Record {
	if held || at.After(r.LastPass) {
		r.LastPass, r.SeenAt, r.Held = at, gate, held
	}
	return r
}

// Store is the verifier's read-only view of the key cache. The cache package
// implements it on bbolt; memstore in memory, for tests.
type Store interface {
	// Lookup returns certificate id with its last passage in direction dir,
	// and whether the certificate is known. An error means the store could
	// not be read: no decision can be made. (The record is returned by
	// value: through an interface, a pointer argument would cost a heap
	// allocation on every scan.)
	Lookup(id CertID, dir Direction) (Record, bool, error)
}

// Clock tells the time. A gate's clock is its system clock corrected by the
// offset it has learnt to the key feed's clock.
type Clock interface {
	Now() time.Time
}

// ClockFunc adapts a function to Clock.
type ClockFunc func() time.Time

// Now calls f.
func (f ClockFunc) Now() time.Time { return f() }

// Policy is what a gate accepts. The zero Policy is not valid: start from
// DefaultPolicy.
type Policy struct {
	// MaxPastSteps and MaxFutureSteps bound how far the token's step may lie
	// behind or ahead of the gate's step (checks 5 and 6).
	MaxPastSteps   uint32
	MaxFutureSteps uint32
	// ExitGrace extends not_after at an exit gate (check 9); it must be 0
	// at an entry gate.
	ExitGrace time.Duration
	// PassbackWindow is how long after a passage the same certificate is
	// refused in the same direction (check 10); 0 turns the check off.
	PassbackWindow time.Duration
	// Direction is the way this gate lets passengers through.
	Direction Direction
}

// Limits on a Policy, so that a typing error in a config file cannot turn a
// one-minute code into a day-long one.
const (
	MaxStepWindow     = 10
	MaxExitGrace      = 6 * time.Hour
	MaxPassbackWindow = 24 * time.Hour
)

// DefaultPolicy returns the spec's defaults for a gate facing dir: one step
// either side, no exit grace, and a 30-minute anti-passback window.
func DefaultPolicy(dir Direction) Policy {
	return Policy{
		MaxPastSteps:   1,
		MaxFutureSteps: 1,
		PassbackWindow: 30 * time.Minute,
		Direction:      dir,
	}
}

// Validate reports what is wrong with p, if anything.
func (p Policy) Validate() error {
	switch {
	case p.Direction != Entry && p.Direction != Exit:
		return fmt.Errorf("%w: direction must be entry or exit", ErrConfig)
	case p.MaxPastSteps > MaxStepWindow || p.MaxFutureSteps > MaxStepWindow:
		return fmt.Errorf("%w: max past/future steps %d/%d: at most %d each (the spec's default is 1)",
			ErrConfig, p.MaxPastSteps, p.MaxFutureSteps, MaxStepWindow)
	case p.ExitGrace < 0 || p.ExitGrace > MaxExitGrace:
		return fmt.Errorf("%w: exit grace %v: must lie between 0 and %v", ErrConfig, p.ExitGrace, MaxExitGrace)
	case p.ExitGrace != 0 && p.Direction != Exit:
		return fmt.Errorf("%w: exit grace %v is set on an entry gate: it applies only at exit gates", ErrConfig, p.ExitGrace)
	case p.PassbackWindow < 0 || p.PassbackWindow > MaxPassbackWindow:
		return fmt.Errorf("%w: anti-passback window %v: must lie between 0 and %v", ErrConfig, p.PassbackWindow, MaxPassbackWindow)
	}
	return nil
}

// Config is what New needs.
type Config struct {
	Store  Store
	Clock  Clock
	Policy Policy
	// TrustedAfter is the earliest time the gate's clock may show and be
	// believed: the build date of the agent (check 2). A board without a
	// real-time clock boots in 1970 and must not check tokens until its
	// clock is set.
	TrustedAfter time.Time
	// Stages, when set, makes every Decision carry the time its stages
	// took (Decision.Stages), for the gate's latency figures. It costs
	// four reads of the monotonic clock per check (about 0.2 µs on a
	// server; see BenchmarkVerifyMemStages); unset, VerifyAt reads no
	// clock at all.
	Stages bool
}

// Verifier checks TR1 tokens offline. It is safe for concurrent use.
type Verifier struct {
	store        Store
	clock        Clock
	policy       Policy
	trustedAfter time.Time
	stages       bool
}

// New returns a Verifier, or an error wrapping ErrConfig.
func New(c Config) (*Verifier, error) {
	switch {
	case c.Store == nil:
		return nil, fmt.Errorf("%w: no key store", ErrConfig)
	case c.Clock == nil:
		return nil, fmt.Errorf("%w: no clock", ErrConfig)
	case c.TrustedAfter.IsZero():
		return nil, fmt.Errorf("%w: no trusted-after time (the agent's build date)", ErrConfig)
	}
	if err := c.Policy.Validate(); err != nil {
		return nil, err
	}
	return &Verifier{store: c.Store, clock: c.Clock, policy: c.Policy, trustedAfter: c.TrustedAfter, stages: c.Stages}, nil
}

// Policy returns the policy v applies.
func (v *Verifier) Policy() Policy { return v.policy }

// Decision is the outcome of checking one token.
type Decision struct {
	Reason Reason
	// CertID and Step are what the token claims; zero when it is Malformed.
	CertID CertID
	Step   uint32
	// StepOffset is the token's step minus the gate's step (−1: the phone
	// is a minute behind the gate). It is set only when the tag is
	// authentic (see Authentic): callers use it to learn clock drift.
	StepOffset int64
	// At is the corrected time the decision was made at.
	At time.Time
	// Detail says what was wrong with a Malformed token.
	Detail string
	// SeenAt names the other gate of the station a Passback was seen at
	// (Record.SeenAt), and Held says that gate holds the certificate for
	// a passenger walking through; empty for this gate's own passage.
	SeenAt string
	Held   bool
	// Stages is how long each stage took, when Config.Stages is set;
	// zero otherwise.
	Stages Stages
}

// Stages is how long the stages of one check took, measured on the
// monotonic clock (time.Now), never on the verifier's Clock: that one
// decides validity and may be corrected or faked; these are real
// latencies. A stage that did not run (the check stopped before it) is
// zero.
type Stages struct {
	Decode time.Duration // check 1: parse and base45-decode the text (ParseToken)
	Lookup time.Duration // check 3: the key cache read (Store.Lookup; check 2's comparison too)
	Tag    time.Duration // check 4: HMAC-SHA256 and the constant-time comparison
}

// Granted reports whether the gate may open: only for OK.
func (d *Decision) Granted() bool { return d.Reason == OK }

// Authentic reports whether the token's tag was checked and found right,
// so that its step and cert ID are the certificate holder's own.
func (d *Decision) Authentic() bool { return d.Reason == OK || d.Reason > BadTag }

// Verify checks token at the clock's current time.
func (v *Verifier) Verify(token []byte) (Decision, error) {
	return v.VerifyAt(token, v.clock.Now())
}

// VerifyAt runs the spec's ten checks in order against now; the first that
// fails decides. The error is non-nil only when the store could not be read:
// the decision is then Undecided and the gate must stay shut.
func (v *Verifier) VerifyAt(token []byte, now time.Time) (Decision, error) {
	d := Decision{At: now}
	// Stage timing: four monotonic clock reads, each stage starting where
	// the last ended; every one behind v.stages, so that the path without
	// them is unchanged.
	var mark time.Time
	if v.stages {
		mark = time.Now()
	}

	// 1. The text is a TR1 token.
	tok, err := ParseToken(token)
	if v.stages {
		d.Stages.Decode = lap(&mark)
	}
	if err != nil {
		d.Reason, d.Detail = Malformed, err.Error()
		return d, nil
	}
	d.CertID, d.Step = tok.CertID, tok.Step

	// 2. The gate's clock is set and not before the agent's build date.
	if now.Before(v.trustedAfter) {
		d.Reason = ClockUntrusted
		return d, nil
	}

	// 3. The certificate is in the cache. (Its stage starts where the
	// decode's ended: check 2 is one comparison, not worth a clock read.)
	e, found, err := v.store.Lookup(tok.CertID, v.policy.Direction)
	if v.stages {
		d.Stages.Lookup = lap(&mark)
	}
	if err != nil {
		return d, fmt.Errorf("%w: looking up cert %s: %w", ErrStore, tok.CertID, err)
	}
	if !found {
		d.Reason = UnknownCert
		return d, nil
	}

	// 4. The tag is right, compared in constant time.
	want := ComputeTag(&e.Key, &tok.CertID, tok.Step)
	tagOK := hmac.Equal(want[:], tok.Tag[:])
	if v.stages {
		d.Stages.Tag = lap(&mark)
	}
	if !tagOK {
		d.Reason = BadTag
		return d, nil
	}

	// 5 and 6. The step lies within the window around the gate's step.
	d.StepOffset = int64(tok.Step) - int64(StepOf(now))
	if d.StepOffset < -int64(v.policy.MaxPastSteps) {
		d.Reason = CodeStale
		return d, nil
	}
	if d.StepOffset > int64(v.policy.MaxFutureSteps) {
		d.Reason = CodeFromFuture
		return d, nil
	}

	// 7. The certificate is not revoked.
	if e.Revoked {
		d.Reason = Revoked
		return d, nil
	}

	// 8 and 9. The certificate is valid now.
	if now.Before(e.NotBefore) {
		d.Reason = NotYetValid
		return d, nil
	}
	notAfter := e.NotAfter
	if v.policy.Direction == Exit {
		notAfter = notAfter.Add(v.policy.ExitGrace)
	}
	if now.After(notAfter) {
		d.Reason = Expired
		return d, nil
	}

	// 10. It has not passed here (or at another gate of the station) in
	// this direction within the window, and no other gate holds it. A
	// passage recorded in the future (the clock was set back) counts as
	// within it.
	if w := v.policy.PassbackWindow; w > 0 && (e.Held || !e.LastPass.IsZero() && now.Sub(e.LastPass) < w) {
		d.Reason, d.SeenAt, d.Held = Passback, e.SeenAt, e.Held
		return d, nil
	}

	d.Reason = OK
	return d, nil
}

// lap returns the time since *mark on the monotonic clock and moves *mark
// to now.
func lap(mark *time.Time) time.Duration {
	now := time.Now()
	d := now.Sub(*mark)
	*mark = now
	return d
}
