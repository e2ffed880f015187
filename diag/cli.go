package diag

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"syscall"

	"gateagent/config"
	"gateagent/control"
	"gateagent/internal/cli"
)

// Exit statuses of gateagent diag: the worst check's (Status.ExitCode: 0
// PASS, 1 WARN, 2 FAIL), a usage error, or diag unable to check at all.
const (
	ExitUnavailable = 69 // EX_UNAVAILABLE: the running agent cannot be asked
	exits           = "0 PASS, 1 WARN, 2 FAIL (the worst check), 64 usage error, 69 the running agent cannot be asked (its control socket refuses or does not answer)"
)

// opts are the flags every diag command takes.
type opts struct {
	config, socket string
	json           bool
}

func (o *opts) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.config, "config", "/etc/gateagent/gateagent.toml", "the gate's config `FILE`")
	fs.StringVar(&o.socket, "socket", "", "the agent's control socket `PATH` (default: control.socket of the config)")
	fs.BoolVar(&o.json, "json", false, "print JSON")
}

// session is one diag command at work: its backend and its output.
type session struct {
	b      backend
	json   bool
	stdout io.Writer
	stderr io.Writer
	path   string   // "gateagent diag scan"
	args   []string // the positional arguments
	// usagef reports a usage error with the command's usage (exit 64).
	usagef func(format string, a ...any) int
}

// runner wraps a subcommand's body: the config is loaded once, the
// running agent found (or diag works on its own), and the body runs with
// the backend that reaches the gate.
type runner func(body func(ctx context.Context, s *session) int) func(*cli.Context) int

// Cmd is the `diag` command of gateagent, with its subcommands, one file
// each (cmd_*.go).
func Cmd(env Env) *cli.Command {
	var o opts
	run := func(body func(context.Context, *session) int) func(*cli.Context) int {
		return func(c *cli.Context) int {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			b, err := connect(ctx, o, env.withDefaults(), c.Stderr)
			if err != nil {
				fmt.Fprintf(c.Stderr, "%s: %v\n", c.Path(), err)
				return ExitUnavailable
			}
			return body(ctx, &session{b: b, json: o.json, stdout: c.Stdout, stderr: c.Stderr, path: c.Path(), args: c.Args, usagef: c.Usagef})
		}
	}
	cmd := reportCmd(&o, &env, run)
	cmd.Commands = []*cli.Command{
		clockCmd(&o, run), scanCmd(&o, run), relayCmd(&o, run), sensorsCmd(&o, run), indicatorsCmd(&o, run),
		latencyCmd(&o, run), wearCmd(&o, run), peersCmd(&o, run), tokenCmd(&o, run), decodeCmd(&o, run),
	}
	return cmd
}

// Command is `gateagent diag ARGS`: it returns the exit status.
func Command(args []string, stdout, stderr io.Writer, env Env) int {
	return cli.Run(Cmd(env), "gateagent diag", args, stdout, stderr)
}

// connect loads the config once and finds the running agent: with one,
// diag asks it over its control socket; without, it works on its own.
func connect(ctx context.Context, o opts, env Env, notes io.Writer) (backend, error) {
	cfg, cfgErr := config.Load(o.config)
	path := o.socket
	if path == "" {
		path = config.DefaultSocket
		if cfgErr == nil {
			path = cfg.Control.Socket
		}
	}
	cl := control.NewClient(path)
	err := cl.Ping(ctx)
	switch {
	case err == nil:
		return agentBackend{cl}, nil
	case errors.Is(err, fs.ErrPermission):
		// The agent may well be running: diag must not open the board
		// and the port beside it.
		return nil, fmt.Errorf("%s: permission denied: run diag as root, or as a member of the agent's group (usermod -aG gateagent USER, then log in again)", path)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		// No agent: diag works on its own (and claims the gate first).
		return &localBackend{path: o.config, cfg: cfg, err: cfgErr, env: env, notes: notes}, nil
	}
	return nil, fmt.Errorf("the agent's control socket %s does not answer (%v): the agent may be starting or hung; wait a few seconds and try again, or see journalctl -u gateagent", path, oneLine(err))
}

// fail prints err as the command's FAIL and returns FAIL's exit status.
func (s *session) fail(err error) int {
	fmt.Fprintf(s.stderr, "%s: %v\n", s.path, err)
	return Fail.ExitCode()
}

// print writes v as JSON with --json, else calls text.
func (s *session) print(v any, text func(io.Writer) error) {
	var err error
	if s.json {
		e := json.NewEncoder(s.stdout)
		e.SetIndent("", "  ")
		err = e.Encode(v)
	} else {
		err = text(s.stdout)
	}
	if err != nil {
		fmt.Fprintf(s.stderr, "%s: printing the result: %v\n", s.path, err)
	}
}

// note tells the technician what is going on, on stderr (not with --json).
func (s *session) note(format string, a ...any) {
	if !s.json {
		fmt.Fprintf(s.stderr, format+"\n", a...)
	}
}
