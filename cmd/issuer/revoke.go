package main

import (
	"fmt"
	"net/http"

	"gateagent/internal/cli"
	"gateagent/verify"
)

// revokeCmd revokes a certificate.
func revokeCmd() *cli.Command {
	var srv server
	return &cli.Command{
		Name:    "revoke",
		Args:    "CERTID",
		NArgs:   [2]int{1, 1},
		Summary: "revoke a certificate",
		Help:    "Revokes a certificate at the issuer: gates refuse it once their next key sync brings the revocation.",
		Flags:   srv.flags,
		Run: func(c *cli.Context) int {
			id, err := verify.ParseCertID(c.Args[0])
			if err != nil {
				return c.Usagef("%v", err)
			}
			cl, code := srv.connect(c)
			if cl == nil {
				return code
			}
			if _, err := cl.call(http.MethodPost, "v1/certs/"+id.String()+"/revoke", nil, nil); err != nil {
				return c.Fail(err)
			}
			fmt.Fprintln(c.Stdout, "revoked", id)
			return 0
		},
	}
}
