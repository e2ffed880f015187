package diag

import (
	"context"
	"io"

	"gateagent/internal/cli"
)

// wearCmd is `gateagent diag wear`: the flash wear check alone.
func wearCmd(o *opts, run runner) *cli.Command {
	return &cli.Command{
		Name:    "wear",
		Summary: "the flash wear check alone: bytes the agent writes a day, the device lifetime they project, the cache file against its live records",
		Help: `Through the running agent: the bytes it writes a day (/proc/self/io's wchar, write_bytes beside it),
the device lifetime that rate projects from the config's [storage] (device_bytes × rated_cycles /
(bytes a day × device_amplification × 365)) against service_years, the cache file against its live
certificates × 65 bytes, and the last purge. WARN when the lifetime falls under service_years.
With the agent stopped: the files alone (the rate needs the running agent). See docs/flash.md.`,
		Flags: o.flags,
		Exits: exits,
		Run: run(func(ctx context.Context, s *session) int {
			ch, err := s.b.wear(ctx)
			if err != nil {
				return s.fail(err)
			}
			s.print(&ch, func(w io.Writer) error { return ch.WriteText(w) })
			return ch.Status.ExitCode()
		}),
	}
}
