package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/feed/feedtest"
	"gateagent/internal/secret"
)

func TestKeysSection(t *testing.T) {
	c, err := config.Load(example)
	if err != nil {
		t.Fatal(err)
	}
	if c.Keys.CacheKey != config.DefaultCacheKey || len(c.Keys.FleetKeys) != 1 || c.Keys.FleetKeys[0] != config.DefaultFleetKey {
		t.Fatalf("example keys %+v, want the unit's credential names", c.Keys)
	}
	for name, mod := range map[string]struct {
		mod  func(*config.Config)
		want string
	}{
		"relative path":   {func(c *config.Config) { c.Keys.CacheKey = "keys/cache.key" }, "keys.cache_key"},
		"no fleet key":    {func(c *config.Config) { c.Keys.FleetKeys = nil }, "keys.fleet_keys"},
		"fleet key twice": {func(c *config.Config) { c.Keys.FleetKeys = []string{"a", "a"} }, "listed twice"},
		"same as cache":   {func(c *config.Config) { c.Keys.FleetKeys = []string{c.Keys.CacheKey} }, "also keys.cache_key"},
		"five fleet keys": {func(c *config.Config) { c.Keys.FleetKeys = []string{"a", "b", "c", "d", "e"} }, "at most 4"},
	} {
		cc := *c
		mod.mod(&cc)
		if err := cc.Validate(); err == nil || !strings.Contains(err.Error(), mod.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, mod.want)
		}
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	c, err := config.Load(example)
	if err != nil {
		t.Fatal(err)
	}
	text, _ := feedtest.FleetKey(t, 3).MarshalText()
	fleetPath := filepath.Join(dir, "fleet.key")
	os.WriteFile(fleetPath, text, 0o600)
	c.Keys = config.KeySources{CacheKey: cachetest.WriteKey(t, dir), FleetKeys: []string{fleetPath}}
	k, err := c.LoadKeys()
	if err != nil || k.Fleet.Len() != 1 || k.Fleet.IDs()[0] != feedtest.FleetKey(t, 3).ID || k.Sealed() || k.CacheFrom.Kind != secret.File {
		t.Fatalf("LoadKeys: %+v, %v", k, err)
	}
	short := filepath.Join(dir, "short.key")
	os.WriteFile(short, []byte("0123456789abcdef0123456789abcdef\n"), 0o600) // 33 bytes: a newline too many
	c.Keys.CacheKey = short
	var ke *config.KeyError
	if _, err := c.LoadKeys(); !errors.As(err, &ke) || ke.Field != "keys.cache_key" || !errors.Is(err, config.ErrKeyFormat) || !errors.Is(err, cache.ErrKeyLength) {
		t.Fatalf("a cache key of 33 bytes: %v", err)
	}
	c.Keys.CacheKey = cachetest.WriteKey(t, t.TempDir())
	os.Chmod(fleetPath, 0o644)
	if _, err := c.LoadKeys(); !errors.As(err, &ke) || ke.Field != "keys.fleet_keys" || !errors.Is(err, secret.ErrExposed) {
		t.Fatalf("a fleet key file of mode 0644: %v", err)
	}
	os.Chmod(fleetPath, 0o600)
	os.WriteFile(fleetPath, []byte("not a key\n"), 0o600)
	if _, err := c.LoadKeys(); !errors.As(err, &ke) || !errors.Is(err, config.ErrKeyFormat) {
		t.Fatalf("a fleet key file of garbage: %v", err)
	}
}
