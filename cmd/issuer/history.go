package main

import (
	"flag"
	"fmt"
	"net/http"
	"text/tabwriter"

	"gateagent/internal/cli"
	"gateagent/issuer"
)

// historyCmd lists a document number's certificates of the last month.
func historyCmd() *cli.Command {
	var (
		srv server
		doc string
	)
	return &cli.Command{
		Name:    "history",
		Summary: "list a document number's certificates of the last month",
		Help:    "Lists the certificates issued for an identity document in the last month (the issuance rules count them).",
		Flags: func(fs *flag.FlagSet) {
			srv.flags(fs)
			fs.StringVar(&doc, "doc-number", "", "the identity document's `NUMBER` (required)")
		},
		Run: func(c *cli.Context) int {
			if doc == "" {
				return c.Usagef("--doc-number is required")
			}
			cl, code := srv.connect(c)
			if cl == nil {
				return code
			}
			var out struct {
				Certificates []issuer.Certificate `json:"certificates"`
			}
			if err := cl.callJSON(http.MethodPost, "v1/history", map[string]string{"doc_number": doc}, &out); err != nil {
				return c.Fail(err)
			}
			if len(out.Certificates) == 0 {
				fmt.Fprintln(c.Stdout, "no certificates in the last month")
				return 0
			}
			tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CERTIFICATE\tSTATUS\tVALID FROM\tVALID UNTIL\tCITY")
			for _, ct := range out.Certificates {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ct.ID, ct.Status, timeText(ct.NotBefore), timeText(ct.NotAfter), ct.City)
			}
			tw.Flush()
			return 0
		},
	}
}
