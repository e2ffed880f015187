package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"

	"gateagent/feed"
)

// runKeygen creates the issuer's Ed25519 feed signing key and prints the
// trusted-key line that gates' configs take.
func runKeygen(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("keygen", "--key FILE [--id KEYID]", stderr)
	path := fs.String("key", "", "the key `FILE` to create (mode 0600; never overwritten)")
	id := fs.String("id", "", "the key `ID` gates know the key by (default issuer- and 8 hex digits of the public key's SHA-256)")
	if pos, err := parseArgs(fs, args); err != nil {
		return 2
	} else if len(pos) != 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *path == "" {
		return usageErr(fs, "--key is required")
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return failed(stderr, fmt.Errorf("generate key: %w", err))
	}
	if *id == "" {
		sum := sha256.Sum256(pub)
		*id = "issuer-" + hex.EncodeToString(sum[:4])
	}
	s, err := feed.NewSigner(*id, priv)
	if err != nil {
		return usageErr(fs, "--id: %v", err)
	}
	if err := writeKey(*path, s); err != nil {
		return failed(stderr, err)
	}
	fmt.Fprintf(stdout, "wrote signing key %s (key ID %s): keep it secret, whoever holds it can sign the key feed\n", *path, s.KeyID)
	fmt.Fprintln(stdout, "trusted key for gate configs:")
	fmt.Fprintln(stdout, s.Public())
	return 0
}
