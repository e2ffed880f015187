// Command gateagent is the agent of a railway ticket gate that accepts the
// 12306 electronic temporary ride ID certificate. Each subcommand lives in
// its own file.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"version", "print the version and build date", runVersion},
		{"run", "run the gate (--config FILE)", runRun},
		{"diag", "check the gate: hardware, scanner, clock, cache, feed (diag help)", runDiag},
		{"cache", "inspect a cache file: stats, check", runCache},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run dispatches to a subcommand and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "gateagent: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: gateagent <command> [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

// newFlags is a subcommand's flag set: errors go to stderr, and its usage
// prints the usage line, what the command does, and the flags.
func newFlags(name, usage, about string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: "+usage)
		fmt.Fprintln(stderr, "\n"+about)
		fs.PrintDefaults()
	}
	return fs
}

// parseNoArgs parses args for a command that takes flags only; false
// means exit 2 (what was wrong is already printed).
func parseNoArgs(fs *flag.FlagSet, args []string) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return false
	}
	return true
}
