package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"

	"gateagent/internal/cli"
	"gateagent/issuer"
	"gateagent/verify"
)

// eventsCmd lists a gate's events as the issuer stores them.
func eventsCmd() *cli.Command {
	var (
		srv   server
		gate  string
		after uint64
		limit int
	)
	return &cli.Command{
		Name:    "events",
		Summary: "list a gate's uploaded events",
		Help: `Lists the events a gate has uploaded to the issuer (its decisions, passages, lapsed grants,
alarms, emergencies and technicians' tests), oldest first, as the issuer stores them. Certificate
IDs only: no name or document number exists on a gate.`,
		Flags: func(fs *flag.FlagSet) {
			srv.flags(fs)
			fs.StringVar(&gate, "gate", "", "the gate's `ID` (gate.id in its config; required)")
			fs.Uint64Var(&after, "after", 0, "list the events after this sequence `NUMBER`")
			fs.IntVar(&limit, "limit", issuer.DefaultEventPage, fmt.Sprintf("list at most `N` events (1 to %d)", issuer.MaxEventPage))
		},
		Run: func(c *cli.Context) int {
			if gate == "" {
				return c.Usagef("--gate is required")
			}
			if limit < 1 || limit > issuer.MaxEventPage {
				return c.Usagef("--limit %d: use 1 to %d", limit, issuer.MaxEventPage)
			}
			cl, code := srv.connect(c)
			if cl == nil {
				return code
			}
			q := url.Values{"gate": {gate}, "limit": {strconv.Itoa(limit)}}
			if after > 0 {
				q.Set("after", strconv.FormatUint(after, 10))
			}
			data, err := cl.call(http.MethodGet, "v1/events", q, nil)
			if err != nil {
				return c.Fail(err)
			}
			var l issuer.EventList
			if err := json.Unmarshal(data, &l); err != nil {
				return c.Fail(fmt.Errorf("the issuer's answer is not the expected JSON: %w (is --server an issuer?)", err))
			}
			if len(l.Events) == 0 {
				fmt.Fprintf(c.Stdout, "no events of gate %s", gate)
				if after > 0 {
					fmt.Fprintf(c.Stdout, " after number %d", after)
				}
				fmt.Fprintln(c.Stdout)
				return 0
			}
			tw := tabwriter.NewWriter(c.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "SEQ\tTIME\tKIND\tREASON\tDIRECTION\tCERTIFICATE\tDETAIL")
			for _, e := range l.Events {
				cert := "-"
				if e.CertID != (verify.CertID{}) {
					cert = e.CertID.String()
				}
				reason := e.Reason.String()
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, timeText(e.Time), e.Kind, reason, e.Direction, cert, e.Detail)
			}
			tw.Flush()
			if l.More {
				last := l.Events[len(l.Events)-1].Seq
				fmt.Fprintf(c.Stdout, "more: issuer events --gate %s --after %d\n", gate, last)
			}
			return 0
		},
	}
}
