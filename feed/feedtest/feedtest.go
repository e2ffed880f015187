// Package feedtest holds the test helpers of the key feed: deterministic
// issuer keys and the keyring that trusts them.
package feedtest

import (
	"bytes"
	"crypto/ed25519"
	"testing"

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
