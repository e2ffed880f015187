package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"gateagent/demo"
)

// runDemo is `gateagent demo`: the README's first command.
func runDemo(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("demo", "gateagent demo [--dir DIR] [--qr]",
		"Runs the reference issuer in-process and a gate on simulated hardware, and walks through what a station sees.", stderr)
	keep := fs.String("dir", "", "keep the issuer's and the gate's files (and demo.log) in this `directory` instead of a temporary one")
	qr := fs.Bool("qr", false, "print the passenger's first code as a QR code in the terminal")
	if !parseNoArgs(fs, args) {
		return 2
	}
	if *keep != "" {
		if err := os.MkdirAll(*keep, 0o755); err != nil {
			fmt.Fprintf(stderr, "gateagent demo: %v\n", err)
			return 1
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := demo.Run(ctx, stdout, demo.Options{Dir: *keep, QR: *qr}); err != nil {
		fmt.Fprintf(stderr, "gateagent demo: %v\n", err)
		return 1
	}
	return 0
}
