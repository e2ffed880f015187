package diag

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"gateagent/config"
	"gateagent/control"
	"gateagent/internal/instance"
)

const usageText = `usage: gateagent diag [command] [--config FILE] [--socket PATH] [--json]

With the agent running, diag asks it over its control socket; with the
agent stopped, it opens the board, the scanner and the cache itself.
Exit status: 0 PASS, 1 WARN, 2 FAIL (the worst check).

commands:
  (none)                 every check: config, hardware, scanner, clock, cache, feed, backlog, latency, peers
  scan [--timeout 30s]   wait for one code at the scanner and explain it; the relay does not move
  relay --pulse 500ms    energise the relay once and watch the passage sensor confirm it
  sensors [--seconds 10] show the passage, emergency and approach inputs live
  indicators             green lamp, red lamp, then the buzzer, one after the other
  latency                the running agent's per-stage latency histogram
  peers                  the station's other gates: alive, last heard, propagation, key mismatch
  token TOKEN            explain one code against the cache, check by check
  decode IMAGE           read the code in a photo of a passenger's screen and explain it
`

// Command is `gateagent diag ARGS`: it returns the exit status.
func Command(args []string, stdout, stderr io.Writer, env Env) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("diag "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usageText) }
	var o cliOpts
	fs.StringVar(&o.config, "config", "/etc/gateagent/gateagent.toml", "the gate's config `file`")
	fs.StringVar(&o.socket, "socket", "", "the agent's control socket (default: control.socket of the config)")
	fs.BoolVar(&o.json, "json", false, "print JSON")
	if sub == "" {
		fs.BoolVar(&o.deep, "deep", false, "run the cache's integrity check now even if the agent ran one lately")
	}
	switch sub {
	case "scan":
		fs.DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for a code")
	case "relay":
		fs.DurationVar(&o.pulse, "pulse", 0, "energise the relay for this long (50ms to 5s); required")
	case "sensors":
		fs.IntVar(&o.seconds, "seconds", 10, "how long to watch (1 to 600)")
	}
	// Flags may come before or after the arguments (diag token TOKEN --json).
	for {
		if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
			return 0
		} else if err != nil {
			return 2
		}
		if fs.NArg() == 0 {
			break
		}
		o.args = append(o.args, fs.Arg(0))
		args = fs.Args()[1:]
	}
	c := &cli{o: o, stdout: stdout, stderr: stderr, env: env.withDefaults()}
	cmd, ok := subcommands[sub]
	if !ok {
		fmt.Fprintf(stderr, "gateagent diag: unknown command %q\n\n%s", sub, usageText)
		return 2
	}
	if len(o.args) != cmd.args {
		fmt.Fprint(stderr, usageText)
		return 2
	}
	if sub == "relay" && o.pulse == 0 {
		fmt.Fprintln(stderr, "gateagent diag relay: give --pulse DURATION (e.g. --pulse 500ms): the relay moves only when asked explicitly")
		return 2
	}
	if sub == "sensors" && (o.seconds < 1 || o.seconds > 600) {
		fmt.Fprintln(stderr, "gateagent diag sensors: --seconds: use 1 to 600")
		return 2
	}
	if err := c.connect(ctx); err != nil {
		return c.fail(err)
	}
	return cmd.run(c, ctx)
}

// subcommands are diag's commands: how many arguments each takes, and
// what runs it.
var subcommands = map[string]struct {
	args int
	run  func(*cli, context.Context) int
}{
	"":           {0, (*cli).report},
	"scan":       {0, (*cli).scan},
	"relay":      {0, (*cli).relay},
	"sensors":    {0, (*cli).sensors},
	"indicators": {0, (*cli).indicators},
	"latency":    {0, (*cli).latency},
	"peers":      {0, (*cli).peers},
	"token":      {1, func(c *cli, ctx context.Context) int { return c.token(ctx, []byte(c.o.args[0]), "argument") }},
	"decode":     {1, func(c *cli, ctx context.Context) int { return c.decode(ctx, c.o.args[0]) }},
}

type cliOpts struct {
	config, socket string
	json, deep     bool
	timeout, pulse time.Duration
	seconds        int
	args           []string
}

type cli struct {
	o              cliOpts
	stdout, stderr io.Writer
	env            Env
	// daemon is the running agent's control socket; nil when diag works
	// on its own.
	daemon *control.Client
}

// connect finds the running agent, if there is one.
func (c *cli) connect(ctx context.Context) error {
	path := c.o.socket
	if path == "" {
		path = config.DefaultSocket
		if cfg, err := config.Load(c.o.config); err == nil {
			path = cfg.Control.Socket
		}
	}
	cl := control.NewClient(path)
	err := cl.Ping(ctx)
	switch {
	case err == nil:
		c.daemon = cl
		return nil
	case errors.Is(err, fs.ErrPermission):
		// The agent may well be running: diag must not open the board
		// and the port beside it.
		return fmt.Errorf("%s: permission denied: run diag as root, or as a member of the agent's group (usermod -aG gateagent USER, then log in again)", path)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return nil // no agent: diag works on its own (and checks that no agent holds the cache)
	}
	return fmt.Errorf("the agent's control socket %s does not answer (%v): the agent may be starting or hung; wait a few seconds and try again, or see journalctl -u gateagent", path, oneLine(err))
}

// errAgentRunning: diag found no control socket, but an agent holds the
// cache: it must not drive the board or open the port beside it.
var errAgentRunning = errors.New("an agent is running (it holds the gate's lock) but its control socket does not answer: diag will not open the board or the scanner beside it; check control.socket in the config and journalctl -u gateagent, or stop the agent (systemctl stop gateagent) to run diag on its own")

// standalone claims the gate for diag working on its own: it shares the
// gate's single-instance lock, and holds a shared lock on the cache file,
// for as long as diag runs, so that it never opens the board or the
// scanner's port while an agent runs (the agent holds both exclusively,
// the instance lock from before it touches the board), and an agent
// starting meanwhile waits for diag. No cache file: no agent has ever run
// here.
func standalone(cfg *config.Config) (release func(), err error) {
	l, err := instance.Share(cfg.LockFile())
	if errors.Is(err, instance.ErrHeld) {
		return nil, errAgentRunning
	}
	if err != nil {
		return nil, err
	}
	path := cfg.Gate.Cache
	f, err := os.Open(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return func() { l.Release() }, nil
	case errors.Is(err, fs.ErrPermission):
		err = fmt.Errorf("cache %s: permission denied: with the agent stopped, diag opens the board, the port and the cache itself: run it as root (sudo gateagent diag)", path)
	case err != nil:
		err = fmt.Errorf("cache %s: %w", path, err)
	default:
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = errAgentRunning
		} else if err != nil {
			err = fmt.Errorf("cache %s: lock: %w", path, err)
		}
		if err != nil {
			f.Close()
		}
	}
	if err != nil {
		l.Release()
		return nil, err
	}
	return func() { f.Close(); l.Release() }, nil
}

// report is the full list of checks.
func (c *cli) report(ctx context.Context) int {
	var r *Report
	if c.daemon != nil {
		r = new(Report)
		path := "/diag"
		if c.o.deep {
			path += query("deep", "1")
		}
		if err := c.call(ctx, http.MethodGet, path, nil, r); err != nil {
			return c.fail(err)
		}
	} else {
		r = Standalone(ctx, c.o.config, c.env)
	}
	if c.o.json {
		r.WriteJSON(c.stdout)
	} else {
		r.WriteText(c.stdout)
	}
	return r.Worst().ExitCode()
}

// call asks the running agent and decodes its JSON answer into v. An
// answer other than 200 is an error carrying the agent's message.
func (c *cli) call(ctx context.Context, method, path string, body io.Reader, v any) error {
	resp, err := c.daemon.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return &agentError{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))}
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("reading the agent's answer: %w", err)
	}
	return nil
}

type agentError struct {
	status int
	msg    string
}

func (e *agentError) Error() string { return "the agent says: " + e.msg }

// fail prints err and returns FAIL's exit status.
func (c *cli) fail(err error) int {
	fmt.Fprintf(c.stderr, "gateagent diag: %v\n", err)
	return Fail.ExitCode()
}

// print writes v as JSON with --json, else calls text.
func (c *cli) print(v any, text func(io.Writer) error) {
	var err error
	if c.o.json {
		e := json.NewEncoder(c.stdout)
		e.SetIndent("", "  ")
		err = e.Encode(v)
	} else {
		err = text(c.stdout)
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "gateagent diag: printing the result: %v\n", err)
	}
}

func query(kv ...string) string {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return "?" + v.Encode()
}
