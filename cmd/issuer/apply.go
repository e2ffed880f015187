package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"

	"gateagent/internal/cli"
	"gateagent/issuer"
)

// applyCmd applies for a certificate and prints it.
func applyCmd() *cli.Command {
	var (
		srv     server
		a       issuer.Application
		showKey bool
	)
	return &cli.Command{
		Name:    "apply",
		Summary: "apply for a certificate",
		Help:    "Applies for a certificate as the 12306 app would after the live face check, and prints it.",
		Flags: func(fs *flag.FlagSet) {
			srv.flags(fs)
			fs.StringVar(&a.Name, "name", "", "the applicant's `NAME` (required)")
			fs.StringVar(&a.DocNumber, "doc-number", "", "the identity document's `NUMBER` (required)")
			fs.StringVar(&a.DocType, "doc-type", issuer.DocResidentID, "the identity document's `TYPE`")
			fs.StringVar(&a.City, "city", "", "the `CITY` of travel (required)")
			fs.StringVar(&a.FaceCheck, "face-check", "passed", "the outcome of the live face check: passed or failed")
			fs.BoolVar(&showKey, "show-key", false, "print the certificate's secret key (the phone's; shown once)")
		},
		Run: func(c *cli.Context) int {
			if a.Name == "" || a.DocNumber == "" || a.City == "" {
				return c.Usagef("--name, --doc-number and --city are required")
			}
			cl, code := srv.connect(c)
			if cl == nil {
				return code
			}
			var cert issuer.Certificate
			if err := cl.callJSON(http.MethodPost, "v1/applications", a, &cert); err != nil {
				var r *issuer.Refusal
				if errors.As(err, &r) {
					fmt.Fprintf(c.Stderr, "%s: application refused (%s): %s\n", c.Path(), r.Code, r.Message)
					return 1
				}
				return c.Fail(err)
			}
			fmt.Fprintln(c.Stdout, "certificate:", cert.ID)
			fmt.Fprintln(c.Stdout, "status:     ", cert.Status)
			fmt.Fprintln(c.Stdout, "valid from: ", timeText(cert.NotBefore))
			fmt.Fprintln(c.Stdout, "valid until:", timeText(cert.NotAfter))
			fmt.Fprintln(c.Stdout, "city:       ", cert.City)
			if showKey {
				fmt.Fprintln(c.Stdout, "key:        ", cert.Key)
			}
			return 0
		},
	}
}
