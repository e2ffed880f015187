package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"

	"gateagent/feed"
	"gateagent/internal/cli"
)

// keygenCmd creates the issuer's Ed25519 feed signing key and prints the
// trusted-key line that gates' configs take.
func keygenCmd() *cli.Command {
	var path, id string
	return &cli.Command{
		Name:    "keygen",
		Summary: "create the feed signing key",
		Help:    "Creates the issuer's Ed25519 feed signing key and prints the trusted-key line gates' configs take (feed.trusted_keys).",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&path, "key", "", "the key `FILE` to create (mode 0600; never overwritten; required)")
			fs.StringVar(&id, "id", "", "the key `ID` gates know the key by (default issuer- and 8 hex digits of the public key's SHA-256)")
		},
		Run: func(c *cli.Context) int {
			if path == "" {
				return c.Usagef("--key is required")
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return c.Fail(fmt.Errorf("generate key: %w", err))
			}
			if id == "" {
				sum := sha256.Sum256(pub)
				id = "issuer-" + hex.EncodeToString(sum[:4])
			}
			s, err := feed.NewSigner(id, priv)
			if err != nil {
				return c.Usagef("--id: %v", err)
			}
			if err := writeKey(path, s); err != nil {
				return c.Fail(err)
			}
			fmt.Fprintf(c.Stdout, "wrote signing key %s (key ID %s): keep it secret, whoever holds it can sign the key feed\n", path, s.KeyID)
			fmt.Fprintln(c.Stdout, "trusted key for gate configs:")
			fmt.Fprintln(c.Stdout, s.Public())
			return 0
		},
	}
}
