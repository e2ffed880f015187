package main

import (
	"fmt"

	"gateagent/internal/cli"
	"gateagent/internal/version"
)

// versionCmd prints one line: the version, commit and build time, and the
// Go release and platform the binary was built for, e.g.
//
//	gateagent v1.2.3 (abc1234, built 2026-11-23T10:00:00Z, go1.26.8 linux/arm64)
func versionCmd() *cli.Command {
	return &cli.Command{
		Name:    "version",
		Summary: "print the version, commit and build date",
		Help:    "Prints the version, the commit and the build date, and the Go release and platform the binary was built for (as gateagent --version does).",
		Run: func(c *cli.Context) int {
			fmt.Fprintln(c.Stdout, "gateagent", version.String())
			return 0
		},
	}
}
