package config

import (
	"errors"
	"fmt"

	"gateagent/cache"
	"gateagent/feed"
	"gateagent/internal/secret"
)

// KeySources says where the gate's keys are. Each value is a systemd credential
// name (the unit's LoadCredentialEncrypted= makes it available to the
// agent alone, sealed at rest with the TPM2 or the host key) or an
// absolute path of a key file (in the clear on the disk: for the demo,
// tests and bench boards).
type KeySources struct {
	// CacheKey is the gate's 32-byte cache key, under which the key cache
	// and the journal are sealed and authenticated.
	CacheKey string `toml:"cache_key"`
	// FleetKeys are the fleet private keys (`issuer fleet-keygen`) that
	// open the certificate keys sealed in the feed: one, two during a
	// rotation.
	FleetKeys []string `toml:"fleet_keys"`
}

// The credential names the unit loads (configs/gateagent.service).
const (
	DefaultCacheKey = "gateagent-cache-key"
	DefaultFleetKey = "gateagent-fleet-key"
)

func defaultKeys() KeySources {
	return KeySources{CacheKey: DefaultCacheKey, FleetKeys: []string{DefaultFleetKey}}
}

// validateKeys checks the references' form (Preflight and the agent read
// them).
func (c *Config) validateKeys(bad func(key, format string, a ...any)) {
	if err := secret.CheckRef(c.Keys.CacheKey); err != nil {
		bad("keys.cache_key", "%v", err)
	}
	switch n := len(c.Keys.FleetKeys); {
	case n == 0:
		bad("keys.fleet_keys", "empty: give the fleet private key's credential name or file (from `issuer fleet-keygen`)")
	case n > feed.MaxWraps:
		bad("keys.fleet_keys", "%d keys: at most %d (two during a rotation)", n, feed.MaxWraps)
	}
	seen := map[string]bool{}
	for _, ref := range c.Keys.FleetKeys {
		if err := secret.CheckRef(ref); err != nil {
			bad("keys.fleet_keys", "%v", err)
		}
		if seen[ref] {
			bad("keys.fleet_keys", "%q listed twice", ref)
		}
		seen[ref] = true
	}
	if seen[c.Keys.CacheKey] {
		bad("keys.fleet_keys", "%q is also keys.cache_key: they are different keys", c.Keys.CacheKey)
	}
}

// LoadedKeys are the gate's keys, read, and where each came from.
type LoadedKeys struct {
	Cache     *cache.Key
	CacheFrom secret.Source
	Fleet     *feed.Fleet
	// FleetIDs and FleetFrom are each fleet key's ID and source, in the
	// config's order.
	FleetIDs  []feed.FleetKeyID
	FleetFrom []secret.Source
}

// Sealed reports whether every key is sealed at rest (systemd credentials
// in a credstore), none in the clear on the disk.
func (k *LoadedKeys) Sealed() bool {
	if !k.CacheFrom.Sealed {
		return false
	}
	for _, s := range k.FleetFrom {
		if !s.Sealed {
			return false
		}
	}
	return true
}

// KeyError is a key of the config that could not be loaded: Field is its
// config key.
type KeyError struct {
	Field string
	Err   error
}

// Error is the cause alone: the callers name the field.
func (e *KeyError) Error() string { return e.Err.Error() }
func (e *KeyError) Unwrap() error { return e.Err }

// ErrKeyFormat: a key's bytes are not a key of its kind.
var ErrKeyFormat = errors.New("not a key of this kind")

// LoadKeys reads the cache key and the fleet keys. An error is a
// *KeyError naming the config key.
func (c *Config) LoadKeys() (*LoadedKeys, error) {
	k := &LoadedKeys{}
	raw, src, err := secret.Read(c.Keys.CacheKey, cache.KeyLen+1)
	if err != nil {
		return nil, &KeyError{"keys.cache_key", err}
	}
	k.CacheFrom = src
	k.Cache, err = cache.NewKey(raw)
	clear(raw)
	if err != nil {
		return nil, &KeyError{"keys.cache_key", fmt.Errorf("%s: %w: %w (make one with: head -c 32 /dev/urandom)", src, ErrKeyFormat, cache.ErrKeyLength)}
	}
	var fleet []*feed.FleetKey
	for _, ref := range c.Keys.FleetKeys {
		raw, src, err := secret.Read(ref, feed.MaxFleetKeyFile)
		if err != nil {
			return nil, &KeyError{"keys.fleet_keys", err}
		}
		fk, err := feed.ParseFleetKey(raw)
		clear(raw)
		if err != nil {
			return nil, &KeyError{"keys.fleet_keys", fmt.Errorf("%s: %w: %w", src, ErrKeyFormat, err)}
		}
		fleet = append(fleet, fk)
		k.FleetIDs = append(k.FleetIDs, fk.ID)
		k.FleetFrom = append(k.FleetFrom, src)
	}
	if k.Fleet, err = feed.NewFleet(fleet...); err != nil {
		return nil, &KeyError{"keys.fleet_keys", err}
	}
	return k, nil
}
