package feed_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	"gateagent/feed"
	"gateagent/feed/feedtest"
)

// A page of format 1 (keys in plaintext) is refused as such, even signed
// by a trusted key.
func TestFormat1Refused(t *testing.T) {
	s := signer(t, "k", 1)
	d, err := open(t, feedtest.SignV1(s, logDoc()), keyring(t, s))
	if d != nil || !errors.Is(err, feed.ErrVersion) {
		t.Fatalf("format 1 page: %v, want ErrVersion", err)
	}
}

// Every certificate key of a page is sealed: none of them appears in the
// page's bytes, raw or in any of its encodings the search below tries.
func TestPageHoldsNoKey(t *testing.T) {
	s := signer(t, "k", 1)
	d := logDoc()
	b := sign(t, s, d)
	for _, c := range d.Upserts {
		if bytes.Contains(b, c.Key[:]) {
			t.Fatalf("cert %s: its key is in the page in plaintext", c.ID)
		}
	}
	if !bytes.Contains(feedtest.SignV1(s, d), d.Upserts[0].Key[:]) {
		t.Fatal("the format 1 control holds no key: the check above proves nothing")
	}
}

// The fleet key decides who can open a page: a gate holding none of the
// keys a page is sealed to is told which IDs it holds and which it would
// need; during a rotation a page sealed to both opens with either.
func TestFleetKeys(t *testing.T) {
	s := signer(t, "k", 1)
	kr := keyring(t, s)
	a, b, other := feedtest.FleetKey(t, 10), feedtest.FleetKey(t, 11), feedtest.FleetKey(t, 12)
	both, err := s.Sign(logDoc(), feedtest.Publics(a, b))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []*feed.FleetKey{a, b} {
		d, err := feed.Open(both, kr, feedtest.Fleet(t, k))
		if err != nil || d.Upserts[0].Key != logDoc().Upserts[0].Key {
			t.Errorf("page sealed to %s and %s, gate holds %s: %v", a.ID, b.ID, k.ID, err)
		}
	}
	onlyA, err := s.Sign(logDoc(), feedtest.Publics(a))
	if err != nil {
		t.Fatal(err)
	}
	var fe *feed.FleetKeyError
	d, err := feed.Open(onlyA, kr, feedtest.Fleet(t, other))
	if d != nil || !errors.As(err, &fe) || !errors.Is(err, feed.ErrFleetKey) {
		t.Fatalf("wrong fleet key: %v, want a *FleetKeyError", err)
	}
	if msg := err.Error(); !strings.Contains(msg, a.ID.String()) || !strings.Contains(msg, other.ID.String()) {
		t.Errorf("error %q does not name the page's key %s and the gate's %s", msg, a.ID, other.ID)
	}
	if _, err := feed.Open(onlyA, kr, nil); !errors.Is(err, feed.ErrFleetKey) {
		t.Errorf("no fleet key at all: %v, want ErrFleetKey", err)
	}
	// A head holds no key: it opens without a fleet key (diag's probe).
	head := &feed.Doc{Kind: feed.KindHead, PageSize: 1}
	hb, err := s.Sign(head, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := feed.Open(hb, kr, nil); err != nil {
		t.Errorf("head without a fleet key: %v", err)
	}
	if _, err := s.Sign(logDoc(), nil); err == nil {
		t.Error("a page with keys signed without a fleet key to seal them to")
	}
	if _, err := s.Sign(logDoc(), feedtest.Publics(a, a)); err == nil {
		t.Error("a page sealed twice to one fleet key")
	}
}

// resign re-signs a page the test altered, as a compromised or buggy
// issuer would: the signature holds, and only the sealing can refuse it.
func resign(s *feed.Signer, b []byte) []byte {
	body := bytes.Clone(b[:len(b)-feed.SigLen])
	return append(body, ed25519.Sign(s.Key, body)...)
}

// Offsets in the page logDoc makes with a key ID of one byte and one fleet
// key: the wrap, then the upserts.
const (
	wrapAt   = 7 + 1 + 89
	upsertAt = wrapAt + feed.WrapLen
	sealedAt = 16 + 8 + 8 + 1 // within an upsert
)

// Sealed keys that were tampered with, moved to another certificate, or a
// wrap that names an unknown fleet key: each refused with its own error,
// though the page is validly signed.
func TestSealedTampering(t *testing.T) {
	s := signer(t, "k", 1)
	kr := keyring(t, s)
	good := sign(t, s, logDoc())
	if _, err := open(t, good, kr); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		mod  func(b []byte)
		want error
		says string
	}{
		{"ciphertext byte", func(b []byte) { b[upsertAt+sealedAt+5] ^= 1 }, feed.ErrSealed, logDoc().Upserts[0].ID.String()},
		{"tag byte", func(b []byte) { b[upsertAt+feed.UpsertLen-1] ^= 0x80 }, feed.ErrSealed, logDoc().Upserts[0].ID.String()},
		{"key moved to another cert", func(b []byte) {
			// Swap the two upserts' sealed keys: each now sits under the
			// other's cert ID (and index).
			x := b[upsertAt+sealedAt : upsertAt+feed.UpsertLen]
			y := b[upsertAt+feed.UpsertLen+sealedAt : upsertAt+2*feed.UpsertLen]
			tmp := bytes.Clone(x)
			copy(x, y)
			copy(y, tmp)
		}, feed.ErrSealed, "is not sealed for this cert ID"},
		{"cert ID changed", func(b []byte) { b[upsertAt+3] ^= 1 }, feed.ErrSealed, "is not sealed for this cert ID"},
		{"data key wrap", func(b []byte) { b[wrapAt+feed.FleetKeyIDLen+40] ^= 1 }, feed.ErrSealed, "data key"},
		{"encapsulated key", func(b []byte) { b[wrapAt+feed.FleetKeyIDLen+3] ^= 1 }, feed.ErrSealed, "data key"},
		{"unknown fleet key ID", func(b []byte) { b[wrapAt] ^= 1 }, feed.ErrFleetKey, feedtest.FleetKey(t, feedtest.DefaultFleetSeed).ID.String()},
	}
	for _, c := range cases {
		b := bytes.Clone(good)
		c.mod(b)
		d, err := open(t, resign(s, b), kr)
		if d != nil || !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: error %q does not say %q", c.name, err, c.says)
		}
	}
}

func TestFleetKeyText(t *testing.T) {
	k := feedtest.FleetKey(t, 7)
	p, err := feed.ParseFleetPublic(k.Public().String())
	if err != nil || p.ID != k.ID || !bytes.Equal(p.Key.Bytes(), k.Public().Key.Bytes()) {
		t.Fatalf("ParseFleetPublic(%s) = %v, %v", k.Public(), p, err)
	}
	line := k.Public().String()
	other := feedtest.FleetKey(t, 8).Public().String()
	for _, bad := range []string{"", "fleet-00:AAAA", line[:len("fleet-")+16] + ":not base64",
		line[:len("fleet-")+16] + other[len("fleet-")+16:], // another key's bytes under this ID
		"x" + line} {
		if _, err := feed.ParseFleetPublic(bad); !errors.Is(err, feed.ErrFleetKeyText) {
			t.Errorf("ParseFleetPublic(%q): %v, want ErrFleetKeyText", bad, err)
		}
	}
	text, err := k.MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	back, err := feed.ParseFleetKey(text)
	if err != nil || back.ID != k.ID {
		t.Fatalf("ParseFleetKey: %v, %v", back, err)
	}
	k8, _ := feedtest.FleetKey(t, 8).MarshalText()
	lines := strings.Split(string(text), "\n")
	other8 := strings.Split(string(k8), "\n")
	for name, bad := range map[string]string{
		"empty":        "",
		"header":       "gateagent-issuer-key v1\n" + lines[1] + "\n",
		"third line":   string(text) + "x\n",
		"id mismatch":  lines[0] + "\n" + strings.Fields(lines[1])[0] + " " + strings.Fields(other8[1])[1] + "\n",
		"not base64":   lines[0] + "\n" + strings.Fields(lines[1])[0] + " ***\n",
		"short key":    lines[0] + "\n" + strings.Fields(lines[1])[0] + " AAAA\n",
		"no separator": lines[0] + "\n" + strings.Fields(lines[1])[0] + "\n",
	} {
		if _, err := feed.ParseFleetKey([]byte(bad)); !errors.Is(err, feed.ErrFleetKeyText) {
			t.Errorf("%s: %v, want ErrFleetKeyText", name, err)
		}
	}
	if _, err := feed.NewFleet(k, k); err == nil {
		t.Error("a fleet with one key twice")
	}
}
