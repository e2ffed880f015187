package diag

import (
	"context"
	"flag"

	"gateagent/internal/cli"
)

// reportCmd is `gateagent diag`: every check.
func reportCmd(o *opts, env *Env, run runner) *cli.Command {
	var deep bool
	return &cli.Command{
		Name: "diag",
		Help: `Checks the gate and says what to do: config, service (can the gate grant?), hardware, scanner,
clock, keys, cache, records, feed, backlog, wear, latency, peers. With the agent running, diag asks it over its control
socket; with the agent stopped, it opens the board, the scanner and the cache itself.`,
		Flags: func(fs *flag.FlagSet) {
			o.flags(fs)
			fs.BoolVar(&deep, "deep", false, "run the integrity check of the cache and the journal now, even if the agent ran one lately")
			fs.StringVar(&env.AgentUser, "user", env.AgentUser, "with the agent stopped, check the cache's access as this `USER` (default "+AgentUser+", the unit's User=)")
		},
		Exits: exits,
		Run: run(func(ctx context.Context, s *session) int {
			r, err := s.b.report(ctx, deep)
			if err != nil {
				return s.fail(err)
			}
			if s.json {
				r.WriteJSON(s.stdout)
			} else {
				r.WriteText(s.stdout)
			}
			return r.Worst().ExitCode()
		}),
	}
}
