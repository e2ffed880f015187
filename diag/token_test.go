package diag_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gateagent/diag"
	"gateagent/qrcode"
	"gateagent/verify"
	"gateagent/verify/memstore"
)

// The vectors of tr1-token.md, copied letter for letter.
const (
	vecKey        = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	vecCertID     = "00112233445566778899aabbccddeeff"
	vecSpaceKey   = "fb26de5bd8d2479f8dff2c28ddb73a4617bd9d89d91800a592c056bff6f6cdb2"
	vecSpaceCert  = "2b5987515f55a2d05b10288d1e53a0c5"
	vecSpaceToken = "TR1:RL5 4HF2CAQK2NBV55N$3REKC90I$K7BSJVGIL40KVA*LJY6:N4:KP"
)

var vecTokens = []struct {
	step  uint32
	token string
}{
	{27370695, "TR1:H00PE4XS8-.C4CHCQLK+PS9UC90I$KC%0LFQUSCMDCNC6L6QOD9AQV"},
	{27370696, "TR1:H00PE4XS8-.C4CHCQLK+PS9UC90J$K./DF.3N Q4E0TD2$NJY/O:9K"},
	{0, "TR1:H00PE4XS8-.C4CHCQLK+PS9U0000008HD:L5L+ELF9H*64O0VZC/BI"},
	{4294967295, "TR1:H00PE4XS8-.C4CHCQLK+PS9UFGWFGWJ*Q+6AZD8 $FR9WMFG%HO4KH"},
}

// vecAt lies inside the step of the first vector (and the space vector).
var vecAt = time.Date(2022, 1, 15, 10, 15, 30, 0, time.UTC)

func vecCert(t testing.TB, id, key string, now time.Time) verify.Cert {
	t.Helper()
	c, err := verify.ParseCertID(id)
	if err != nil {
		t.Fatal(err)
	}
	k, err := verify.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return verify.Cert{ID: c, Key: k, NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(22 * time.Hour)}
}

// vecVerifier is an entry gate whose cache holds certs, at now.
func vecVerifier(t testing.TB, s verify.Store, now time.Time) *verify.Verifier {
	t.Helper()
	v, err := verify.New(verify.Config{
		Store:        s,
		Clock:        verify.ClockFunc(func() time.Time { return now }),
		Policy:       verify.DefaultPolicy(verify.Entry),
		TrustedAfter: time.Unix(0, 0), // step 0 lies in 1970
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// bothCerts is a cache with the spec's two certificates, valid at vecAt.
func bothCerts(t testing.TB) *memstore.Store {
	return memstore.New(vecCert(t, vecCertID, vecKey, vecAt), vecCert(t, vecSpaceCert, vecSpaceKey, vecAt))
}

// agrees explains text and fails unless the report's reason and status
// are the verifier's.
func agrees(t *testing.T, v *verify.Verifier, text string, now time.Time) diag.TokenReport {
	t.Helper()
	r, err := diag.ExplainToken(v, []byte(text), now)
	if err != nil {
		t.Fatalf("ExplainToken(%q): %v", text, err)
	}
	d, err := v.VerifyAt([]byte(text), now)
	if err != nil {
		t.Fatal(err)
	}
	if r.Reason != d.Reason.String() || (r.Status == diag.Pass) != d.Granted() || r.Status != diag.Pass && r.Status != diag.Fail {
		t.Fatalf("%q: report %s %v, verifier %v", text, r.Status, r.Reason, d.Reason)
	}
	if len(r.Checks) != verify.NumChecks || r.Source != "argument" || !r.At.Equal(now) {
		t.Fatalf("%q: %d checks, source %q, at %v", text, len(r.Checks), r.Source, r.At)
	}
	if d.Reason != verify.Malformed && (r.CertID != d.CertID.String() || r.Step != d.Step) {
		t.Fatalf("%q: cert %s step %d, verifier %s %d", text, r.CertID, r.Step, d.CertID, d.Step)
	}
	return r
}

func TestExplainTokenSpecVectors(t *testing.T) {
	for _, vec := range vecTokens {
		now := verify.StepStart(vec.step).Add(30 * time.Second)
		v := vecVerifier(t, memstore.New(vecCert(t, vecCertID, vecKey, now)), now)
		wantTime := verify.StepStart(vec.step)
		if wantTime.Year() > 9999 {
			wantTime = time.Time{} // JSON cannot write it: left out
		}
		if r := agrees(t, v, vec.token, now); r.Status != diag.Pass || r.StepOffset != 0 || !r.StepTime.Equal(wantTime) {
			t.Errorf("step %d: %s %s, offset %d, step time %v", vec.step, r.Status, r.Reason, r.StepOffset, r.StepTime)
		}
	}
	v := vecVerifier(t, bothCerts(t), vecAt)
	if r := agrees(t, v, vecSpaceToken, vecAt); r.Status != diag.Pass || r.CertID != vecSpaceCert {
		t.Errorf("space vector: %s %s, cert %s", r.Status, r.Reason, r.CertID)
	}

	first := vecTokens[0].token
	for name, text := range map[string]string{
		"lower case":            strings.ToLower(first),
		"TR2 prefix":            "TR2:" + first[4:],
		"one character more":    first + "0",
		"one character less":    first[:len(first)-1],
		"last character #":      first[:len(first)-1] + "#",
		"GGW in the last group": first[:len(first)-3] + "GGW",
	} {
		r := agrees(t, v, text, vecAt)
		if r.Reason != "MALFORMED" || r.CertID != "" || r.Cert != nil || !r.Checks[0].Decisive {
			t.Errorf("%s: %s, cert %q %+v", name, r.Reason, r.CertID, r.Cert)
		}
	}

	other := vecVerifier(t, memstore.New(vecCert(t, vecCertID, vecSpaceKey, vecAt)), vecAt)
	if r := agrees(t, other, first, vecAt); r.Reason != "BAD_TAG" || !r.Checks[3].Decisive {
		t.Errorf("first vector with another key: %s", r.Reason)
	}
}

// TestExplainTokenAdvice: each family of reasons has its advice.
func TestExplainTokenAdvice(t *testing.T) {
	key, _ := verify.ParseKey(vecKey)
	id, _ := verify.ParseCertID(vecCertID)
	step := verify.StepOf(vecAt)
	tok := func(s uint32) string { return verify.NewToken(&key, id, s).String() }
	expired := vecCert(t, vecCertID, vecKey, vecAt)
	expired.NotAfter = vecAt.Add(-time.Hour)
	revoked := vecCert(t, vecCertID, vecKey, vecAt)
	revoked.Revoked = true
	tests := []struct {
		name   string
		store  *memstore.Store
		token  string
		now    time.Time
		reason string
		advice string
	}{
		{"valid", bothCerts(t), tok(step), vecAt, "OK", "the gate would open"},
		{"stale", bothCerts(t), tok(step - 3), vecAt, "CODE_STALE", "ask the passenger to refresh the code"},
		{"expired", memstore.New(expired), tok(step), vecAt, "EXPIRED", "send the passenger to the manual channel"},
		{"revoked", memstore.New(revoked), tok(step), vecAt, "REVOKED", "the code is not valid here"},
		{"clock in 1970", bothCerts(t), tok(step), time.Unix(-60, 0), "CLOCK_UNTRUSTED", "the gate cannot decide"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := agrees(t, vecVerifier(t, tc.store, vecAt), tc.token, tc.now)
			if r.Reason != tc.reason || !strings.HasPrefix(r.Advice, tc.advice) {
				t.Errorf("%s: advice %q, want %q", r.Reason, r.Advice, tc.advice)
			}
		})
	}
}

type unreadable struct{}

func (unreadable) Lookup(verify.CertID, verify.Direction) (verify.Record, bool, error) {
	return verify.Record{}, false, errors.New("input/output error")
}

func TestExplainTokenStoreError(t *testing.T) {
	r, err := diag.ExplainToken(vecVerifier(t, unreadable{}, vecAt), []byte(vecTokens[0].token), vecAt)
	if !errors.Is(err, verify.ErrStore) {
		t.Fatalf("error %v, want ErrStore", err)
	}
	if r.Reason != "UNDECIDED" || r.Status != diag.Fail || r.Cert != nil || !strings.HasPrefix(r.Advice, "the gate cannot decide") {
		t.Errorf("report %+v", r)
	}
	if c := r.Checks[2]; c.Outcome != "NOT RUN" || !strings.Contains(c.Detail, "input/output error") {
		t.Errorf("check 3: %+v", c)
	}
}

// qrencodePNG writes text as a QR PNG with Debian's qrencode, as a phone's
// screenshot would hold it.
func qrencodePNG(t *testing.T, text string) string {
	t.Helper()
	bin, err := exec.LookPath("qrencode")
	if err != nil {
		if os.Getenv("GATEAGENT_REQUIRE_QRENCODE") != "" {
			t.Fatal("qrencode not on PATH and GATEAGENT_REQUIRE_QRENCODE is set: apt-get install qrencode")
		}
		t.Skip("qrencode not on PATH (apt install qrencode); skipping the images it makes")
	}
	path := filepath.Join(t.TempDir(), "qrencode.png")
	if out, err := exec.Command(bin, "-l", "M", "-o", path, text).CombinedOutput(); err != nil {
		t.Fatalf("qrencode: %v\n%s", err, out)
	}
	return path
}

// gozxingPNG writes text as a QR PNG with the gate's own encoder.
func gozxingPNG(t *testing.T, text string) string {
	t.Helper()
	m, err := qrcode.Encode(text)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "gozxing.png")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := m.PNG(f, 4); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExplainImage: a code read from a PNG, made by qrencode or by
// gozxing, gets the report its text gets, the space vector's space intact.
func TestExplainImage(t *testing.T) {
	v := vecVerifier(t, bothCerts(t), vecAt)
	for _, mk := range []struct {
		name string
		png  func(*testing.T, string) string
	}{{"qrencode", qrencodePNG}, {"gozxing", gozxingPNG}} {
		for _, text := range []string{vecTokens[0].token, vecSpaceToken} {
			t.Run(mk.name+"/"+text[:8], func(t *testing.T) {
				path := mk.png(t, text)
				got, err := diag.ExplainImage(v, path, vecAt)
				if err != nil {
					t.Fatal(err)
				}
				want, err := diag.ExplainToken(v, []byte(text), vecAt)
				if err != nil {
					t.Fatal(err)
				}
				want.Source = filepath.Base(path)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("image report\n%+v\ntext report\n%+v", got, want)
				}
				if got.Reason != "OK" {
					t.Errorf("%s: %s: %+v", path, got.Reason, got.Checks[0])
				}
			})
		}
	}
}

func TestExplainImageErrors(t *testing.T) {
	v := vecVerifier(t, bothCerts(t), vecAt)
	dir := t.TempDir()

	blank := filepath.Join(dir, "blank.png")
	img := image.NewGray(image.Rect(0, 0, 320, 240))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(blank, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := diag.ExplainImage(v, blank, vecAt)
	want := "no QR code found in " + blank + ": photograph the whole code flat and in focus, or type the token with diag token"
	if err == nil || err.Error() != want || !errors.Is(err, qrcode.ErrNotFound) {
		t.Errorf("blank PNG: error %v\nwant %s", err, want)
	}

	text := filepath.Join(dir, "token.txt")
	if err := os.WriteFile(text, []byte(vecTokens[0].token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := diag.ExplainImage(v, text, vecAt); err == nil || !strings.Contains(err.Error(), "not a PNG, JPEG or GIF image") || !strings.Contains(err.Error(), text) {
		t.Errorf("text file: error %v", err)
	}

	if _, err := diag.ExplainImage(v, filepath.Join(dir, "missing.png"), vecAt); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v", err)
	}
}

// multiFault is a report on a code both stale and revoked: check 5
// decides, check 7 fails too.
func multiFault(t *testing.T) (diag.TokenReport, string) {
	t.Helper()
	c := vecCert(t, vecCertID, vecKey, vecAt)
	c.Revoked = true
	text := verify.NewToken(&c.Key, c.ID, verify.StepOf(vecAt)-3).String()
	r, err := diag.ExplainToken(vecVerifier(t, memstore.New(c), vecAt), []byte(text), vecAt)
	if err != nil {
		t.Fatal(err)
	}
	return r, text
}

// noSecrets fails if out holds the key or the token's text.
func noSecrets(t *testing.T, out, text string) {
	t.Helper()
	for _, secret := range []string{vecKey, vecSpaceKey, text, text[4:]} {
		if strings.Contains(out, secret) {
			t.Errorf("output holds %q:\n%s", secret, out)
		}
	}
}

func TestTokenReportText(t *testing.T) {
	r, text := multiFault(t)
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, name := range []string{"format", "clock", "known cert", "tag", "not stale",
		"not from future", "not revoked", "valid yet", "not expired", "no passback"} {
		if !strings.Contains(out, " "+name+" ") {
			t.Errorf("no check %q in\n%s", name, out)
		}
	}
	var decisive []string
	for line := range strings.Lines(out) {
		if strings.HasPrefix(line, " > ") {
			decisive = append(decisive, line)
		}
	}
	if len(decisive) != 1 || !strings.HasPrefix(decisive[0], " >  5 not stale        FAIL    step 27370692 is 3 minutes behind the gate") {
		t.Errorf("decisive lines %q in\n%s", decisive, out)
	}
	for _, want := range []string{
		"cert ID   " + vecCertID + "\n",
		"    7 not revoked      FAIL    the certificate is revoked\n",
		"result: FAIL CODE_STALE — ask the passenger to refresh the code\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in\n%s", want, out)
		}
	}
	noSecrets(t, out, text)

	// A malformed text: no cert, nothing looked up.
	v := vecVerifier(t, bothCerts(t), vecAt)
	r, err := diag.ExplainToken(v, []byte("TR1:hello"), vecAt)
	if err != nil {
		t.Fatal(err)
	}
	b.Reset()
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if out := b.String(); !strings.Contains(out, "cert ID   - (not a TR1 token)") || !strings.Contains(out, "cache     not looked up") ||
		!strings.Contains(out, " >  1 format") || !strings.Contains(out, "result: FAIL MALFORMED") {
		t.Errorf("malformed:\n%s", out)
	}
}

func TestTokenReportJSON(t *testing.T) {
	r, text := multiFault(t)
	var b bytes.Buffer
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	noSecrets(t, b.String(), text)
	var back diag.TokenReport
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip\n%+v\nwant\n%+v", back, r)
	}
	var fields map[string]any
	if err := json.Unmarshal(b.Bytes(), &fields); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"source", "at", "cert_id", "step", "step_time", "now_step", "step_offset", "cert", "checks", "reason", "status", "advice"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("no %q in %s", k, b.String())
		}
	}
	if fields["status"] != "FAIL" || fields["reason"] != "CODE_STALE" || fields["step_offset"] != -3.0 {
		t.Errorf("status %v reason %v offset %v", fields["status"], fields["reason"], fields["step_offset"])
	}
	cert, _ := fields["cert"].(map[string]any)
	if cert["found"] != true || cert["revoked"] != true || cert["not_after"] != "2022-01-16T08:15:30Z" {
		t.Errorf("cert %v", cert)
	}
	if _, ok := cert["last_pass"]; ok {
		t.Errorf("cert %v: last_pass without a passage", cert)
	}
	checks, _ := fields["checks"].([]any)
	if c, _ := checks[4].(map[string]any); len(checks) != 10 || c["outcome"] != "FAIL" || c["decisive"] != true || c["reason"] != "CODE_STALE" {
		t.Errorf("checks %v", checks)
	}
}
