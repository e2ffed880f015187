package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"

	"gateagent/issuer"
)

// runApply applies for a certificate and prints it.
func runApply(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("apply", "--name N --doc-number D --city C [flags]", stderr)
	server := serverFlag(fs)
	var a issuer.Application
	fs.StringVar(&a.Name, "name", "", "the applicant's `NAME`")
	fs.StringVar(&a.DocNumber, "doc-number", "", "the identity document's `NUMBER`")
	fs.StringVar(&a.DocType, "doc-type", issuer.DocResidentID, "the identity document's `TYPE`")
	fs.StringVar(&a.City, "city", "", "the `CITY` of travel")
	fs.StringVar(&a.FaceCheck, "face-check", "passed", "the outcome of the live face check: passed or failed")
	showKey := fs.Bool("show-key", false, "print the certificate's secret key (the phone's; shown once)")
	if pos, err := parseArgs(fs, args); err != nil {
		return 2
	} else if len(pos) != 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if a.Name == "" || a.DocNumber == "" || a.City == "" {
		return usageErr(fs, "--name, --doc-number and --city are required")
	}
	c, err := newClient(*server)
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	var cert issuer.Certificate
	if err := c.callJSON(http.MethodPost, "v1/applications", a, &cert); err != nil {
		var r *issuer.Refusal
		if errors.As(err, &r) {
			fmt.Fprintf(stderr, "issuer: application refused (%s): %s\n", r.Code, r.Message)
			return 1
		}
		return failed(stderr, err)
	}
	fmt.Fprintln(stdout, "certificate:", cert.ID)
	fmt.Fprintln(stdout, "status:     ", cert.Status)
	fmt.Fprintln(stdout, "valid from: ", timeText(cert.NotBefore))
	fmt.Fprintln(stdout, "valid until:", timeText(cert.NotAfter))
	fmt.Fprintln(stdout, "city:       ", cert.City)
	if *showKey {
		fmt.Fprintln(stdout, "key:        ", cert.Key)
	}
	return 0
}
