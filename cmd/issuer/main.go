// Command issuer runs the reference issuer of electronic temporary ride ID
// certificates and talks to it. It plays the railway's side in development,
// tests and the demo. Each subcommand lives in its own file:
//
//	issuer keygen --key FILE [--id KEYID]   create the feed signing key
//	issuer pubkey --key FILE                print the trusted-key line for gate configs
//	issuer serve --db FILE --key FILE ...   serve the issuer's HTTP API and key feed
//	issuer apply --name N --doc-number D --city C [--show-key]
//	                                        apply for a certificate
//	issuer revoke CERTID                    revoke a certificate
//	issuer history --doc-number D           a document number's last month
//	issuer show CERTID [--at RFC3339]       a certificate's TR1 token, as text and QR
//
// The client subcommands (apply, revoke, history, show) talk to a running
// `issuer serve` at --server (default http://127.0.0.1:8440/).
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
		{"keygen", "create the feed signing key: keygen --key FILE [--id KEYID]", runKeygen},
		{"pubkey", "print the trusted-key line for gate configs: pubkey --key FILE", runPubkey},
		{"serve", "serve the issuer: serve --db FILE --key FILE [--listen ADDR] [--tls-cert F --tls-key F [--client-ca F]]", runServe},
		{"apply", "apply for a certificate: apply --name N --doc-number D --city C [--show-key]", runApply},
		{"revoke", "revoke a certificate: revoke CERTID", runRevoke},
		{"history", "list a document number's certificates of the last month: history --doc-number D", runHistory},
		{"show", "print a certificate's TR1 token and its QR code: show CERTID [--at RFC3339]", runShow},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run dispatches to a subcommand and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "issuer: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: issuer <command> [arguments]")
	fmt.Fprintln(w, "\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\n`issuer <command> -h` lists a command's flags.")
}

// parseArgs parses flags that may come before or after the positional
// arguments (`show CERTID --at T`) and returns the positional ones.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// failed prints err for the operator and returns exit status 1.
func failed(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "issuer:", err)
	return 1
}

// usageErr prints a usage message and returns exit status 2.
func usageErr(fs *flag.FlagSet, format string, a ...any) int {
	fmt.Fprintf(fs.Output(), "issuer %s: %s\n", fs.Name(), fmt.Sprintf(format, a...))
	fs.Usage()
	return 2
}

// newFlags returns a flag set for a subcommand whose usage line is line.
func newFlags(name, line string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: issuer %s %s\n", name, line)
		fs.PrintDefaults()
	}
	return fs
}
