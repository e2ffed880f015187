package main

import (
	"fmt"
	"io"
)

// runPubkey prints the trusted-key line of a key file again.
func runPubkey(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("pubkey", "--key FILE", stderr)
	path := fs.String("key", "", "the key `FILE` written by `issuer keygen`")
	if pos, err := parseArgs(fs, args); err != nil {
		return 2
	} else if len(pos) != 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *path == "" {
		return usageErr(fs, "--key is required")
	}
	s, err := loadKey(*path)
	if err != nil {
		return failed(stderr, err)
	}
	fmt.Fprintln(stdout, s.Public())
	return 0
}
