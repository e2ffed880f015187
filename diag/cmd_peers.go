package diag

import (
	"context"
	"fmt"
	"io"
	"time"

	"gateagent/internal/cli"
	"gateagent/station"
)

// peersCmd is `gateagent diag peers`: the station group, peer by peer.
func peersCmd(o *opts, run runner) *cli.Command {
	return &cli.Command{
		Name:    "peers",
		Summary: "the station peers: members seen and missing, last heard, propagation, key mismatches",
		Help:    "Shows the gate's station group as the running agent sees it: the peers check, then every peer (state, address, since, last heard, round trip) and the counts of reports sent, received and dropped. With the agent stopped, only the key files are checked.",
		Flags:   o.flags,
		Exits:   exits,
		Run: run(func(ctx context.Context, s *session) int {
			ch, st, err := s.b.peers(ctx)
			if err != nil {
				return s.fail(err)
			}
			if st == nil {
				s.print(ch, func(w io.Writer) error { _, err := fmt.Fprintf(w, "%-4s  %s\n", ch.Status, ch.Line); return err })
				return ch.Status.ExitCode()
			}
			s.print(struct {
				Check  Check          `json:"check"`
				Status station.Status `json:"status"`
			}{ch, *st}, func(w io.Writer) error { return writePeers(w, ch, st, time.Now()) })
			return ch.Status.ExitCode()
		}),
	}
}
