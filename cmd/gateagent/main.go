// Command gateagent is the agent of a railway ticket gate that accepts the
// 12306 electronic temporary ride ID certificate. Each subcommand lives in
// its own file; internal/cli gives them one convention (help, --version,
// exit statuses).
package main

import (
	"fmt"
	"io"
	"os"

	"gateagent/diag"
	"gateagent/internal/cli"
	"gateagent/internal/version"
)

// root is the command tree.
func root() *cli.Command {
	d := diag.Cmd(diag.Env{})
	d.Summary = "check the gate and say what to do: hardware, scanner, clock, cache, feed (diag --help)"
	return &cli.Command{
		Name: "gateagent",
		Help: "The agent of a railway ticket gate: it checks the 12306 electronic temporary ride ID certificate's\nrotating code offline and opens the turnstile for valid passengers.",
		Commands: []*cli.Command{
			runCmd(), d, cacheCmd(), simCmd(), versionCmd(),
		},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run runs the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if err := forbidCoreDumps(); err != nil {
		fmt.Fprintf(stderr, "gateagent: warning: %v: a core dump of this process would hold its keys\n", err)
	}
	return cli.Main(root(), "gateagent "+version.String(), args, stdout, stderr)
}
