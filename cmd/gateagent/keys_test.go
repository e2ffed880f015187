package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/feed/feedtest"
)

// keysTOML is a [keys] section naming the files given.
func keysTOML(cacheKey, fleetKey string) string {
	return "[keys]\ncache_key = \"" + cacheKey + "\"\nfleet_keys = [\"" + fleetKey + "\"]\n"
}

// TestStartWithBadKeys: each way the keys can be wrong stops the agent
// before its files are opened (exit 78, one error line naming the config
// key and what to do), the relay untouched; run --check names the same.
func TestStartWithBadKeys(t *testing.T) {
	keys := t.TempDir()
	good := cachetest.WriteKey(t, keys)
	fleet := filepath.Join(keys, "fleet.key")
	os.WriteFile(fleet, fleetKeyText(t), 0o600)

	exposed := filepath.Join(keys, "exposed.key")
	os.WriteFile(exposed, cachetest.KeyBytes(), 0o644)
	short := filepath.Join(keys, "short.key")
	os.WriteFile(short, append(cachetest.KeyBytes(), '\n'), 0o600)
	notFleet := filepath.Join(keys, "not-fleet.key")
	os.WriteFile(notFleet, []byte("gateagent-issuer-key v1\nissuer-1 AAAA\n"), 0o600)

	for _, c := range []struct {
		name   string
		keys   string
		field  string
		advice string
	}{
		{"cache key readable by others", keysTOML(exposed, fleet), "keys.cache_key", "chmod 0640 " + exposed},
		{"cache key of 33 bytes", keysTOML(short, fleet), "keys.cache_key", "head -c 32 /dev/urandom"},
		{"cache key absent", keysTOML(filepath.Join(keys, "absent.key"), fleet), "keys.cache_key", "put the key there"},
		{"not a fleet key", keysTOML(good, notFleet), "keys.fleet_keys", "issuer fleet-keygen --out FILE"},
		{"credential outside the unit", keysTOML("gateagent-cache-key", fleet), "keys.cache_key", "LoadCredentialEncrypted="},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := simConfigKeys(t, dir, filepath.Join(dir, "cache.db"), "", c.keys)
			t.Setenv("CREDENTIALS_DIRECTORY", "")
			r := runGateagent(t, gateagent("run", "--config", cfg))
			startFailure(t, r, exitConfig, "keys ("+c.field+")", c.advice)
			if _, err := os.Stat(filepath.Join(dir, "cache.db")); err == nil {
				t.Error("the cache was created though the keys do not load")
			}
			rc := runGateagent(t, gateagent("run", "--config", cfg, "--check"))
			if rc.code != exitConfig || !strings.Contains(rc.stderr, c.field) || !strings.Contains(rc.stderr, c.advice) {
				t.Errorf("run --check: exit %d:\n%s", rc.code, rc.stderr)
			}
		})
	}
}

// TestStartWithAnotherCacheKey: the gate's files made under one cache key
// and the credential holding another (a key copied from another gate, a
// new one): the agent refuses to start, naming keys.cache_key and what to
// do, and leaves both files as they were (a wrong credential must not
// cost the journal's events).
func TestStartWithAnotherCacheKey(t *testing.T) {
	dir := t.TempDir()
	c, path := openCache(t, dir)
	c.Close()
	j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	// The journal's segments, whose bytes must not change.
	journalBytes := func() []byte {
		segs, _ := filepath.Glob(filepath.Join(cache.JournalPath(path), "journal.*.log"))
		var b []byte
		for _, s := range segs {
			d, _ := os.ReadFile(s)
			b = append(b, d...)
		}
		return b
	}
	before := journalBytes()
	if len(before) == 0 {
		t.Fatal("no journal segment")
	}
	keys := t.TempDir()
	other := filepath.Join(keys, "other.key")
	os.WriteFile(other, bytes.Repeat([]byte{3}, cache.KeyLen), 0o600)
	fleet := filepath.Join(keys, "fleet.key")
	os.WriteFile(fleet, fleetKeyText(t), 0o600)
	cfg := simConfigKeys(t, dir, path, "", keysTOML(other, fleet))
	r := runGateagent(t, gateagent("run", "--config", cfg))
	startFailure(t, r, exitConfig, "cache (keys.cache_key)", "another key", "restore the right credential", "/journal aside")
	if after := journalBytes(); !bytes.Equal(before, after) {
		t.Error("the refused start changed the journal")
	}
	if moved, _ := filepath.Glob(path + ".damaged-*"); len(moved) != 0 {
		t.Errorf("files moved aside: %v", moved)
	}
	rc := runGateagent(t, gateagent("run", "--config", cfg, "--check"))
	if rc.code != exitConfig || !strings.Contains(rc.stderr, "keys.cache_key") {
		t.Errorf("run --check: exit %d:\n%s", rc.code, rc.stderr)
	}
}

// fleetKeyText is the test fleet key's file.
func fleetKeyText(t *testing.T) []byte {
	t.Helper()
	b, err := feedtest.FleetKey(t, feedtest.DefaultFleetSeed).MarshalText()
	if err != nil {
		t.Fatal(err)
	}
	return b
}
