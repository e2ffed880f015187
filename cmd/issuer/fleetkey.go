package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"strings"

	"gateagent/feed"
	"gateagent/internal/cli"
)

// fleetKeygenCmd creates a fleet key pair: the private part in a file for
// the gates (to be sealed there with systemd-creds), the public part
// printed for `issuer serve --fleet-key`.
func fleetKeygenCmd() *cli.Command {
	var out string
	return &cli.Command{
		Name:    "fleet-keygen",
		Summary: "create the gate fleet's key pair",
		Help: `Creates the gate fleet's X25519 key pair, to which the issuer seals the certificate keys of
its feed. The private key goes to the file (mode 0600, never overwritten): install it on every
gate as a systemd credential (docs/install.md: The keys), then delete this copy. The public key
line printed is what ` + "`issuer serve --fleet-key`" + ` takes: the issuer never holds the private part.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "the private key `FILE` to create (mode 0600; never overwritten; required)")
		},
		Run: func(c *cli.Context) int {
			if out == "" {
				return c.Usagef("--out is required")
			}
			k, err := feed.GenerateFleetKey()
			if err != nil {
				return c.Fail(err)
			}
			text, err := k.MarshalText()
			if err != nil {
				return c.Fail(err)
			}
			if err := writeSecret(out, text); err != nil {
				if errors.Is(err, fs.ErrExist) {
					return c.Fail(fmt.Errorf("%s already exists: refusing to overwrite a fleet key; choose another --out, or move the old file aside first", out))
				}
				return c.Fail(fmt.Errorf("write fleet key file: %w", err))
			}
			fmt.Fprintf(c.Stdout, "wrote fleet private key %s (%s): seal it on each gate with systemd-creds, then delete this copy; whoever holds it can open the feed's certificate keys\n", out, k.ID)
			fmt.Fprintln(c.Stdout, "fleet public key for issuer serve --fleet-key:")
			fmt.Fprintln(c.Stdout, k.Public())
			return 0
		},
	}
}

// fleetKeys is serve's repeatable --fleet-key.
type fleetKeys []feed.FleetPublic

func (f *fleetKeys) String() string {
	var s []string
	for _, k := range *f {
		s = append(s, k.String())
	}
	return strings.Join(s, ",")
}

func (f *fleetKeys) Set(v string) error {
	k, err := feed.ParseFleetPublic(v)
	if err != nil {
		return err
	}
	for _, o := range *f {
		if o.ID == k.ID {
			return fmt.Errorf("fleet key %s given twice", k.ID)
		}
	}
	*f = append(*f, k)
	return nil
}
