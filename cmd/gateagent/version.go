package main

import (
	"fmt"
	"io"

	"gateagent/internal/version"
)

func runVersion(args []string, stdout, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: gateagent version")
		return 2
	}
	fmt.Fprintln(stdout, "gateagent", version.String())
	return 0
}
