package keysync

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/feed"
	"gateagent/verify"
)

// FuzzLogPage gives arbitrary bytes to the gate as the answer for a log
// page: they must be refused with an error, leaving the cache file byte
// for byte as it was, unless they are the very document the issuer signed.
func FuzzLogPage(f *testing.F) {
	signer, err := feed.NewSigner("fuzz", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32)))
	if err != nil {
		f.Fatal(err)
	}
	keys, _ := feed.NewKeyring(signer.Public())
	const epoch = 0x5eed
	head := &feed.Doc{Kind: feed.KindHead, Epoch: epoch, PageSize: 8, From: 3, Next: 3}
	fleetKey, err := feed.DeriveFleetKey(bytes.Repeat([]byte{1}, 32))
	if err != nil {
		f.Fatal(err)
	}
	fleet, _ := feed.NewFleet(fleetKey)
	good, err := signer.Sign(&feed.Doc{Kind: feed.KindLog, Epoch: epoch, IssuerTime: time.Unix(1_800_000_000, 0), MaxAge: time.Hour, PageSize: 8, Next: 3,
		Upserts: []verify.Cert{cachetest.Cert(1, 4), cachetest.Cert(2, 4)}, Revokes: []verify.CertID{cachetest.Cert(3, 4).ID}},
		[]feed.FleetPublic{fleetKey.Public()})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range [][]byte{good, good[:len(good)-1], []byte("GAF2\x01\x00\x04fuzz"), bytes.Repeat([]byte{0xff}, 300)} {
		f.Add(seed)
	}
	c := cachetest.Open(f, nil)
	if _, err := c.ApplySnapshot(&cache.SnapshotPage{Epoch: epoch, Final: true, Feed: cache.FeedState{Epoch: epoch, MaxAge: time.Hour}}); err != nil {
		f.Fatal(err)
	}
	cl, err := New(Config{URL: "http://127.0.0.1:1/", Keys: keys, Fleet: fleet, Cache: c})
	if err != nil {
		f.Fatal(err)
	}
	path := c.Path()
	f.Cleanup(func() { c.Close() }) // the cache the last input left open
	f.Fuzz(func(t *testing.T, data []byte) {
		before, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fs, _ := c.Feed()
		var res Result
		err = cl.applyLog(head, &fs, 0, "v1/feed/log/0", data, &res)
		if err != nil {
			after, _ := os.ReadFile(path)
			if !bytes.Equal(before, after) {
				t.Fatalf("refused answer (%v) changed the cache file", err)
			}
			return
		}
		// Each signing draws its own data key, so the accepted bytes
		// may be another signing of the page: what was applied must be
		// what the issuer signed.
		for i, want := range []verify.Cert{cachetest.Cert(1, 4), cachetest.Cert(2, 4)} {
			if r, ok, err := c.Lookup(want.ID, verify.Entry); err != nil || !ok || r.Key != want.Key || r.Revoked {
				t.Fatalf("accepted an answer the issuer did not sign: cert %d %v %v", i, ok, err)
			}
		}
		if _, ok, err := c.Lookup(cachetest.Cert(3, 4).ID, verify.Entry); err != nil || ok || fs.Cursor != 3 {
			t.Fatalf("accepted an answer the issuer did not sign (cursor %d)", fs.Cursor)
		}
		// Undo for the next input: back to the snapshot's position.
		c.Close()
		os.Remove(path)
		if c, err = cache.Open(path, cachetest.Options(nil)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.ApplySnapshot(&cache.SnapshotPage{Epoch: epoch, Final: true, Feed: cache.FeedState{Epoch: epoch, MaxAge: time.Hour}}); err != nil {
			t.Fatal(err)
		}
		cl.cfg.Cache = c
	})
}
