package main

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"gateagent/agent"
	"gateagent/cache"
	"gateagent/config"
	"gateagent/hw"
	"gateagent/internal/cli"
	"gateagent/internal/instance"
	"gateagent/internal/secret"
	"gateagent/keysync"
	"gateagent/station"
)

// Exit statuses of gateagent run, as sysexits(3) names them, so that a
// supervisor (and a technician reading `systemctl status`) can tell a gate
// that needs someone from one that may start by itself on the next try.
const (
	exitFailure  = cli.ExitFailure  // the gate ran and stopped on an error
	exitUsage    = cli.ExitUsage    // bad flags or arguments
	exitTempFail = cli.ExitTempFail // another agent holds the gate or its cache; try again later
	exitConfig   = cli.ExitConfig   // the config or the machine is wrong (a file, a directory, a permission, a pin)
)

// startExit is the exit status for a start-up error.
func startExit(err error) int {
	if agent.Transient(err) {
		return exitTempFail
	}
	return exitConfig
}

// startAdvice says what the operator does about a start-up error. The
// errors say what failed; what to do about it is said here, where it is
// shown.
func startAdvice(err error, cfg *config.Config) string {
	var (
		held    *instance.HeldError
		file    *keysync.FileError
		step    *agent.StartError
		keyFile *station.KeyFileError
	)
	errors.As(err, &step)
	dir := filepath.Dir(cfg.Gate.Cache)
	switch {
	case errors.As(err, &held):
		return "stop the other agent first (systemctl stop gateagent), or ask the running one with gateagent diag"
	case errors.Is(err, cache.ErrLocked):
		return "another process has the cache file open (gateagent cache or diag working on the gate's files): let it finish, or stop it"
	case errors.As(err, &file):
		key := "feed.ca_file"
		switch file.Field {
		case keysync.FieldCert:
			key = "feed.cert_file"
		case keysync.FieldKey:
			key = "feed.key_file"
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Sprintf("put the %s at %s, or correct %s in the config", file.Field, file.Path, key)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Sprintf("let the agent's user read it: chgrp gateagent %s && chmod 0640 %s", file.Path, file.Path)
		}
		return fmt.Sprintf("replace %s with the right PEM file (%s)", file.Path, key)
	case errors.As(err, &keyFile):
		p := keyFile.Path
		switch {
		case errors.Is(err, station.ErrKeyMode):
			return fmt.Sprintf("let only the agent's user read the station key: chown gateagent %s && chmod 0600 %s", p, p)
		case errors.Is(err, station.ErrKeyFormat):
			return fmt.Sprintf("put the group's key in %s: one key in base64, made once with `head -c 32 /dev/urandom | base64` and copied to every gate of the group", p)
		case errors.Is(err, fs.ErrNotExist):
			return fmt.Sprintf("copy the group's station key to %s (mode 0600, owned by the agent's user), or correct station.key_files", p)
		case errors.Is(err, fs.ErrPermission):
			return fmt.Sprintf("let the agent's user read the station key: chown gateagent %s && chmod 0600 %s", p, p)
		}
		return fmt.Sprintf("check %s and station.key_files", p)
	case step != nil && step.Step == "station":
		return fmt.Sprintf("check station.bind (%s): its address must be one of this board's (ip -br addr) and no other program may use its port", cfg.Station.Bind)
	case errors.Is(err, cache.ErrWrongKey):
		return fmt.Sprintf("the cache key (keys.cache_key) is not the one %s and its journal were made under: restore the right credential; if the key is lost, move %s aside (the agent rebuilds it from the key feed) and %s aside (its events cannot be read without the old key: hand it to the station), then start again",
			cfg.Gate.Cache, cfg.Gate.Cache, cache.JournalPath(cfg.Gate.Cache))
	case step != nil && step.Step == "keys":
		return keyAdvice(err, step.Key)
	case errors.Is(err, cache.ErrSchema):
		return "run a gateagent release that knows this cache, or move the file aside: the agent rebuilds it from the key feed"
	case errors.Is(err, cache.ErrCorrupt):
		return fmt.Sprintf("move %s aside (keep it for the technician) and start again: the agent rebuilds it from the key feed", cfg.Gate.Cache)
	case errors.Is(err, syscall.EROFS):
		return fmt.Sprintf("the file system of %s is read-only: remount it read-write, or point gate.cache at a writable directory", dir)
	case step != nil && (step.Step == "cache" || step.Step == "lock") && errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("create %s for the agent's user (systemd's StateDirectory=gateagent makes /var/lib/gateagent), or correct gate.cache", dir)
	case step != nil && (step.Step == "cache" || step.Step == "lock") && errors.Is(err, fs.ErrPermission):
		return fmt.Sprintf("give the agent's user %s and its files: chown -R gateagent:gateagent %s", dir, dir)
	case len(hw.PinErrors(err)) > 0:
		var keys []string
		for _, e := range hw.PinErrors(err) {
			keys = append(keys, e.Key())
		}
		return fmt.Sprintf("check %s in the config against the board's pin names (gpioinfo lists them) and the wiring, then run gateagent diag", strings.Join(keys, ", "))
	}
	return "run gateagent run --check and gateagent diag: they say what is wrong"
}

// keyAdvice says what to do about a key that cannot be loaded.
func keyAdvice(err error, field string) string {
	var se *secret.Error
	errors.As(err, &se)
	switch {
	case errors.Is(err, secret.ErrNoCredentials):
		return fmt.Sprintf("start the agent with its unit (LoadCredentialEncrypted= gives it the credential), seal the key there first (systemd-creds encrypt --name=NAME KEYFILE /etc/credstore.encrypted/NAME), or give a key file's absolute path in %s", field)
	case errors.Is(err, secret.ErrDecrypt):
		return "the sealed credential does not decrypt on this board (sealed on another one, or under another name): seal it again here with systemd-creds encrypt"
	case errors.Is(err, secret.ErrExposed) && se != nil:
		return fmt.Sprintf("others may read the key file, so the key may have leaked: chmod 0640 %s (owner root, group gateagent), and consider new keys", se.Path)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Sprintf("put the key there, or correct %s in the config", field)
	case errors.Is(err, fs.ErrPermission) && se != nil:
		return fmt.Sprintf("let the agent's user read it: chgrp gateagent %s && chmod 0640 %s", se.Path, se.Path)
	case errors.Is(err, config.ErrKeyFormat) && field == "keys.cache_key":
		return "a cache key is exactly 32 random bytes: head -c 32 /dev/urandom > FILE (no newline)"
	case errors.Is(err, config.ErrKeyFormat):
		return "a fleet key is the file `issuer fleet-keygen --out FILE` writes"
	}
	return fmt.Sprintf("check %s in the config", field)
}
