package main

import (
	"flag"
	"fmt"

	"gateagent/internal/cli"
)

// pubkeyCmd prints the trusted-key line of a key file again.
func pubkeyCmd() *cli.Command {
	var path string
	return &cli.Command{
		Name:    "pubkey",
		Summary: "print the trusted-key line for gate configs",
		Help:    "Prints the trusted-key line (ID:BASE64) of a signing key, for feed.trusted_keys in gate configs.",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&path, "key", "", "the key `FILE` written by `issuer keygen` (required)")
		},
		Run: func(c *cli.Context) int {
			if path == "" {
				return c.Usagef("--key is required")
			}
			s, err := loadKey(path)
			if err != nil {
				return c.Fail(err)
			}
			fmt.Fprintln(c.Stdout, s.Public())
			return 0
		},
	}
}
