package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"

	"gateagent/cache"
)

// runCache checks a cache or journal file, or prints a cache's stats,
// without writing to it (the daemon must be stopped, or the file copied).
// On a file that is not whole it prints the error, then what to do.
func runCache(args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("cache", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprintln(stderr, "usage: gateagent cache stats|check FILE")
		fmt.Fprintln(stderr, "  FILE: the key cache (cache.db) or the journal beside it (journal.db)")
		fmt.Fprintln(stderr, "  check: checks the file whole; exit 0 when it is, 1 when not, with what to do")
	}
	if err := fl.Parse(args); err != nil {
		return 2
	}
	if fl.NArg() != 2 || (fl.Arg(0) != "stats" && fl.Arg(0) != "check") {
		fl.Usage()
		return 2
	}
	path := fl.Arg(1)
	fail := func(err error) int {
		fmt.Fprintln(stderr, "gateagent:", err)
		fmt.Fprintln(stderr, "what to do:", cacheAdvice(path, err))
		return 1
	}
	if fl.Arg(0) == "check" {
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
