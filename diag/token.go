package diag

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"gateagent/qrcode"
	"gateagent/verify"
)

// TokenReport explains one token the way the gate would check it: each of
// the spec's ten checks with what it found, and what to do. It holds the
// token's cert ID and step, never its text, and nothing of the key.
type TokenReport struct {
	// Source is where the token came from: "argument", "scanner" or the
	// base name of an image file.
	Source string `json:"source"`
	// At is the (corrected) time the token was checked against.
	At time.Time `json:"at"`
	// CertID, Step and StepTime are what the token claims; empty and zero
	// when it is malformed. They are the holder's own only when the tag
	// check passed.
	CertID   string    `json:"cert_id"`
	Step     uint32    `json:"step"`
	StepTime time.Time `json:"step_time,omitzero"`
	// NowStep is the gate's step; StepOffset the token's step minus it
	// (-1: the code is a minute behind the gate).
	NowStep    uint32 `json:"now_step"`
	StepOffset int64  `json:"step_offset"`
	// Cert is what the key cache holds on the certificate; nil when it
	// was not looked up (a malformed token, an unreadable cache).
	Cert   *verify.CertInfo `json:"cert,omitempty"`
	Checks []TokenCheck     `json:"checks"`
	// Reason is the gate's decision, as the spec spells it.
	Reason string `json:"reason"`
	// Status is PASS when the gate would open, FAIL when it would refuse
	// or could not decide.
	Status Status `json:"status"`
	// Advice says in one line what the passenger or technician should do.
	Advice string `json:"advice"`
}

// TokenCheck is one of the spec's checks in a TokenReport.
type TokenCheck struct {
	Number  int    `json:"number"`
	Name    string `json:"name"`
	Outcome string `json:"outcome"` // "PASS", "FAIL" or "NOT RUN"
	// Reason is what the check gives when it fails.
	Reason string `json:"reason"`
	Detail string `json:"detail"`
	// Decisive marks the failed check that decides the refusal: the first.
	Decisive bool `json:"decisive,omitempty"`
}

// ExplainToken checks text with v at now, as the gate would, and explains
// each check. The error is non-nil only when the key cache could not be
// read (it wraps verify.ErrStore); the report then holds the checks as far
// as they got, with the reason UNDECIDED.
func ExplainToken(v *verify.Verifier, text []byte, now time.Time) (TokenReport, error) {
	x, err := v.Explain(text, now)
	r := TokenReport{
		Source:  "argument",
		At:      now.UTC(),
		NowStep: x.NowStep,
		Reason:  x.Decision.Reason.String(),
		Status:  Fail,
		Advice:  tokenAdvice(x.Decision.Reason),
	}
	if x.Decision.Granted() {
		r.Status = Pass
	}
	if t := x.Token; t != nil {
		r.CertID, r.Step = t.CertID.String(), t.Step
		// The last steps lie past the year 9999, which JSON cannot write.
		if st := verify.StepStart(t.Step); st.Year() <= 9999 {
			r.StepTime = st
		}
		r.StepOffset = int64(t.Step) - int64(x.NowStep)
	}
	if x.Checks[2].Outcome != verify.NotRun { // check 3 looked the certificate up
		c := x.Cert
		c.NotBefore, c.NotAfter, c.LastPass = c.NotBefore.UTC(), c.NotAfter.UTC(), c.LastPass.UTC()
		r.Cert = &c
	}
	decisive := x.Decisive()
	r.Checks = make([]TokenCheck, len(x.Checks))
	for i, c := range x.Checks {
		r.Checks[i] = TokenCheck{
			Number:   c.Number,
			Name:     c.Name,
			Outcome:  c.Outcome.String(),
			Reason:   c.Reason.String(),
			Detail:   c.Detail,
			Decisive: c.Number == decisive,
		}
	}
	if err != nil {
		// The cache could not be read (or refuses, being stale): the gate
		// stays shut, and the report says why.
		r.Advice = fmt.Sprintf("the gate cannot decide: %v", oneLine(err))
	}
	return r, err
}

// ExplainImage reads the QR code in a PNG, JPEG or GIF file (a photo of a
// passenger's screen) and explains its token with ExplainToken, with the
// file's base name as the source. An image without a readable code gives
// an error that wraps qrcode.ErrNotFound and says what to do.
func ExplainImage(v *verify.Verifier, path string, now time.Time) (TokenReport, error) {
	text, err := readImageCode(path)
	if err != nil {
		return TokenReport{}, err
	}
	r, err := ExplainToken(v, []byte(text), now)
	r.Source = filepath.Base(path)
	return r, err
}

// readImageCode returns the text of the QR code in an image file, exactly
// as stored. An image without a readable code gives noCodeError.
func readImageCode(path string) (string, error) {
	text, err := qrcode.DecodeFile(path)
	if errors.Is(err, qrcode.ErrNotFound) {
		return "", noCodeError{path}
	}
	return text, err
}

// noCodeError is ExplainImage's error for an image without a readable QR
// code: gozxing's reason means nothing to a technician.
type noCodeError struct{ path string }

func (e noCodeError) Error() string {
	return "no QR code found in " + e.path + ": photograph the whole code flat and in focus, or type the token with diag token"
}

func (noCodeError) Unwrap() error { return qrcode.ErrNotFound }

// tokenAdvice says what to do after a decision, by the reason's family:
// what the gate's buzzer tells the passenger, in words.
func tokenAdvice(r verify.Reason) string {
	switch r.Family() {
	case verify.FamilyGranted:
		return "the gate would open"
	case verify.FamilyRefresh:
		return "ask the passenger to refresh the code"
	case verify.FamilyManual:
		return "send the passenger to the manual channel"
	case verify.FamilyInvalid:
		return "the code is not valid here: the passenger may not pass with it (staff at the manual channel can help)"
	}
	return "the gate cannot decide: check its clock and key cache (gateagent diag)"
}

// WriteText prints the report for a person: the token's fields, one line
// per check with the decisive one marked, and the result.
func (r *TokenReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "gateagent diag token: %s, checked at %s\n", orDash(r.Source), r.At.UTC().Format(time.RFC3339))
	if r.CertID == "" {
		fmt.Fprintf(&b, "cert ID   - (not a TR1 token)\n")
		fmt.Fprintf(&b, "step      -; the gate's step is %d\n", r.NowStep)
	} else {
		fmt.Fprintf(&b, "cert ID   %s\n", r.CertID)
		from := "after the year 9999"
		if !r.StepTime.IsZero() {
			from = "from " + r.StepTime.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "step      %d, the minute %s; the gate's step is %d (offset %+d)\n",
			r.Step, from, r.NowStep, r.StepOffset)
	}
	fmt.Fprintf(&b, "cache     %s\n", r.cacheLine())
	fmt.Fprintf(&b, "checks (> marks the one that decides):\n")
	for _, c := range r.Checks {
		mark := "   "
		if c.Decisive {
			mark = " > "
		}
		fmt.Fprintf(&b, "%s%2d %-16s %-7s %s\n", mark, c.Number, c.Name, c.Outcome, c.Detail)
	}
	fmt.Fprintf(&b, "result: %s %s — %s\n", r.Status, r.Reason, r.Advice)
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *TokenReport) cacheLine() string {
	c := r.Cert
	switch {
	case c == nil:
		return "not looked up"
	case !c.Found:
		return "not in the key cache"
	}
	revoked, last := "not revoked", "none"
	if c.Revoked {
		revoked = "REVOKED"
	}
	if !c.LastPass.IsZero() {
		last = c.LastPass.UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("found: not_before %s, not_after %s, %s, last passage here %s",
		c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), revoked, last)
}

// WriteJSON prints the report as one indented JSON document.
func (r *TokenReport) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}
