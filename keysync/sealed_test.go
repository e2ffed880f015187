package keysync_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/feed"
	"gateagent/feed/feedtest"
	"gateagent/internal/eventually"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/verify"
)

// upsertAt is the offset of upsert i in a signed page (format 2).
func upsertAt(b []byte, i int) int {
	k := int(b[6])
	nWrap := int(b[7+k+88])
	return 7 + k + 89 + nWrap*feed.WrapLen + i*feed.UpsertLen
}

func resign(s *feed.Signer, b []byte) []byte {
	body := bytes.Clone(b[:len(b)-feed.SigLen])
	return append(body, ed25519.Sign(s.Key, body)...)
}

// TestSealedPagesRefused: pages a gate must not apply, though validly
// signed (the issuer's key itself in the wrong hands, or an issuer set up
// wrongly): sealed to a fleet key the gate does not hold, of format 1
// (keys in plaintext), a sealed key tampered with, a sealed key moved to
// another certificate. Each is refused with its own error and the cache
// file does not change.
func TestSealedPagesRefused(t *testing.T) {
	var mode atomic.Value
	mode.Store("")
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	signer := s.Opts.Signer
	s.Wrap = func(h http.Handler) http.Handler {
		return tamper(h, func(path string, b []byte) []byte {
			if !strings.HasPrefix(path, "/v1/feed/log/") && !strings.HasPrefix(path, "/v1/feed/snapshot/") {
				return b
			}
			b = bytes.Clone(b)
			switch mode.Load().(string) {
			case "format 1":
				d, err := feed.Open(b, feedtest.Keyring(t, signer), feedtest.Fleet(t))
				if err != nil {
					t.Errorf("the genuine page does not open: %v", err)
					return b
				}
				return feedtest.SignV1(signer, d)
			case "ciphertext":
				if len(b) > upsertAt(b, 1) {
					b[upsertAt(b, 0)+40] ^= 0x10
					return resign(signer, b)
				}
			case "moved":
				if len(b) > upsertAt(b, 2) {
					x := b[upsertAt(b, 0)+33 : upsertAt(b, 1)]
					y := b[upsertAt(b, 1)+33 : upsertAt(b, 2)]
					tmp := bytes.Clone(x)
					copy(x, y)
					copy(y, tmp)
					return resign(signer, b)
				}
			}
			return b
		})
	}
	s.Restart()
	certs := synthetic(t, s, 4, 1)
	g := newGate(t, s.URL, feedtest.Keyring(t, signer), nil)
	g.sync(t)
	synthetic(t, s, 5, 2)

	g.refusesEach(t, &mode, refusal{"format 1", feed.ErrVersion}, refusal{"ciphertext", feed.ErrSealed}, refusal{"moved", feed.ErrSealed})

	// The issuer seals to another fleet's key: refused, naming both.
	other := feedtest.FleetKey(t, 42)
	s.Opts.Fleet = feedtest.Publics(other)
	s.Restart()
	err := g.refusedSync(t, "a page sealed to an unknown fleet key")
	var fe *feed.FleetKeyError
	if !errors.As(err, &fe) || !strings.Contains(err.Error(), other.ID.String()) || !strings.Contains(err.Error(), feedtest.FleetKey(t, feedtest.DefaultFleetSeed).ID.String()) {
		t.Fatalf("another fleet's key: %v, want a FleetKeyError naming both keys", err)
	}
	// Back to the right key: the gate catches up.
	s.Opts.Fleet = feedtest.Publics(feedtest.FleetKey(t, feedtest.DefaultFleetSeed))
	s.Restart()
	g.sync(t)
	checkHolds(t, g, certs, 9)
}

// TestFleetKeyRotation: the issuer seals to the old and the new fleet key
// while gates move from one to the other; a gate holding either syncs.
func TestFleetKeyRotation(t *testing.T) {
	old, next := feedtest.FleetKey(t, 1), feedtest.FleetKey(t, 2)
	s := issuertest.Start(t, issuer.Options{PageSize: 8, Fleet: feedtest.Publics(old, next)})
	certs := synthetic(t, s, 12, 1)
	for _, held := range []*feed.FleetKey{old, next} {
		g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), func(c *keysync.Config) { c.Fleet = feedtest.Fleet(t, held) })
		g.sync(t)
		checkHolds(t, g, certs, 12)
	}
}

// TestHealRefetchesAtOnce: a record that failed authentication is
// refetched as soon as Heal asks, not at the next poll (the interval here
// is an hour): the round that Heal wakes lays a full snapshot over the
// cache, and the record authenticates again.
func TestHealRefetchesAtOnce(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	certs := synthetic(t, s, 20, 1)
	path := filepath.Join(t.TempDir(), "cache.db")
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	cfg := keysync.Config{URL: s.URL, Keys: feedtest.Keyring(t, s.Opts.Signer), Fleet: feedtest.Fleet(t), Cache: c, Interval: time.Hour}
	g, err := keysync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	victim := certs[7]
	if err := cachetest.DamageRecord(path, "certs", victim.ID[:], 1+7, 0x01); err != nil { // not_before
		t.Fatal(err)
	}
	if cfg.Cache, err = cache.Open(path, cachetest.Options(nil)); err != nil {
		t.Fatal(err)
	}
	defer cfg.Cache.Close()
	if _, _, err := cfg.Cache.Lookup(victim.ID, verify.Entry); !errors.Is(err, cache.ErrAuth) {
		t.Fatalf("damaged record: %v", err)
	}
	if g, err = keysync.New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	// Run's first round finds nothing new; then it waits its hour.
	eventually.True(t, 10*time.Second, "the head at 20", func() bool { return g.Status().Head == 20 })
	g.Heal(victim.ID)
	eventually.True(t, 10*time.Second, "the damaged record refetched", func() bool {
		r, ok, err := cfg.Cache.Lookup(victim.ID, verify.Entry)
		return err == nil && ok && r.Key == victim.Key && r.NotBefore.Equal(victim.NotBefore)
	})
	cancel()
	<-done
}
