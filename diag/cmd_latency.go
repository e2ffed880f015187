package diag

import (
	"context"
	"errors"
	"fmt"
	"io"

	"gateagent/internal/cli"
	"gateagent/metrics"
)

// latencyCmd is `gateagent diag latency`: the per-stage histogram.
func latencyCmd(o *opts, run runner) *cli.Command {
	return &cli.Command{
		Name:    "latency",
		Summary: "the running agent's per-stage latency histogram",
		Help:    "Shows how long each stage of a scan took, from the scanner's first byte to the relay, as the running agent measured it: read, decode, lookup, tag, record (fsync), relay, and scan-to-relay.",
		Flags:   o.flags,
		Exits:   exits,
		Run: run(func(ctx context.Context, s *session) int {
			lat, err := s.b.latency(ctx)
			if errors.Is(err, errNotRunning) {
				ch := Check{Name: NameLatency, Status: Skip, Line: err.Error()}
				s.print(ch, func(w io.Writer) error { _, err := fmt.Fprintf(w, "%s  %s\n", ch.Status, ch.Line); return err })
				return 0
			}
			if err != nil {
				return s.fail(err)
			}
			ch := judgeLatency(lat, true)
			s.print(struct {
				Check  Check                  `json:"check"`
				Stages []metrics.StageLatency `json:"stages"`
			}{ch, lat}, func(w io.Writer) error { return writeHistogram(w, ch, lat) })
			return ch.Status.ExitCode()
		}),
	}
}
