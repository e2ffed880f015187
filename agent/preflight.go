package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"gateagent/cache"
	"gateagent/config"
	"gateagent/internal/instance"
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
// It checks as the user it runs as: run it as the agent's user (sudo -u
// gateagent) to check that user's access. The files it reads are the ones
// New would read: the TLS files, the cache (read-only) and its directory.
func Preflight(cfg *config.Config) []Finding {
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

	dir := filepath.Dir(cfg.Gate.Cache)
	if err := writableDir(dir); err != nil {
		problem("gate.cache", err)
		return append(out, controlDir(cfg)...)
	}
	err := checkCache(cfg, note)
	switch {
	case errors.Is(err, instance.ErrHeld), errors.Is(err, cache.ErrLocked):
		note("gate.cache", "%s: held by a running agent (%v)", cfg.Gate.Cache, err)
	case err != nil:
		problem("gate.cache", err)
	}
	return append(out, controlDir(cfg)...)
}

// checkCache opens the cache read-only, unless an agent runs the gate.
func checkCache(cfg *config.Config, note func(key, format string, a ...any)) error {
	l, err := instance.Share(cfg.LockFile())
	if err != nil {
		return err
	}
	defer l.Release()
	c, err := cache.Open(cfg.Gate.Cache, &cache.Options{ReadOnly: true, LockTimeout: 50 * time.Millisecond})
	switch {
	case errors.Is(err, fs.ErrNotExist):
		note("gate.cache", "%s does not exist yet: the agent creates it and fills it from the key feed", cfg.Gate.Cache)
		return nil
	case err != nil:
		return err
	}
	defer c.Close()
	if err := writableFile(cfg.Gate.Cache); err != nil {
		return err
	}
	note("gate.cache", "%s opens", cfg.Gate.Cache)
	return nil
}

// controlDir checks that the control socket's directory exists: without
// it the agent runs, but diag can reach it only when it is stopped.
func controlDir(cfg *config.Config) []Finding {
	dir := filepath.Dir(cfg.Control.Socket)
	if err := writableDir(dir); err != nil {
		return []Finding{{Key: "control.socket", Note: fmt.Sprintf("%v: the agent will run without its control socket (systemd's RuntimeDirectory=gateagent makes %s)", err, dir)}}
	}
	return nil
}

// writableDir checks that dir exists, is a directory, and that this
// process may create files in it.
func writableDir(dir string) error {
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
	if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
		return &fs.PathError{Op: "write into directory", Path: dir, Err: err}
	}
	return nil
}

// writableFile checks that this process may read and write path.
func writableFile(path string) error {
	if err := unix.Faccessat(unix.AT_FDCWD, path, unix.R_OK|unix.W_OK, unix.AT_EACCESS); err != nil {
		return &fs.PathError{Op: "read and write", Path: path, Err: err}
	}
	return nil
}

var errNotDir = errors.New("not a directory")
