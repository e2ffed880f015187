package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"gateagent/agent"
	"gateagent/config"
)

// runRun is `gateagent run --config FILE`: the gate's daemon.
func runRun(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("run", "gateagent run [--config FILE] [--check]",
		"Runs the gate: key feed, scanner, relay. SIGTERM or SIGINT locks the gate and exits 0.", stderr)
	path := fs.String("config", "/etc/gateagent/gateagent.toml", "the gate's config `file`")
	check := fs.Bool("check", false, "check the config file and exit (0: it is good)")
	if !parseNoArgs(fs, args) {
		return 2
	}
	cfg, err := config.Load(*path)
	if err != nil {
		fmt.Fprintf(stderr, "gateagent: %v\n", err)
		return 1
	}
	if *check {
		fmt.Fprintf(stdout, "%s: config is good (gate %s, %s)\n", *path, cfg.Gate.ID, cfg.Gate.Direction)
		return 0
	}
	log := agent.SetupLogger(cfg.Log, stderr)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := agent.New(cfg, agent.Options{Logger: log, Stdout: stdout})
	if err != nil {
		log.Error("gate not started", "err", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		log.Error("gate stopped", "err", err)
		return 1
	}
	log.Info("gate stopped cleanly: locked, cache closed")
	return 0
}
