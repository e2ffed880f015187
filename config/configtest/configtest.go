// Package configtest gives tests a gate's keys: the test cache key and the
// fleet key the test issuer (issuertest) seals to, in key files of mode
// 0600, as a config's [keys] section names them.
package configtest

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/feed/feedtest"
	"gateagent/internal/secret"
)

// Keys writes the test keys into dir (which should not be the gate's
// state directory: keys are not kept beside the files they seal) and
// returns the [keys] section that names them.
func Keys(t testing.TB, dir string) config.KeySources {
	t.Helper()
	fleet, err := feedtest.FleetKey(t, feedtest.DefaultFleetSeed).MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	fp := filepath.Join(dir, "fleet.key")
	if err := os.WriteFile(fp, fleet, 0o600); err != nil {
		t.Fatal(err)
	}
	return config.KeySources{CacheKey: cachetest.WriteKey(t, dir), FleetKeys: []string{fp}}
}

// TOML is the [keys] section of Keys, for tests that write a config file.
func TOML(t testing.TB, dir string) string {
	t.Helper()
	k := Keys(t, dir)
	return "[keys]\ncache_key = \"" + k.CacheKey + "\"\nfleet_keys = [\"" + k.FleetKeys[0] + "\"]\n"
}

// Credentials gives the test keys as systemd credentials, as a gate's
// unit does: the keys in a directory of their own named by
// $CREDENTIALS_DIRECTORY (set for the rest of the test), and a sealed
// credential of each name in a credstore (secret.CredstoreDirs, replaced
// for the test), so that they count as sealed. It returns the [keys]
// section naming them. The test must not run in parallel.
func Credentials(t testing.TB) config.KeySources {
	t.Helper()
	creds, store := t.TempDir(), t.TempDir()
	k := Keys(t, creds)
	for from, name := range map[string]string{k.CacheKey: config.DefaultCacheKey, k.FleetKeys[0]: config.DefaultFleetKey} {
		if err := os.Rename(from, filepath.Join(creds, name)); err != nil {
			t.Fatal(err)
		}
		// The sealed file's content is systemd's business: diag and the
		// agent only look for it.
		if err := os.WriteFile(filepath.Join(store, name), []byte("sealed by systemd-creds"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	old := secret.CredstoreDirs
	secret.CredstoreDirs = []string{store}
	t.Cleanup(func() { secret.CredstoreDirs = old })
	return config.KeySources{CacheKey: config.DefaultCacheKey, FleetKeys: []string{config.DefaultFleetKey}}
}

// CredentialsTOML is the [keys] section of Credentials.
func CredentialsTOML(t testing.TB) string {
	t.Helper()
	k := Credentials(t)
	return "[keys]\ncache_key = \"" + k.CacheKey + "\"\nfleet_keys = [\"" + k.FleetKeys[0] + "\"]\n"
}

// Sim is the config file of a gate on the simulated board, as the tests
// that run the whole agent (in a process of its own) write it: its files
// (cache.db, control.sock) in Dir, the key feed polled every second, the
// scanner at 115200 baud with no repeat window.
type Sim struct {
	ID      string // the gate's ID
	Dir     string // its state directory, where the file is written too
	FeedURL string // its issuer's URL
	Key     string // the issuer's public key, as trusted_keys lists it
	Port    string // its scanner's serial port
	Extra   string // further sections ([timing], [log]…)
	Keys    string // the [keys] section; TOML's, in a directory of its own, when empty
}

// Write writes the config file into Dir and returns its path.
func (s Sim) Write(t testing.TB) string {
	t.Helper()
	keys := s.Keys
	if keys == "" {
		keys = TOML(t, t.TempDir())
	}
	path := filepath.Join(s.Dir, "gateagent.toml")
	text := fmt.Sprintf(`version = 1
[gate]
id = %q
cache = %q
[feed]
url = %q
trusted_keys = [%q]
interval = "1s"
[scanner]
port = %q
baud = 115200
repeat_window = "0s"
[hw]
kind = "sim"
[control]
socket = %q
%s%s`, s.ID, filepath.Join(s.Dir, "cache.db"), s.FeedURL, s.Key, s.Port, filepath.Join(s.Dir, "control.sock"), s.Extra, keys)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
