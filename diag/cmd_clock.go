package diag

import (
	"context"
	"io"

	"gateagent/internal/cli"
)

// clockCmd is `gateagent diag clock`: the clock check alone.
func clockCmd(o *opts, run runner) *cli.Command {
	return &cli.Command{
		Name:    "clock",
		Summary: "the clock check alone: which clock is wrong, the gate's or the issuer's, and the codes refused for it in the last hour",
		Help:    "Says whether the gate's clock is trusted and synchronised, its offset to the issuer's, which side is wrong, and how many codes were refused as stale or from the future in the last hour.",
		Flags:   o.flags,
		Exits:   exits,
		Run: run(func(ctx context.Context, s *session) int {
			ch, err := s.b.clock(ctx)
			if err != nil {
				return s.fail(err)
			}
			s.print(&ch, func(w io.Writer) error { return ch.WriteText(w) })
			return ch.Status.ExitCode()
		}),
	}
}
