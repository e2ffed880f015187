package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"gateagent/cache"
	"gateagent/internal/cli"
)

// cacheCmd is `gateagent cache stats|check FILE`.
func cacheCmd() *cli.Command {
	file := func(name, summary, help string, run func(path string, stdout, stderr io.Writer) int) *cli.Command {
		return &cli.Command{
			Name: name, Args: "FILE", NArgs: [2]int{1, 1}, Summary: summary, Help: help,
			Exits: "0 done (check: the file is whole), 1 it is not, with what to do, 64 usage error",
			Run:   func(c *cli.Context) int { return run(c.Args[0], c.Stdout, c.Stderr) },
		}
	}
	return &cli.Command{
		Name:    "cache",
		Summary: "inspect the key cache or the journal: stats, check",
		Help:    "Reads the key cache (cache.db) or the journal beside it (journal.db) without writing to it: stop the agent first, or work on a copy.",
		Commands: []*cli.Command{
			file("check", "check a file whole", "Checks FILE whole, page by page, without ever crashing on damage; says what to do when it is not.", func(path string, stdout, stderr io.Writer) int {
				return inspectCache(path, true, stdout, stderr)
			}),
			file("stats", "print a file's counts as JSON", "Prints what FILE holds, as JSON: certificates and feed state, or the journal's backlog and passages.", func(path string, stdout, stderr io.Writer) int {
				return inspectCache(path, false, stdout, stderr)
			}),
		},
	}
}

// inspectCache checks a cache or journal file, or prints its stats,
// without writing to it. On a file that is not whole it prints the error,
// then what to do.
func inspectCache(path string, check bool, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "gateagent:", err)
		fmt.Fprintln(stderr, "what to do:", cacheAdvice(path, err))
		return 1
	}
	if check {
		kind, err := cache.CheckFile(path)
		if err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "ok: %s is whole (a gateagent %s)\n", path, kind)
		return 0
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	c, err := cache.Open(path, &cache.Options{ReadOnly: true})
	var ce *cache.CorruptError
	if errors.As(err, &ce) && ce.Kind == cache.Foreign {
		// Perhaps the journal: its backlog and passages.
		j, jerr := cache.OpenJournal(path, &cache.Options{ReadOnly: true})
		if jerr != nil {
			return fail(err)
		}
		defer j.Close()
		b, err := j.Backlog()
		if err != nil {
			return fail(err)
		}
		enc.Encode(struct {
			Backlog   cache.Backlog `json:"backlog"`
			Passbacks int           `json:"passbacks"`
		}{b, j.Passbacks()})
		return 0
	}
	if err != nil {
		return fail(err)
	}
	defer c.Close()
	st, err := c.Stats()
	if err != nil {
		return fail(err)
	}
	enc.Encode(st)
	return 0
}

// cacheAdvice says what the technician should do about err, met on the
// file at path.
func cacheAdvice(path string, err error) string {
	var ce *cache.CorruptError
	switch {
	case errors.Is(err, cache.ErrLocked):
		return "a running agent holds the file: ask it with `gateagent diag` (it runs the same check), or stop it first"
	case errors.Is(err, fs.ErrNotExist):
		return "check the path: the config's gate.cache names the cache; the journal is journal.db beside it; the agent creates both at its first start"
	case errors.Is(err, cache.ErrSchema):
		return "the file was written by another gateagent version: run that version, or move the file aside and let this agent rebuild it"
	case errors.As(err, &ce) && ce.Kind == cache.Empty:
		return "an agent stopped in its first moments leaves an empty file: the agent recreates it at its next start; nothing to do"
	case errors.As(err, &ce) && ce.Kind == cache.Foreign:
		return "this is not a gateagent cache or journal (or not of the kind asked for): check the path; if it is the gate's own file, (re)start the agent: it moves the file aside and rebuilds it"
	case errors.As(err, &ce) && ce.Kind == cache.Truncated:
		return fmt.Sprintf("the file is cut short (a full disk, or a copy that did not finish): (re)start the agent: it moves the file aside as %s.damaged-TIME and rebuilds it (the certificates from the key feed; a journal keeps the events it can still read)", path)
	case errors.As(err, &ce):
		return fmt.Sprintf("(re)start the agent (systemctl restart gateagent): it moves the file aside as %s.damaged-TIME, keeps the events it can still read and rebuilds the certificates from the key feed; keep the damaged copy for the station", path)
	}
	return "check the file's owner and permissions (the agent's user must read and write it), and the disk"
}
