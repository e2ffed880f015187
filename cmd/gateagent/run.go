package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"gateagent/agent"
	"gateagent/config"
)

// runRun is `gateagent run --config FILE`: the gate's daemon.
func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "gateagent run [--config FILE] [--check]",
		"Runs the gate: key feed, scanner, relay. SIGTERM or SIGINT locks the gate and exits 0.", stderr)
	path := fs.String("config", "/etc/gateagent/gateagent.toml", "the gate's config `file`")
	check := fs.Bool("check", false, "check the config file and what the gate needs at start (files, directories, the cache), without taking the gate, and exit (0: all good)")
	if !parseNoArgs(fs, args) {
		return exitUsage
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "gateagent: %v\n", err)
		return exitConfig
	}
	if *check {
		return runCheck(*path, cfg, stdout, stderr)
	}
	log := agent.SetupLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
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

// runCheck is run --check: the config loaded, then what the agent needs at
// start, as the user it runs as.
func runCheck(path string, cfg *config.Config, stdout, stderr io.Writer) int {
	fmt.Fprintf(stdout, "%s: config is good (gate %s, %s)\n", path, cfg.Gate.ID, cfg.Gate.Direction)
	bad := 0
	for _, f := range agent.Preflight(cfg) {
		if f.Problem {
			bad++
			fmt.Fprintf(stderr, "gateagent: %s: %v\n  fix: %s\n", f.Key, f.Err, startAdvice(&agent.StartError{Step: preflightStep(f.Key), Key: f.Key, Err: f.Err}, cfg))
			continue
		}
		fmt.Fprintf(stdout, "%s: %s\n", f.Key, f.Note)
	}
	if bad > 0 {
		fmt.Fprintf(stderr, "gateagent: %d problem(s): the gate would not start or could not grant (checked as %s)\n", bad, whoami())
		return exitConfig
	}
	fmt.Fprintf(stdout, "ready to start (checked as %s)\n", whoami())
	return 0
}

// preflightStep is the start-up step that reads a config key.
func preflightStep(key string) string {
	switch {
	case key == "gate.cache":
		return "cache"
	case strings.HasPrefix(key, "station"):
		return "station"
	}
	return "feed"
}

// whoami names the user the checks ran as.
func whoami() string {
	uid := os.Geteuid()
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		return fmt.Sprintf("user %s, uid %d", u.Username, uid)
	}
	return fmt.Sprintf("uid %d", uid)
}
