package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"gateagent/config"
	"gateagent/control"
	"gateagent/internal/cli"
)

// simCmd is `gateagent sim`: a bench without a turnstile walks a passenger
// through, or engages the emergency input, on a running agent whose board
// is simulated (hw.kind = "sim"), through its control socket.
func simCmd() *cli.Command {
	var cfgPath, socket string
	common := func(fs *flag.FlagSet) {
		fs.StringVar(&cfgPath, "config", "/etc/gateagent/gateagent.toml", "the gate's config `FILE` (for control.socket)")
		fs.StringVar(&socket, "socket", "", "the agent's control socket `PATH` (default: control.socket of the config)")
	}
	post := func(c *cli.Context, path string) int {
		return simCall(c, cfgPath, socket, http.MethodPost, path)
	}
	var forD time.Duration
	return &cli.Command{
		Name:    "sim",
		Summary: "drive a simulated board's inputs on a running agent (bench tests without a turnstile)",
		Help: `Sets the inputs of a running agent's simulated board (hw.kind = "sim") through its control
socket: someone walking through the passage, or the emergency input. A gate with real hardware
refuses: only its sensors say who passed.`,
		Commands: []*cli.Command{
			{
				Name: "passage", Args: "[on|off]", NArgs: [2]int{0, 1},
				Summary: "someone walks through the passage (or, with on or off, the sensor held or released)",
				Help:    "Someone enters the passage and leaves it --for later; with on or off, the passage sensor is held active or released instead.",
				Flags: func(fs *flag.FlagSet) {
					common(fs)
					fs.DurationVar(&forD, "for", 500*time.Millisecond, "how long the passenger stays in the passage (up to 1m)")
				},
				Run: func(c *cli.Context) int {
					if len(c.Args) == 1 {
						if c.Args[0] != "on" && c.Args[0] != "off" {
							return c.Usagef("%q: use on or off, or nothing for someone walking through", c.Args[0])
						}
						return post(c, "/sim/passage?state="+c.Args[0])
					}
					return post(c, "/sim/passage?for="+url.QueryEscape(forD.String()))
				},
			},
			{
				Name: "emergency", Args: "on|off", NArgs: [2]int{1, 1},
				Summary: "engage or release the emergency input",
				Help:    "Engages (on) or releases (off) the simulated emergency input: the gate holds the turnstile open while it is engaged.",
				Flags:   common,
				Run: func(c *cli.Context) int {
					if c.Args[0] != "on" && c.Args[0] != "off" {
						return c.Usagef("%q: use on or off", c.Args[0])
					}
					return post(c, "/sim/emergency?state="+c.Args[0])
				},
			},
			{
				Name: "state", Summary: "print the simulated board's outputs and inputs (JSON)",
				Help:  "Prints the simulated board's outputs (relay, lamps, buzzer) and inputs (passage, emergency) as JSON.",
				Flags: common,
				Run:   func(c *cli.Context) int { return simCall(c, cfgPath, socket, http.MethodGet, "/sim/") },
			},
		},
	}
}

// simCall sends one request to the agent's control socket and prints its
// answer: 0 when the agent did it, 1 when it refused or could not be asked.
func simCall(c *cli.Context, cfgPath, socket, method, path string) int {
	if socket == "" {
		socket = config.DefaultSocket
		if cfg, err := config.Load(cfgPath); err == nil {
			socket = cfg.Control.Socket
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	resp, err := control.NewClient(socket).Do(ctx, method, path, nil)
	if err != nil {
		return c.Fail(fmt.Errorf("%w: is the agent running? (gateagent run, with hw.kind = \"sim\")", err))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return c.Fail(fmt.Errorf("the agent says: %s", strings.TrimSpace(string(body))))
	}
	c.Stdout.Write(body)
	return 0
}
