package main

import (
	"fmt"
	"io"

	"gateagent/internal/version"
)

// runVersion prints one line: the version, commit and build time stamped
// by make, and the Go release and platform the binary was built for, e.g.
//
//	gateagent v1.2.3 (abc1234, built 2026-11-23T10:00:00Z, go1.26.8 linux/arm64)
func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: gateagent version")
		return 2
	}
	fmt.Fprintln(stdout, "gateagent", version.String())
	return 0
}
