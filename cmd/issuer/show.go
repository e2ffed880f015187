package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gateagent/internal/cli"
	"gateagent/qrcode"
	"gateagent/verify"
)

// showCmd prints the TR1 token a certificate's phone shows, and draws it
// as a QR code in the terminal.
func showCmd() *cli.Command {
	var (
		srv server
		at  string
	)
	return &cli.Command{
		Name:    "show",
		Args:    "CERTID",
		NArgs:   [2]int{1, 1},
		Summary: "print a certificate's TR1 token and its QR code",
		Help:    "Prints the TR1 token a certificate's phone shows at a time, and draws it as a QR code in the terminal.",
		Flags: func(fs *flag.FlagSet) {
			srv.flags(fs)
			fs.StringVar(&at, "at", "", "the `TIME` (RFC 3339) of the token; default now")
		},
		Run: func(c *cli.Context) int {
			id, err := verify.ParseCertID(c.Args[0])
			if err != nil {
				return c.Usagef("%v", err)
			}
			q := url.Values{}
			if at != "" {
				if _, err := time.Parse(time.RFC3339, at); err != nil {
					return c.Usagef("--at %q: want an RFC 3339 time such as 2026-11-23T08:00:00+08:00", at)
				}
				q.Set("at", at)
			}
			cl, code := srv.connect(c)
			if cl == nil {
				return code
			}
			body, err := cl.call(http.MethodGet, "v1/certs/"+id.String()+"/token", q, nil)
			if err != nil {
				return c.Fail(err)
			}
			// Only the newline the issuer adds goes: spaces are token characters.
			tok := strings.TrimSuffix(string(body), "\n")
			m, err := qrcode.Encode(tok)
			if err != nil {
				return c.Fail(err)
			}
			fmt.Fprintln(c.Stdout, tok)
			if err := m.Terminal(c.Stdout); err != nil {
				return c.Fail(err)
			}
			return 0
		},
	}
}
