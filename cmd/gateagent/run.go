package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"gateagent/agent"
	"gateagent/config"
	"gateagent/diag"
	"gateagent/internal/cli"
	"gateagent/internal/fsaccess"
	"gateagent/internal/logging"
	"gateagent/internal/plural"
)

// runCmd is `gateagent run --config FILE`: the gate's daemon.
func runCmd() *cli.Command {
	var (
		path, as string
		check    bool
	)
	return &cli.Command{
		Name:    "run",
		Summary: "run the gate (--config FILE)",
		Help: `Runs the gate: key feed, scanner, relay. SIGTERM or SIGINT locks the gate and exits 0.
With --check it checks the config file and what the gate needs at start (files, directories,
the cache, as the agent's user), without taking the gate, and exits.`,
		Flags: func(fs *flag.FlagSet) {
			fs.StringVar(&path, "config", "/etc/gateagent/gateagent.toml", "the gate's config `FILE`")
			fs.BoolVar(&check, "check", false, "check the config and what the gate needs at start, then exit (0: all good)")
			fs.StringVar(&as, "user", "", "with --check, check files and directories as this `USER` (default: "+diag.AgentUser+", the unit's User=, when run as root and it exists; else yourself)")
		},
		Exits: "0 stopped cleanly (or --check: all good), 1 the gate stopped on an error, 64 usage error, 75 another agent holds the gate or its cache (try again), 78 the config or the machine is wrong",
		Run:   func(c *cli.Context) int { return runGate(path, check, as, c.Stdout, c.Stderr) },
	}
}

// runGate loads the config and runs the gate, or checks it.
func runGate(path string, check bool, as string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path)
	if err != nil {
		printError(stderr, "gateagent: %v", err)
		return exitConfig
	}
	if check {
		return runCheck(path, cfg, as, stdout, stderr)
	}
	log := agent.SetupLogger(cfg.Log, stderr)
	agent.SetProcs()
	// SIGHUP (the session that ran the agent hung up, or a kill -HUP meant
	// as "reload") stops the gate as SIGTERM does, locked and its cache
	// closed; under systemd (Restart=always) it starts again on its
	// config. Go's default for it would end the process at once, the
	// relay wherever it was.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	// A log or board printout whose reader went away (journald restarted,
	// a closed pipe) must not end the gate: its writes fail, and the gate
	// goes on.
	signal.Ignore(syscall.SIGPIPE)
	a, err := agent.New(cfg, agent.Options{Logger: log, Stdout: stdout})
	if err != nil {
		log.Error("gate not started", "err", err, "fix", startAdvice(err, cfg))
		return startExit(err)
	}
	if err := a.Run(ctx); err != nil {
		log.Error("gate stopped", "err", err)
		return exitFailure
	}
	log.Info("gate stopped cleanly: locked, cache closed")
	return 0
}

// printError writes an error for a person, as it is before the logger
// exists (the config could not be read); under systemd every line of it
// carries the error priority, so that journalctl -p err shows it.
func printError(w io.Writer, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if logging.JournalStream(w) {
		msg = "<3>" + strings.ReplaceAll(msg, "\n", "\n<3>")
	}
	fmt.Fprintln(w, msg)
}

// runCheck is run --check: the config loaded, then what the agent needs at
// start, as the user it runs as.
func runCheck(path string, cfg *config.Config, name string, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "%s: config is good (gate %s, %s)\n", path, cfg.Gate.ID, cfg.Gate.Direction)
	as, err := agentUser(name)
	if err != nil {
		fmt.Fprintf(stderr, "gateagent: %v\n", err)
		return exitConfig
	}
	bad := 0
	for _, f := range agent.Preflight(cfg, as) {
		if f.Problem {
			bad++
			fmt.Fprintf(stderr, "gateagent: %s: %v\n  fix: %s\n", f.Key, f.Err, startAdvice(&agent.StartError{Step: preflightStep(f.Key), Key: f.Key, Err: f.Err}, cfg))
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", f.Key, f.Note)
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "gateagent: %s: the gate would not start or could not grant (access checked as %s)\n", plural.N(bad, "problem", "problems"), as)
		return exitConfig
	}
	fmt.Fprintf(stdout, "ready to start (access checked as %s)\n", as)
	return 0
}

// agentUser is whose access run --check checks: the user named, or root
// checks as the agent's user (the unit's User=) when the machine has it,
// anyone else as themselves.
func agentUser(name string) (fsaccess.User, error) {
	if name != "" {
		return fsaccess.Lookup(name)
	}
	if os.Geteuid() == 0 {
		if u, err := fsaccess.Lookup(diag.AgentUser); err == nil {
			return u, nil
		}
	}
	return fsaccess.Current()
}

// preflightStep is the start-up step that reads a config key.
func preflightStep(key string) string {
	switch {
	case key == "gate.cache":
		return "cache"
	case strings.HasPrefix(key, "station"):
		return "station"
	case strings.HasPrefix(key, "keys"):
		return "keys"
	}
	return "feed"
}
