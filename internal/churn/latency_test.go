package churn_test

import (
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/internal/churn"
	"gateagent/verify"
)

// BenchmarkGrantUnderChurn: a grant's durable write (the decision event,
// fsync) on the gate's storage, at the steady state of issue 16
// (2,000,000 certificates held), idle and while the certificate side
// takes the day's writes in fast motion: feed batches of 116 random IDs
// back to back, each 10 simulated seconds, and the maintenance (a run
// written every 3 simulated hours, expired runs deleted) every 360
// batches. It is the storage's part of BenchmarkScanToRelayUnderChurn.
// p99-ms is the grant's commit; one grant every 10 ms, as a gate's grants
// come no faster.
func BenchmarkGrantUnderChurn(b *testing.B) {
	for _, target := range []string{"today"} {
		for _, churning := range []bool{false, true} {
			b.Run(target+"/"+map[bool]string{false: "idle", true: "churn"}[churning], func(b *testing.B) {
				grantUnderChurn(b, target, churning)
			})
		}
	}
}

func grantUnderChurn(b *testing.B, target string, churning bool) {
	t, err := churn.Targets[target](b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer t.Close()
	cfg := churn.Default()
	r := churn.NewRun(cfg, t)
	if err := r.Load(); err != nil {
		b.Fatal(err)
	}
	// The two sides, each used by one goroutine only.
	s := t.(*churn.Today).Store()
	apply := func(bt *cache.Batch) error { _, err := s.Cache.Apply(bt); return err }
	maintain := func(now time.Time) error { _, err := s.Cache.Purge(now, cfg.Retention); return err }
	grant := func(e event.Event) error { _, err := s.Journal.AppendEvent(e); return err }
	var stop atomic.Bool
	var batches, maint atomic.Int64
	var wg sync.WaitGroup
	if churning {
		wg.Go(func() {
			rnd := rand.New(rand.NewPCG(9, 9))
			cursor := r.Cursor()
			now := churn.Start
			for n := 1; !stop.Load(); n++ {
				now = now.Add(cfg.BatchEvery)
				bt := &cache.Batch{From: cursor, Next: cursor + 116, Feed: churn.FeedStateAt(now)}
				for range 116 {
					bt.Upserts = append(bt.Upserts, randomCert(rnd, now))
				}
				if err := apply(bt); err != nil {
					b.Error(err)
					return
				}
				cursor = bt.Next
				batches.Add(1)
				if n%int(cfg.MaintainEvery/cfg.BatchEvery) == 0 {
					if err := maintain(now); err != nil {
						b.Error(err)
						return
					}
					maint.Add(1)
				}
			}
		})
	}
	lat := make([]float64, 0, b.N)
	e := event.Event{Time: churn.Start, Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry}
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		if err := grant(e); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
		time.Sleep(10 * time.Millisecond) // the stimulus: grants paced as a busy gate's, the churn in between
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(lat[len(lat)/2], "p50-ms")
	b.ReportMetric(lat[min(len(lat)-1, len(lat)*99/100)], "p99-ms")
	b.ReportMetric(lat[len(lat)-1], "max-ms")
	if churning {
		b.ReportMetric(float64(batches.Load()), "batches")
		b.ReportMetric(float64(maint.Load()), "maintenances")
	}
}

func randomCert(r *rand.Rand, at time.Time) verify.Cert {
	var c verify.Cert
	for i := range c.ID {
		c.ID[i] = byte(r.Uint32())
	}
	for i := range c.Key {
		c.Key[i] = byte(r.Uint32())
	}
	c.Key[0] |= 1
	c.NotBefore, c.NotAfter = at, at.Add(24*time.Hour)
	return c
}
