package main

import (
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"

	"gateagent/issuer"
)

// runHistory lists a document number's certificates of the last month.
func runHistory(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("history", "--doc-number D [--server URL]", stderr)
	server := serverFlag(fs)
	doc := fs.String("doc-number", "", "the identity document's `NUMBER`")
	if pos, err := parseArgs(fs, args); err != nil {
		return 2
	} else if len(pos) != 0 {
		return usageErr(fs, "unexpected argument %q", pos[0])
	}
	if *doc == "" {
		return usageErr(fs, "--doc-number is required")
	}
	c, err := newClient(*server)
	if err != nil {
		return usageErr(fs, "%v", err)
	}
	var out struct {
		Certificates []issuer.Certificate `json:"certificates"`
	}
	if err := c.callJSON(http.MethodPost, "v1/history", map[string]string{"doc_number": *doc}, &out); err != nil {
		return failed(stderr, err)
	}
	if len(out.Certificates) == 0 {
		fmt.Fprintln(stdout, "no certificates in the last month")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CERTIFICATE\tSTATUS\tVALID FROM\tVALID UNTIL\tCITY")
	for _, ct := range out.Certificates {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ct.ID, ct.Status, timeText(ct.NotBefore), timeText(ct.NotAfter), ct.City)
	}
	tw.Flush()
	return 0
}
