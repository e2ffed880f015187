package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/internal/fsaccess"
	"gateagent/internal/instance"
	"gateagent/internal/secret"
	"gateagent/keysync"
)

// Finding is one thing Preflight found. A finding with Problem set would
// keep the gate from starting or from granting; the others are notes.
type Finding struct {
	// Key is the config key the finding is about.
	Key string
	// Problem: the agent would not start, or would start unable to grant.
	Problem bool
	// Err is what is wrong (Problem), or nil for a note.
	Err error
	// Note says what was found when nothing is wrong, or what the
	// agent will do about it.
	Note string
}

// Preflight checks what the agent needs at start without taking the gate:
// it drives no output, opens no scanner port, and never waits on a lock.
// Access to the state directory and the cache is checked as user as (the
// agent's user; see internal/fsaccess), the files it reads (the TLS files,
// the cache, read-only) are read as the process runs.
func Preflight(cfg *config.Config, as fsaccess.User) []Finding {
	var out []Finding
	problem := func(key string, err error) { out = append(out, Finding{Key: key, Problem: true, Err: err}) }
	note := func(key, format string, a ...any) {
		out = append(out, Finding{Key: key, Note: fmt.Sprintf(format, a...)})
	}

	if _, err := keysync.NewHTTPClient(cfg.TLSOptions()); err != nil {
		problem(tlsKey(err), err)
	} else if cfg.Feed.CAFile != "" || cfg.Feed.CertFile != "" {
		note("feed", "TLS files readable")
	}

	out = append(out, stationFindings(cfg)...)
	keys := checkKeys(cfg, as, problem, note)

	dir := filepath.Dir(cfg.Gate.Cache)
	if err := writableDir(dir, as); err != nil {
		problem("gate.cache", err)
		return append(out, controlDir(cfg, as)...)
	}
	if keys == nil {
		note("gate.cache", "not opened: no cache key")
		return append(out, controlDir(cfg, as)...)
	}
	err := checkCache(cfg, keys, as, note)
	switch {
	case errors.Is(err, instance.ErrHeld), errors.Is(err, cache.ErrLocked):
		note("gate.cache", "%s: held by a running agent (%v)", cfg.Gate.Cache, err)
	case errors.Is(err, cache.ErrWrongKey):
		problem("keys.cache_key", err)
	case err != nil:
		problem("gate.cache", err)
	}
	return append(out, controlDir(cfg, as)...)
}

// checkKeys reads the keys as the agent would (run --check as root
// outside the service decrypts sealed credentials with systemd-creds),
// and checks that the agent's user may read the key files.
func checkKeys(cfg *config.Config, as fsaccess.User, problem func(string, error), note func(key, format string, a ...any)) *config.LoadedKeys {
	if os.Geteuid() != 0 {
		// Sealed credentials decrypt only for the service, or for root
		// with systemd-creds: an ordinary user can only see they are there.
		var sealed []string
		for _, ref := range append([]string{cfg.Keys.CacheKey}, cfg.Keys.FleetKeys...) {
			if p, ok := secret.SealedOnly(ref); ok {
				sealed = append(sealed, p)
			}
		}
		if len(sealed) > 0 {
			note("keys", "sealed credentials %s are there; systemd decrypts them for the agent: run --check as root to decrypt and check them", strings.Join(sealed, ", "))
			return nil
		}
	}
	k, err := cfg.LoadKeys()
	if err != nil {
		key := "keys"
		var ke *config.KeyError
		if errors.As(err, &ke) {
			key = ke.Field
		}
		problem(key, err)
		return nil
	}
	for i, src := range append([]secret.Source{k.CacheFrom}, k.FleetFrom...) {
		key := "keys.cache_key"
		if i > 0 {
			key = "keys.fleet_keys"
		}
		if src.Kind == secret.File {
			if _, err := fsaccess.Check(src.Path, fsaccess.Read, as); err != nil {
				problem(key, err)
				return nil
			}
		}
	}
	var fleet []string
	for _, id := range k.Fleet.IDs() {
		fleet = append(fleet, id.String())
	}
	sealed := "sealed"
	if !k.Sealed() {
		sealed = "NOT all sealed: a key file is in the clear on the disk (seal it with systemd-creds, docs/install.md: The keys)"
	}
	note("keys", "cache key from %s; fleet keys %s; %s", k.CacheFrom, strings.Join(fleet, ", "), sealed)
	return k
}

// checkCache opens the cache read-only, unless an agent runs the gate.
func checkCache(cfg *config.Config, keys *config.LoadedKeys, as fsaccess.User, note func(key, format string, a ...any)) error {
	l, err := instance.Share(cfg.LockFile())
	if err != nil {
		return err
	}
	defer l.Release()
	ro := &cache.Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond, Key: keys.Cache}
	c, err := cache.Open(cfg.Gate.Cache, ro)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		note("gate.cache", "%s does not exist yet: the agent creates it and fills it from the key feed", cfg.Gate.Cache)
		return nil
	case errors.Is(err, cache.ErrPlaintext):
		note("gate.cache", "%s was written by an older release (keys in plaintext): the agent rebuilds it from the key feed at start and removes it once the new one holds a full sync", cfg.Gate.Cache)
		return nil
	case err != nil:
		return err
	}
	defer c.Close()
	if _, err := fsaccess.Check(cfg.Gate.Cache, fsaccess.Read|fsaccess.Write, as); err != nil {
		return err
	}
	if j, err := cache.OpenJournal(cache.JournalPath(cfg.Gate.Cache), ro); err == nil {
		j.Close()
	} else if errors.Is(err, cache.ErrWrongKey) {
		return err
	}
	note("gate.cache", "%s opens under the cache key", cfg.Gate.Cache)
	return nil
}

// controlDir checks that the control socket's directory exists: without
// it the agent runs, but diag can reach it only when it is stopped.
func controlDir(cfg *config.Config, as fsaccess.User) []Finding {
	dir := filepath.Dir(cfg.Control.Socket)
	if err := writableDir(dir, as); err != nil {
		return []Finding{{Key: "control.socket", Note: fmt.Sprintf("%v: the agent will run without its control socket (systemd's RuntimeDirectory=gateagent makes %s)", err, dir)}}
	}
	return nil
}

// writableDir checks that dir exists, is a directory, and that user as
// may create files in it.
func writableDir(dir string, as fsaccess.User) error {
	fi, err := os.Stat(dir)
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: "directory", Path: dir, Err: pe.Err}
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %w", dir, errNotDir)
	}
	if _, err := fsaccess.Check(dir, fsaccess.Write|fsaccess.Search, as); err != nil {
		return err
	}
	return nil
}

var errNotDir = errors.New("not a directory")
