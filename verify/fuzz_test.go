package verify_test

import (
	"bytes"
	"testing"
	"time"

	"gateagent/verify"
	"gateagent/verify/memstore"
)

// seedTokens are the spec's vectors, accepted and refused: the fuzzers'
// seed corpus.
func seedTokens() []string {
	s := []string{spaceToken}
	for _, v := range specVectors {
		s = append(s, v.token)
	}
	for _, m := range specMalformed() {
		s = append(s, m)
	}
	return s
}

// FuzzParseToken: any bytes give a token or ErrMalformed, never a panic;
// whatever parses re-encodes to exactly the same text (the encoding is
// canonical, so one token has one text).
func FuzzParseToken(f *testing.F) {
	for _, s := range seedTokens() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		tok, err := verify.ParseToken(text)
		if err != nil {
			return
		}
		if back := tok.String(); back != string(text) {
			t.Fatalf("ParseToken(%q) re-encodes to %q", text, back)
		}
	})
}

// FuzzVerify: the verifier, holding the spec's certificate, grants nothing
// but a token made with that certificate's key for a step inside the
// window. Any other input is refused with a reason, never a panic.
func FuzzVerify(f *testing.F) {
	for _, s := range seedTokens() {
		f.Add([]byte(s))
	}
	key, id := mustKey(f, specKey), mustID(f, specCertID)
	store := memstore.New(verify.Cert{ID: id, Key: key, NotBefore: vecNow.Add(-time.Hour), NotAfter: vecNow.Add(time.Hour)})
	v := newTestVerifier(f, store, verify.DefaultPolicy(verify.Entry))
	valid := map[string]bool{}
	for s := nowStep - 1; s <= nowStep+1; s++ {
		valid[verify.NewToken(&key, id, s).String()] = true
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		in := bytes.Clone(text)
		d, err := v.VerifyAt(text, vecNow)
		if err != nil {
			t.Fatalf("memstore cannot fail, got %v", err)
		}
		if !bytes.Equal(in, text) {
			t.Fatal("VerifyAt modified its input")
		}
		if d.Reason == verify.Undecided || !d.Reason.Valid() {
			t.Fatalf("reason %v", d.Reason)
		}
		if d.Granted() != valid[string(text)] {
			t.Fatalf("VerifyAt(%q) = %v", text, d.Reason)
		}
	})
}
