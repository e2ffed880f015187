package diag

import (
	"context"
	"path/filepath"

	"gateagent/internal/cli"
)

// decodeCmd is `gateagent diag decode IMAGE`: the code in a photo,
// explained.
func decodeCmd(o *opts, run runner) *cli.Command {
	return &cli.Command{
		Name:    "decode",
		Args:    "IMAGE",
		NArgs:   [2]int{1, 1},
		Summary: "read the code in a photo of a passenger's screen and explain it",
		Help:    "Reads the QR code in a photo (PNG, JPEG or GIF) of a passenger's screen and explains it check by check, as diag token does.",
		Flags:   o.flags,
		Exits:   exits,
		Run: run(func(ctx context.Context, s *session) int {
			path := s.args[0]
			text, err := readImageCode(path)
			if err != nil {
				return s.fail(err)
			}
			r, err := s.b.token(ctx, []byte(text), filepath.Base(path))
			if err != nil {
				return s.fail(err)
			}
			return s.printToken(&r)
		}),
	}
}
