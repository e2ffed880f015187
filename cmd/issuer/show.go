package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"gateagent/qrcode"
	"gateagent/verify"
)

// runShow prints the TR1 token a certificate's phone shows, and draws it as
// a QR code in the terminal.
func runShow(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("show", "CERTID [--at RFC3339] [--server URL]", stderr)
	server := serverFlag(fs)
	at := fs.String("at", "", "the `TIME` (RFC 3339) of the token; default now")
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
	q := url.Values{}
	if *at != "" {
		if _, err := time.Parse(time.RFC3339, *at); err != nil {
			return usageErr(fs, "--at %q: want an RFC 3339 time such as 2026-11-23T08:00:00+08:00", *at)
		}
		q.Set("at", *at)
	}
	c, err := newClient(*server)
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	body, err := c.call(http.MethodGet, "v1/certs/"+id.String()+"/token", q, nil)
	if err != nil {
		return failed(stderr, err)
	}
	// Only the newline the issuer adds goes: spaces are token characters.
	tok := strings.TrimSuffix(string(body), "\n")
	m, err := qrcode.Encode(tok)
	if err != nil {
		return failed(stderr, err)
	}
	fmt.Fprintln(stdout, tok)
	if err := m.Terminal(stdout); err != nil {
		return failed(stderr, err)
	}
	return 0
}
