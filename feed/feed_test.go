package feed_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gateagent/feed"
	"gateagent/feed/feedtest"
	"gateagent/verify"
)

var (
	signer  = feedtest.Signer
	keyring = feedtest.Keyring
)

// sign signs d sealed to the default fleet key; open opens with it.
func sign(t testing.TB, s *feed.Signer, d *feed.Doc) []byte {
	t.Helper()
	b, err := s.Sign(d, feedtest.Publics(feedtest.FleetKey(t, feedtest.DefaultFleetSeed)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func open(t testing.TB, b []byte, kr feed.Keyring) (*feed.Doc, error) {
	t.Helper()
	return feed.Open(b, kr, feedtest.Fleet(t))
}

func cert(i byte) verify.Cert {
	nb := time.Date(2026, 11, 23, 8, 0, int(i), 0, time.UTC)
	c := verify.Cert{NotBefore: nb, NotAfter: nb.Add(24 * time.Hour), Revoked: i%3 == 0}
	c.ID[0], c.ID[15] = 0x10, i
	for j := range c.Key {
		c.Key[j] = i + byte(j)
	}
	return c
}

func logDoc() *feed.Doc {
	d := &feed.Doc{
		Kind: feed.KindLog, Epoch: 0xfeed, IssuerTime: time.Date(2026, 11, 23, 9, 0, 0, 123, time.UTC),
		MaxAge: 30 * time.Minute, PageSize: 16, From: 32, Next: 35,
		Upserts: []verify.Cert{cert(1), cert(3)}, Revokes: []verify.CertID{cert(9).ID},
	}
	d.Upserts[1].Revoked = false
	return d
}

func TestRoundTrip(t *testing.T) {
	s := signer(t, "issuer-2026a", 1)
	snap := &feed.Doc{Kind: feed.KindSnapshot, Final: true, Epoch: 7, IssuerTime: time.Unix(1_800_000_000, 0).UTC(),
		MaxAge: time.Hour, PageSize: 4, Snapshot: 8, Upserts: []verify.Cert{cert(2), cert(3), cert(4)}}
	snap.Upserts[1].Revoked = true
	snap.After = cert(1).ID
	head := &feed.Doc{Kind: feed.KindHead, Epoch: 7, IssuerTime: time.Unix(1_800_000_000, 5).UTC(), PageSize: 4, From: 9, Next: 9, Snapshot: 8}
	copy(head.Nonce[:], "0123456789abcdef")
	for _, d := range []*feed.Doc{logDoc(), snap, head} {
		b := sign(t, s, d)
		got, err := open(t, b, keyring(t, s))
		if err != nil {
			t.Fatalf("%v: %v", d.Kind, err)
		}
		d.KeyID = s.KeyID
		if !reflect.DeepEqual(got, d) {
			t.Errorf("%v: round trip\n got %+v\nwant %+v", d.Kind, got, d)
		}
	}
}

func TestSizeIsFixedWidth(t *testing.T) {
	s := signer(t, "k", 1)
	b := sign(t, s, logDoc())
	if want := 7 + 1 + 89 + feed.WrapLen + 2*feed.UpsertLen + feed.RevokeLen + feed.SigLen; len(b) != want {
		t.Errorf("document is %d bytes, want %d", len(b), want)
	}
}

// Every single-byte change is refused: the signature covers every byte,
// and the length and key ID are checked before it.
func TestEveryTamperedByteRefused(t *testing.T) {
	s := signer(t, "k1", 1)
	kr := keyring(t, s)
	b := sign(t, s, logDoc())
	for i := range b {
		for _, x := range []byte{0x01, 0x80, 0xff} {
			c := bytes.Clone(b)
			c[i] ^= x
			d, err := open(t, c, kr)
			if err == nil || d != nil {
				t.Fatalf("byte %d ^ %#x accepted", i, x)
			}
			if !errors.Is(err, feed.ErrSignature) && !errors.Is(err, feed.ErrFormat) && !errors.Is(err, feed.ErrUnknownKey) {
				t.Fatalf("byte %d: unexpected error %v", i, err)
			}
		}
	}
	for n := range len(b) {
		if _, err := open(t, b[:n], kr); err == nil {
			t.Fatalf("truncated to %d bytes accepted", n)
		}
	}
	if _, err := open(t, append(bytes.Clone(b), 0), kr); !errors.Is(err, feed.ErrFormat) {
		t.Fatalf("padded document: %v, want ErrFormat", err)
	}
}

func TestKeys(t *testing.T) {
	old, next, rogue := signer(t, "2026a", 1), signer(t, "2026b", 2), signer(t, "2026a", 3)
	kr := keyring(t, old, next)
	for _, s := range []*feed.Signer{old, next} {
		if _, err := open(t, sign(t, s, logDoc()), kr); err != nil {
			t.Errorf("key %s during rotation: %v", s.KeyID, err)
		}
	}
	if _, err := open(t, sign(t, signer(t, "2027a", 4), logDoc()), kr); !errors.Is(err, feed.ErrUnknownKey) {
		t.Errorf("unknown key ID: %v, want ErrUnknownKey", err)
	}
	// a trusted ID, another key
	if _, err := open(t, sign(t, rogue, logDoc()), kr); !errors.Is(err, feed.ErrSignature) {
		t.Errorf("known key ID, other key: %v, want ErrSignature", err)
	}
	if _, err := feed.NewKeyring(old.Public(), old.Public()); err == nil {
		t.Error("a key ID listed twice was accepted")
	}
}

func TestTrustedKeyText(t *testing.T) {
	s := signer(t, "station-2026.a_1", 5)
	k, err := feed.ParseTrustedKey(s.Public().String())
	if err != nil || k.ID != s.KeyID || !k.Key.Equal(s.Key.Public()) {
		t.Fatalf("ParseTrustedKey(%s) = %v, %v", s.Public(), k, err)
	}
	for _, bad := range []string{"", "nocolon", ":AAAA", "id:not base64", "id:AAAA", "bad id:" + strings.Repeat("A", 44), strings.Repeat("x", 33) + ":AAAA"} {
		if _, err := feed.ParseTrustedKey(bad); err == nil {
			t.Errorf("ParseTrustedKey(%q) accepted", bad)
		}
	}
}

// Documents a trusted issuer signed but that break the format's rules are
// refused all the same.
func TestSignedButMalformed(t *testing.T) {
	s := signer(t, "k", 1)
	kr := keyring(t, s)
	cases := map[string]func(*feed.Doc){
		"log count":        func(d *feed.Doc) { d.Next = d.From + 2 },
		"log backwards":    func(d *feed.Doc) { d.From, d.Next = 40, 37 },
		"snapshot revokes": func(d *feed.Doc) { d.Kind = feed.KindSnapshot },
		"snapshot order": func(d *feed.Doc) {
			d.Kind, d.Revokes = feed.KindSnapshot, nil
			d.Upserts[0], d.Upserts[1] = d.Upserts[1], d.Upserts[0]
		},
		"snapshot not after": func(d *feed.Doc) { d.Kind, d.Revokes, d.After = feed.KindSnapshot, nil, d.Upserts[1].ID },
		"head with records":  func(d *feed.Doc) { d.Kind = feed.KindHead },
		"page size 0":        func(d *feed.Doc) { d.PageSize = 0 },
	}
	for name, mod := range cases {
		d := logDoc()
		mod(d)
		if _, err := open(t, sign(t, s, d), kr); !errors.Is(err, feed.ErrFormat) {
			t.Errorf("%s: %v, want ErrFormat", name, err)
		}
	}
}
