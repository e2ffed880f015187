// Package feedtest holds the test helpers of the key feed: deterministic
// issuer keys and the keyring that trusts them, deterministic fleet keys,
// and the encoder of the old format 1.
package feedtest

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"testing"
	"time"

	"gateagent/feed"
)

// Signer returns a signer whose key is derived from seed: the same seed,
// the same key, in every run.
func Signer(t testing.TB, id string, seed byte) *feed.Signer {
	t.Helper()
	s, err := feed.NewSigner(id, ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize)))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Keyring returns the keyring that trusts the public keys of ss.
func Keyring(t testing.TB, ss ...*feed.Signer) feed.Keyring {
	t.Helper()
	var keys []feed.TrustedKey
	for _, s := range ss {
		keys = append(keys, s.Public())
	}
	kr, err := feed.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

// FleetKey returns a fleet key pair derived from seed: the same seed, the
// same key, in every run.
func FleetKey(t testing.TB, seed byte) *feed.FleetKey {
	t.Helper()
	k, err := feed.DeriveFleetKey(bytes.Repeat([]byte{seed}, 32))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// DefaultFleetSeed is the seed of the fleet key issuertest seals to unless
// told otherwise, and that Fleet holds without arguments.
const DefaultFleetSeed = 1

// Fleet returns the fleet (a gate's private keys) holding keys, or, with
// none given, the default fleet key issuertest seals to.
func Fleet(t testing.TB, keys ...*feed.FleetKey) *feed.Fleet {
	t.Helper()
	if len(keys) == 0 {
		keys = []*feed.FleetKey{FleetKey(t, DefaultFleetSeed)}
	}
	f, err := feed.NewFleet(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// Publics returns the public parts of keys, as an issuer holds them.
func Publics(keys ...*feed.FleetKey) []feed.FleetPublic {
	var out []feed.FleetPublic
	for _, k := range keys {
		out = append(out, k.Public())
	}
	return out
}

// SignV1 encodes d in format 1, as issuers before sealed keys did: the
// certificate keys in plaintext. For tests of the gate meeting an old
// issuer, and for the unsealed control run of the key search.
func SignV1(s *feed.Signer, d *feed.Doc) []byte {
	b := []byte("GAF1")
	var flags byte
	if d.Final {
		flags = 1
	}
	b = append(b, byte(d.Kind), flags, byte(len(s.KeyID)))
	b = append(b, s.KeyID...)
	b = binary.BigEndian.AppendUint64(b, d.Epoch)
	b = binary.BigEndian.AppendUint64(b, uint64(d.IssuerTime.UnixNano()))
	b = binary.BigEndian.AppendUint32(b, uint32(d.MaxAge/time.Second))
	b = binary.BigEndian.AppendUint32(b, d.PageSize)
	b = binary.BigEndian.AppendUint64(b, d.From)
	b = binary.BigEndian.AppendUint64(b, d.Next)
	b = binary.BigEndian.AppendUint64(b, d.Snapshot)
	b = append(b, d.After[:]...)
	b = append(b, d.Nonce[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(d.Upserts)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(d.Revokes)))
	for _, c := range d.Upserts {
		b = append(b, c.ID[:]...)
		b = append(b, c.Key[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(c.NotBefore.Unix()))
		b = binary.BigEndian.AppendUint64(b, uint64(c.NotAfter.Unix()))
		st := byte(feed.StatusValid)
		if c.Revoked {
			st = feed.StatusRevoked
		}
		b = append(b, st)
	}
	for _, id := range d.Revokes {
		b = append(b, id[:]...)
	}
	return append(b, ed25519.Sign(s.Key, b)...)
}
