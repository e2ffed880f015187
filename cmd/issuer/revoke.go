package main

import (
	"fmt"
	"io"
	"net/http"

	"gateagent/verify"
)

// runRevoke revokes a certificate.
func runRevoke(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("revoke", "CERTID [--server URL]", stderr)
	server := serverFlag(fs)
	pos, err := parseArgs(fs, args)
	if err != nil {
		return 2
	}
	if len(pos) != 1 {
		return usageErr(fs, "want one certificate ID")
	}
	id, err := verify.ParseCertID(pos[0])
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	c, err := newClient(*server)
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	if _, err := c.call(http.MethodPost, "v1/certs/"+id.String()+"/revoke", nil, nil); err != nil {
		return failed(stderr, err)
	}
	fmt.Fprintln(stdout, "revoked", id)
	return 0
}
