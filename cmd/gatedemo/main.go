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
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"gateagent/demo"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run is gatedemo with its arguments; it returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("gatedemo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gatedemo [--dir DIR] [--qr]")
		fmt.Fprintln(stderr, "\nRuns the reference issuer in-process and a gate on simulated hardware, and walks through what a station sees.")
		fs.PrintDefaults()
	}
	keep := fs.String("dir", "", "keep the issuer's and the gate's files (and demo.log) in this `directory` instead of a temporary one")
	qr := fs.Bool("qr", false, "print the passenger's first code as a QR code in the terminal")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	if *keep != "" {
		if err := os.MkdirAll(*keep, 0o755); err != nil {
			fmt.Fprintf(stderr, "gatedemo: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := demo.Run(ctx, stdout, demo.Options{Dir: *keep, QR: *qr}); err != nil {
		fmt.Fprintf(stderr, "gatedemo: %v\n", err)
		return 1
	}
	return 0
}
