package diag

import (
	"context"
	"flag"
	"time"

	"gateagent/internal/cli"
)

// scanCmd is `gateagent diag scan`: the next code at the scanner, explained.
func scanCmd(o *opts, run runner) *cli.Command {
	var timeout time.Duration
	return &cli.Command{
		Name:    "scan",
		Summary: "wait for one code at the scanner and explain it; the relay does not move",
		Help: `Waits for one code at the scanner and explains it check by check. Through the running agent the
code is handed to diag instead of the gate: the relay does not move and nothing is recorded.`,
		Flags: func(fs *flag.FlagSet) {
			o.flags(fs)
			fs.DurationVar(&timeout, "timeout", 30*time.Second, "how long to wait for a code (up to 10m)")
		},
		Exits: exits,
		Run: run(func(ctx context.Context, s *session) int {
			if timeout <= 0 || timeout > 10*time.Minute {
				return s.usagef("--timeout %v: use a duration up to 10m", timeout)
			}
			s.note("waiting up to %s for a code at the scanner (the relay will not move)...", timeout)
			r, err := s.b.scan(ctx, timeout)
			if err != nil {
				return s.fail(err)
			}
			return s.printToken(&r)
		}),
	}
}

func (s *session) printToken(r *TokenReport) int {
	s.print(r, r.WriteText)
	return r.Status.ExitCode()
}
