// Command gatedemo walks through what a station sees, on one machine with
// nothing but this repository: the reference issuer in-process on
// loopback, a passenger's certificate, and a gate on simulated hardware
// with its scanner on a pseudo-terminal. It is the README's first command.
//
// It is a command of its own so that the binary installed on gates,
// gateagent, carries no issuer: nothing on a gate can issue a certificate
// or knows an identity number.
package main

import (
	"context"
	"flag"
	"io"
	"os"
	"os/signal"
	"syscall"

	"gateagent/demo"
	"gateagent/internal/cli"
	"gateagent/internal/version"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is gatedemo with its arguments; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	var o demo.Options
	cmd := &cli.Command{
		Name: "gatedemo",
		Help: "Runs the reference issuer in-process and a gate on simulated hardware, and walks through what a station sees.",
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&o.Dir, "dir", "", "keep the issuer's and the gate's files (and demo.log) in this `DIRECTORY` instead of a temporary one")
			fs.BoolVar(&o.QR, "qr", false, "print the passenger's first code as a QR code in the terminal")
		},
		Exits: "0 every step behaved as a station expects, 1 one did not, 64 usage error",
		Run: func(c *cli.Context) int {
			if o.Dir != "" {
				if err := os.MkdirAll(o.Dir, 0o755); err != nil {
					return c.Fail(err)
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if err := demo.Run(ctx, c.Stdout, o); err != nil {
				return c.Fail(err)
			}
			return 0
		},
	}
	return cli.Main(cmd, "gatedemo "+version.String(), args, stdout, stderr)
}
