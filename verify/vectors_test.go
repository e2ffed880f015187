package verify_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"gateagent/verify"
	"gateagent/verify/memstore"
)

// The vectors of tr1-token.md, copied letter for letter.
const (
	specKey    = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	specCertID = "00112233445566778899aabbccddeeff"
	spaceKey   = "fb26de5bd8d2479f8dff2c28ddb73a4617bd9d89d91800a592c056bff6f6cdb2"
	spaceCert  = "2b5987515f55a2d05b10288d1e53a0c5"
	spaceToken = "TR1:RL5 4HF2CAQK2NBV55N$3REKC90I$K7BSJVGIL40KVA*LJY6:N4:KP"
	spaceStep  = 27370695
)

var specVectors = []struct {
	step  uint32
	tag   string
	token string
}{
	{27370695, "06bad06263f6614b31a9cecd4992f9d3", "TR1:H00PE4XS8-.C4CHCQLK+PS9UC90I$KC%0LFQUSCMDCNC6L6QOD9AQV"},
	{27370696, "6e8e1f2cd415027a12389a7bc5899ff5", "TR1:H00PE4XS8-.C4CHCQLK+PS9UC90J$K./DF.3N Q4E0TD2$NJY/O:9K"},
	{0, "69da2b6a75db49e93662043c6532907c", "TR1:H00PE4XS8-.C4CHCQLK+PS9U0000008HD:L5L+ELF9H*64O0VZC/BI"},
	{4294967295, "d498505041b47d4cfed08149c0fb8a01", "TR1:H00PE4XS8-.C4CHCQLK+PS9UFGWFGWJ*Q+6AZD8 $FR9WMFG%HO4KH"},
}

func mustKey(t testing.TB, s string) verify.Key {
	t.Helper()
	k, err := verify.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustID(t testing.TB, s string) verify.CertID {
	t.Helper()
	id, err := verify.ParseCertID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func TestSpecVectorsEncode(t *testing.T) {
	key, id := mustKey(t, specKey), mustID(t, specCertID)
	for _, v := range specVectors {
		tok := verify.NewToken(&key, id, v.step)
		if got := hex.EncodeToString(tok.Tag[:]); got != v.tag {
			t.Errorf("step %d: tag %s, want %s", v.step, got, v.tag)
		}
		if got := tok.String(); got != v.token {
			t.Errorf("step %d: token %q, want %q", v.step, got, v.token)
		}
		if len(v.token) != verify.TokenLen {
			t.Errorf("step %d: vector is %d characters, TokenLen is %d", v.step, len(v.token), verify.TokenLen)
		}
	}
	key2, id2 := mustKey(t, spaceKey), mustID(t, spaceCert)
	if got := verify.NewToken(&key2, id2, spaceStep).String(); got != spaceToken {
		t.Errorf("space vector: %q, want %q", got, spaceToken)
	}
}

func TestSpecVectorsParse(t *testing.T) {
	id := mustID(t, specCertID)
	for _, v := range specVectors {
		tok, err := verify.ParseToken([]byte(v.token))
		if err != nil {
			t.Fatalf("ParseToken(%q): %v", v.token, err)
		}
		if tok.CertID != id || tok.Step != v.step || hex.EncodeToString(tok.Tag[:]) != v.tag {
			t.Errorf("ParseToken(%q) = %s/%d/%x, want %s/%d/%s", v.token, tok.CertID, tok.Step, tok.Tag, id, v.step, v.tag)
		}
	}
	tok, err := verify.ParseToken([]byte(spaceToken))
	if err != nil || tok.CertID != mustID(t, spaceCert) || tok.Step != spaceStep {
		t.Errorf("ParseToken(space vector) = %+v, %v", tok, err)
	}
}

func TestSpecStepTime(t *testing.T) {
	// "Step 27370695 is the minute starting at 2022-01-15T10:15:00Z (unix 1642241700)."
	start := time.Date(2022, 1, 15, 10, 15, 0, 0, time.UTC)
	if start.Unix() != 1642241700 {
		t.Fatalf("unix %d", start.Unix())
	}
	for _, at := range []time.Time{start, start.Add(59*time.Second + 999*time.Millisecond)} {
		if s := verify.StepOf(at); s != 27370695 {
			t.Errorf("StepOf(%v) = %d, want 27370695", at, s)
		}
	}
	if s := verify.StepOf(start.Add(-time.Nanosecond)); s != 27370694 {
		t.Errorf("StepOf(just before) = %d", s)
	}
	if !verify.StepStart(27370695).Equal(start) {
		t.Errorf("StepStart = %v", verify.StepStart(27370695))
	}
}

// specMalformed lists the texts the spec refuses as MALFORMED.
func specMalformed() map[string]string {
	v := specVectors[0].token
	m := map[string]string{
		"lower case":             strings.ToLower(v),
		"TR2 prefix":             "TR2:" + v[4:],
		"one character more":     v + "0",
		"one character less":     v[:len(v)-1],
		"last character #":       v[:len(v)-1] + "#",
		"GGW in the first group": "TR1:GGW" + v[7:],
		"GGW in the last group":  v[:len(v)-3] + "GGW",
		"GGW in the middle":      v[:4+27] + "GGW" + v[4+30:],
		"empty":                  "",
		"prefix only":            "TR1:",
		"space-padded prefix":    " TR1:" + v[4:len(v)-1],
		"NUL byte":               v[:20] + "\x00" + v[21:],
		"trailing CR kept":       v[:len(v)-1] + "\r",
		"UTF-8 in body":          v[:len(v)-2] + "é",
	}
	return m
}

func TestSpecMalformed(t *testing.T) {
	key, id := mustKey(t, specKey), mustID(t, specCertID)
	v := newTestVerifier(t, memstore.New(verify.Cert{ID: id, Key: key, NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)}), verify.DefaultPolicy(verify.Entry))
	for name, text := range specMalformed() {
		if _, err := verify.ParseToken([]byte(text)); !errors.Is(err, verify.ErrMalformed) {
			t.Errorf("%s: ParseToken(%q) error %v, want ErrMalformed", name, text, err)
		}
		d, err := v.VerifyAt([]byte(text), vecNow)
		if err != nil || d.Reason != verify.Malformed {
			t.Errorf("%s: VerifyAt(%q) = %v, %v; want MALFORMED", name, text, d.Reason, err)
		}
		if d.Detail == "" {
			t.Errorf("%s: MALFORMED without a detail", name)
		}
	}
}

// TestSpecVectorsAccepted runs every accepted vector through the whole
// verifier at a time inside its step, with a certificate valid then.
func TestSpecVectorsAccepted(t *testing.T) {
	key, id := mustKey(t, specKey), mustID(t, specCertID)
	for _, vec := range specVectors {
		now := verify.StepStart(vec.step).Add(30 * time.Second)
		store := memstore.New(verify.Cert{ID: id, Key: key, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
		v, err := verify.New(verify.Config{
			Store:        store,
			Clock:        verify.ClockFunc(func() time.Time { return now }),
			Policy:       verify.DefaultPolicy(verify.Entry),
			TrustedAfter: time.Unix(0, 0), // step 0 lies in 1970
		})
		if err != nil {
			t.Fatal(err)
		}
		d, err := v.Verify([]byte(vec.token))
		if err != nil || d.Reason != verify.OK || d.StepOffset != 0 || d.CertID != id || d.Step != vec.step {
			t.Errorf("step %d: %+v, %v; want OK at offset 0", vec.step, d, err)
		}
	}
	key2, id2 := mustKey(t, spaceKey), mustID(t, spaceCert)
	v := newTestVerifier(t, memstore.New(verify.Cert{ID: id2, Key: key2, NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)}), verify.DefaultPolicy(verify.Entry))
	if d, err := v.VerifyAt([]byte(spaceToken), vecNow); err != nil || d.Reason != verify.OK {
		t.Errorf("space vector: %v, %v; want OK", d.Reason, err)
	}
}

func TestSpecBadTagWithOtherKey(t *testing.T) {
	id := mustID(t, specCertID)
	for _, other := range []string{spaceKey, strings.Repeat("00", 32), "010102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"} {
		v := newTestVerifier(t, memstore.New(verify.Cert{ID: id, Key: mustKey(t, other), NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)}), verify.DefaultPolicy(verify.Entry))
		d, err := v.VerifyAt([]byte(specVectors[0].token), vecNow)
		if err != nil || d.Reason != verify.BadTag {
			t.Errorf("key %s…: %v, %v; want BAD_TAG", other[:8], d.Reason, err)
		}
		if d.Authentic() || d.StepOffset != 0 {
			t.Errorf("key %s…: a BAD_TAG decision claims authenticity (offset %d)", other[:8], d.StepOffset)
		}
	}
}

// TestComputeTagIsHMAC holds ComputeTag to crypto/hmac.
func TestComputeTagIsHMAC(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for i := range 2000 {
		var key verify.Key
		var id verify.CertID
		for j := range key {
			key[j] = byte(r.Uint32())
		}
		for j := range id {
			id[j] = byte(r.Uint32())
		}
		step := r.Uint32()
		if i == 0 {
			key, step = verify.Key{}, 0 // the all-zero edge
		}
		msg := append([]byte("TR1"), id[:]...)
		msg = binary.BigEndian.AppendUint32(msg, step)
		m := hmac.New(sha256.New, key[:])
		m.Write(msg)
		want := m.Sum(nil)[:verify.TagLen]
		if got := verify.ComputeTag(&key, &id, step); !bytes.Equal(got[:], want) {
			t.Fatalf("key %x id %s step %d: tag %x, crypto/hmac says %x", key[:], id, step, got, want)
		}
	}
}
