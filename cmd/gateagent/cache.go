package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/internal/cli"
)

// cacheCmd is `gateagent cache stats|check FILE [--config FILE]`.
func cacheCmd() *cli.Command {
	file := func(name, summary, help string, run func(path, cfg string, explicit bool, stdout, stderr io.Writer) int) *cli.Command {
		var cfg string
		return &cli.Command{
			Name: name, Args: "FILE", NArgs: [2]int{1, 1}, Summary: summary, Help: help,
			Flags: func(fs *flag.FlagSet) {
				fs.StringVar(&cfg, "config", "/etc/gateagent/gateagent.toml", "the gate's config `FILE`, whose [keys] give the cache key the file is sealed under")
			},
			Exits: "0 done (check: the file is whole and its records authentic), 1 it is not, with what to do, 64 usage error",
			Run: func(c *cli.Context) int {
				explicit := false
				c.Flags.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
				return run(c.Args[0], cfg, explicit, c.Stdout, c.Stderr)
			},
		}
	}
	return &cli.Command{
		Name:    "cache",
		Summary: "inspect the key cache or the journal: stats, check",
		Help:    "Reads the key cache (cache.db) or the journal beside it (the directory journal, or a journal.db of an older release) without writing to it: stop the agent first, or work on a copy.",
		Commands: []*cli.Command{
			file("check", "check a file whole, and its records",
				"Checks FILE whole, page by page, without ever crashing on damage; then, under the cache key of the config's [keys], that every record authenticates. Says what to do when not.",
				func(path, cfg string, explicit bool, stdout, stderr io.Writer) int {
					return inspectCache(path, cfg, explicit, true, stdout, stderr)
				}),
			file("stats", "print a file's counts as JSON",
				"Prints what FILE holds, as JSON: certificates and feed state, or the journal's backlog and passages. It needs the cache key (the config's [keys]).",
				func(path, cfg string, explicit bool, stdout, stderr io.Writer) int {
					return inspectCache(path, cfg, explicit, false, stdout, stderr)
				}),
		},
	}
}

// cacheKey loads the cache key of the config at path.
func cacheKey(path string) (*cache.Key, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	k, err := cfg.LoadKeys()
	if err != nil {
		return nil, err
	}
	return k.Cache, nil
}

// inspectCache checks a cache or journal file, or prints its stats,
// without writing to it. On a file that is not whole it prints the error,
// then what to do.
func inspectCache(path, cfgPath string, explicit, check bool, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "gateagent:", err)
		fmt.Fprintln(stderr, "what to do:", cacheAdvice(path, err))
		return 1
	}
	key, keyErr := cacheKey(cfgPath)
	if check {
		kind, err := cache.CheckFile(path)
		if err != nil {
			return fail(err)
		}
		if keyErr != nil {
			if explicit {
				return fail(keyErr)
			}
			fmt.Fprintf(stdout, "ok: %s is whole (a gateagent %s); its records were not authenticated: no cache key (%v); give --config with the gate's [keys]\n", path, kind, keyErr)
			return 0
		}
		rep, err := authenticate(path, kind, key)
		if err != nil {
			return fail(err)
		}
		if rep.Failed > 0 {
			fmt.Fprintf(stderr, "gateagent: %s is whole, but %d of its %d records fail authentication (bytes changed on the disk), such as %s\n", path, rep.Failed, rep.Records, rep.Bad[0].Record())
			fmt.Fprintln(stderr, "what to do: (re)start the agent: it never uses them, refetches the certificates from the key feed and replaces a damaged passage conservatively; if records keep failing, replace the SD card")
			return 1
		}
		fmt.Fprintf(stdout, "ok: %s is whole (a gateagent %s), and its %d records authenticate under the cache key\n", path, kind, rep.Records)
		return 0
	}
	if keyErr != nil {
		return fail(keyErr)
	}
	ro := &cache.Options{ReadOnly: true, Key: key}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	c, err := cache.Open(path, ro)
	var ce *cache.CorruptError
	if errors.As(err, &ce) && ce.Kind == cache.Foreign {
		// Perhaps the journal: its backlog and passages.
		j, jerr := cache.OpenJournal(path, ro)
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

// authenticate checks every record of the file of the kind CheckFile found.
func authenticate(path, kind string, key *cache.Key) (cache.AuthReport, error) {
	ro := &cache.Options{ReadOnly: true, Key: key}
	if kind == "journal" {
		j, err := cache.OpenJournal(path, ro)
		if err != nil {
			return cache.AuthReport{}, err
		}
		defer j.Close()
		return j.Authenticate()
	}
	c, err := cache.Open(path, ro)
	if err != nil {
		return cache.AuthReport{}, err
	}
	defer c.Close()
	return c.Authenticate()
}

// cacheAdvice says what the technician should do about err, met on the
// file at path.
func cacheAdvice(path string, err error) string {
	var ce *cache.CorruptError
	var ke *config.KeyError
	switch {
	case errors.Is(err, cache.ErrLocked):
		return "a running agent holds the file: ask it with `gateagent diag` (it runs the same check), or stop it first"
	case errors.As(err, &ke):
		return keyAdvice(err, ke.Field) + " (or give --config with the gate's config)"
	case errors.Is(err, cache.ErrWrongKey):
		return "the file was made under another cache key: check --config names this gate's config, and keys.cache_key the gate's credential"
	case errors.Is(err, cache.ErrPlaintext):
		return "the file was written by an older release, keys in plaintext: the agent rebuilds the cache from the key feed at its next start and removes this file once the new one holds a full sync"
	case errors.Is(err, fs.ErrNotExist):
		return "check the path: the config's gate.cache names the cache; the journal is the directory journal beside it; the agent creates both at its first start"
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
	case errors.Is(err, config.ErrKeyFormat):
		return "check keys in the config"
	}
	return "check the file's owner and permissions (the agent's user must read and write it), and the disk"
}
