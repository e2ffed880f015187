package churn_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/internal/churn"
	"gateagent/verify"
)

// smoke is the harness at 1/1000 of the churn with feed polls and
// uploads every 5 minutes and maintenance every two hours; over a simulated
// day every kind of operation runs,
// certificates expire and are purged, revocations arrive, and the figures
// come out; small enough for CI and qemu.
func smoke() churn.Config {
	c := churn.Default()
	c.RevokesPerDay = 50_000
	c = c.Scaled(1.0 / 1000)
	c.BatchEvery = 5 * time.Minute
	c.UploadEvery = 5 * time.Minute
	c.MaintainEvery = 2 * time.Hour
	return c
}

// TestChurnSmoke runs the harness on each target (today's storage and the
// prototypes) for a simulated day and checks what a user of its figures
// relies on: each grant's certificate and a sample of those the gate must
// hold found with their keys and revocations (the run checks them), every
// event uploaded once and in order, fsyncs counted for the durable
// commits the day made, and bytes counted.
func TestChurnSmoke(t *testing.T) {
	for name, open := range churn.Targets {
		t.Run(name, func(t *testing.T) {
			cfg := smoke()
			dir := t.TempDir()
			tg, err := open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer tg.Close()
			r := churn.NewRun(cfg, tg)
			if err := r.Load(); err != nil {
				t.Fatal(err)
			}
			d, err := r.Day()
			if err != nil {
				t.Fatal(err)
			}
			t.Log(d)
			ops := d.Ops
			for o, s := range ops {
				if s.N == 0 {
					t.Errorf("no %s operation ran", churn.Op(o))
				}
			}
			if ops[churn.OpGrant].N != cfg.GrantsPerDay || ops[churn.OpPassage].N != cfg.GrantsPerDay {
				t.Errorf("%d grants and %d passages, want %d of each", ops[churn.OpGrant].N, ops[churn.OpPassage].N, cfg.GrantsPerDay)
			}
			// Each grant, passage and batch is durable: one fsync at
			// least each.
			if durable := ops[churn.OpGrant].N + ops[churn.OpPassage].N + ops[churn.OpFeed].N; d.Syncs < int64(durable) {
				t.Errorf("%d syncs counted for %d durable writes", d.Syncs, durable)
			}
			if d.Written() < int64(ops[churn.OpGrant].N)*churn.BlockSize {
				t.Errorf("%d bytes written for %d grants: the counters are not counting", d.Written(), ops[churn.OpGrant].N)
			}
			if d.Files.Total() == 0 {
				t.Errorf("files %v", d.Files)
			}
			grants, events, acked, revoked := r.Totals()
			if grants != cfg.GrantsPerDay || events != 2*uint64(grants) || revoked == 0 {
				t.Errorf("totals: %d grants, %d events, %d revoked", grants, events, revoked)
			}
			if acked+uint64(cfg.UploadBatch) < events {
				t.Errorf("%d of %d events acknowledged", acked, events)
			}
			if err := tg.Close(); err != nil {
				t.Fatal(err)
			}
			if name == "today" {
				cachetest.CheckFile(t, filepath.Join(dir, "cache.db"))
				cachetest.CheckFile(t, filepath.Join(dir, "journal"))
			}
		})
	}
}

// TestSyncCountToday holds the harness's count of syncs to the writes the
// test makes itself: the journal's (its log counts one per record) to the
// events, the delta's (the same) to the feed's batches.
func TestSyncCountToday(t *testing.T) {
	dir := t.TempDir()
	tg, err := churn.OpenToday(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	u0, err := tg.Usage()
	if err != nil {
		t.Fatal(err)
	}
	const n = 7
	for i := range n {
		e := event.Event{Time: churn.Start.Add(time.Duration(i) * time.Second), Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry}
		if _, err := tg.AppendEvent(e); err != nil {
			t.Fatal(err)
		}
	}
	u1, err := tg.Usage()
	if err != nil {
		t.Fatal(err)
	}
	if got := u1.Syncs - u0.Syncs; got != n {
		t.Errorf("%d events counted as %d syncs, want %d", n, got, n)
	}
	for i := range n {
		if err := tg.Apply(cachetest.Batch(uint64(i), uint64(i+1), 1000)); err != nil {
			t.Fatal(err)
		}
	}
	u2, err := tg.Usage()
	if err != nil {
		t.Fatal(err)
	}
	// The certificates' batches: one record of the delta each, the first
	// synced with the zeros of the delta's first segment as it is made,
	// then the directory.
	if got := u2.Syncs - u1.Syncs; got != n+1 {
		t.Errorf("%d batches counted as %d syncs, want %d", n, got, n+1)
	}
}

// TestConfigCheck: an interval that is not positive would never let a
// simulated day end, and a negative retention means nothing: both are
// refused, naming what is wrong; the default passes.
func TestConfigCheck(t *testing.T) {
	if err := churn.Default().Check(); err != nil {
		t.Fatalf("the default: %v", err)
	}
	for name, mod := range map[string]func(*churn.Config){
		"maintenance interval": func(c *churn.Config) { c.MaintainEvery = 0 },
		"feed batch interval":  func(c *churn.Config) { c.BatchEvery = -time.Second },
		"upload interval":      func(c *churn.Config) { c.UploadEvery = 0 },
		"retention":            func(c *churn.Config) { c.Retention = -time.Hour },
	} {
		c := churn.Default()
		mod(&c)
		if err := c.Check(); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: %v, want an error naming it", name, err)
		}
	}
}
