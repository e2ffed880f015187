// Command issuer runs the reference issuer of electronic temporary ride ID
// certificates and talks to it. It plays the railway's side in development,
// tests and the demo. Each subcommand lives in its own file:
//
//	issuer keygen --key FILE [--id KEYID]   create the feed signing key
//	issuer pubkey --key FILE                print the trusted-key line for gate configs
//	issuer fleet-keygen --out FILE          create the gate fleet's key pair
//	issuer serve --db FILE --key FILE --fleet-key KEY ...
//	                                        serve the issuer's HTTP API and key feed
//	issuer apply --name N --doc-number D --city C [--show-key]
//	                                        apply for a certificate
//	issuer revoke CERTID                    revoke a certificate
//	issuer history --doc-number D           a document number's last month
//	issuer show CERTID [--at RFC3339]       a certificate's TR1 token, as text and QR
//	issuer events --gate ID [--after SEQ]   a gate's uploaded events
//
// The client subcommands (apply, revoke, history, show, events) talk to a running
// `issuer serve` at --server (default http://127.0.0.1:8440/), trusting
// the CA in --ca for HTTPS.
package main

import (
	"io"
	"os"

	"gateagent/internal/cli"
	"gateagent/internal/version"
)

// root is the command tree.
func root() *cli.Command {
	return &cli.Command{
		Name: "issuer",
		Help: "The reference issuer of electronic temporary ride ID certificates, and its client.",
		Commands: []*cli.Command{
			keygenCmd(), pubkeyCmd(), fleetKeygenCmd(), serveCmd(), applyCmd(), revokeCmd(), historyCmd(), showCmd(), eventsCmd(),
		},
	}
}

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// run runs the command line args and returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	return cli.Main(root(), "issuer "+version.String(), args, stdout, stderr)
}
