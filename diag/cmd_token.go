package diag

import (
	"context"

	"gateagent/internal/cli"
)

// tokenCmd is `gateagent diag token TOKEN`: one code explained.
func tokenCmd(o *opts, run runner) *cli.Command {
	return &cli.Command{
		Name:    "token",
		Args:    "TOKEN",
		NArgs:   [2]int{1, 1},
		Summary: "explain one code against the cache, check by check",
		Help:    "Explains one TR1 code (as text: quote it, it may end in a space) against the gate's cache, check by check, as the gate would decide it now.",
		Flags:   o.flags,
		Exits:   exits,
		Run: run(func(ctx context.Context, s *session) int {
			r, err := s.b.token(ctx, []byte(s.args[0]), "argument")
			if err != nil {
				return s.fail(err)
			}
			return s.printToken(&r)
		}),
	}
}
