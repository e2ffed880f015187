package diag

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"gateagent/internal/cli"
)

// sensorsCmd is `gateagent diag sensors`: the inputs, live.
func sensorsCmd(o *opts, run runner) *cli.Command {
	var seconds int
	return &cli.Command{
		Name:    "sensors",
		Summary: "show the passage, emergency and approach inputs live",
		Help:    "Prints the passage, emergency and approach inputs at the start and at each change, for --seconds. Levels are sampled every 20 ms, so the running agent's own watchers are not disturbed.",
		Flags: func(fs *flag.FlagSet) {
			o.flags(fs)
			fs.IntVar(&seconds, "seconds", 10, "how long to watch, in `SECONDS` (1 to 600)")
		},
		Exits: exits,
		Run: run(func(ctx context.Context, s *session) int {
			if seconds < 1 || seconds > 600 {
				return s.usagef("--seconds %d: use 1 to 600", seconds)
			}
			d := time.Duration(seconds) * time.Second
			worst := Pass
			s.note("watching the inputs for %s; each change is printed...", d)
			err := s.b.sensors(ctx, d, func(r Reading) error {
				if r.Err != "" {
					worst = Fail
				}
				if s.json {
					return json.NewEncoder(s.stdout).Encode(r)
				}
				_, err := fmt.Fprintln(s.stdout, r.text())
				return err
			})
			if err != nil {
				return s.fail(err)
			}
			return worst.ExitCode()
		}),
	}
}
