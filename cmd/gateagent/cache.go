package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"

	"gateagent/cache"
)

// runCache opens a cache file read-only (the daemon must be stopped, or the
// file copied) and prints its stats, or runs bbolt's integrity check.
func runCache(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("cache", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: gateagent cache stats|check FILE")
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 || (fs.Arg(0) != "stats" && fs.Arg(0) != "check") {
		fs.Usage()
		return 2
	}
	c, err := cache.Open(fs.Arg(1), &cache.Options{ReadOnly: true})
	if err != nil {
		fmt.Fprintln(stderr, "gateagent:", err)
		return 1
	}
	defer c.Close()
	switch fs.Arg(0) {
	case "check":
		if err := c.Check(); err != nil {
			fmt.Fprintln(stderr, "gateagent:", err)
			return 1
		}
		fmt.Fprintln(stdout, "ok:", c.Path(), "is whole")
	case "stats":
		st, err := c.Stats()
		if err != nil {
			fmt.Fprintln(stderr, "gateagent:", err)
			return 1
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(st)
	}
	return 0
}
