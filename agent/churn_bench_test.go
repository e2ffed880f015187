package agent_test

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gateagent/agent"
	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/verify"
)

// churnHeld is the certificates a gate holds at issue 16's steady state:
// a million valid, a million expired within the day's retention.
const churnHeld = 2_000_000

// BenchmarkScanToRelayUnderChurn is BenchmarkScanToRelay on a gate that
// holds the steady state of issue 16's churn (2,000,000 certificates,
// their expiries scattered) while its storage takes that churn's writes:
//
//   - /idle: nothing else writes;
//   - /churn: the key feed's batches (116 new certificates with random
//     IDs, one record of the delta each, as every 10 s) back to back, and
//     every 360th batch the hourly maintenance (see churnFeed: a run of
//     a 3-hour window written every third, the full sync's runs deleted
//     whole as they expire). Back to back, so that any grant can meet an
//     apply or a maintenance: the p99 of a grant that does.
//
// The goal (issue 16): /churn p99 within 1.5× of /idle. The feed client
// has no issuer to reach (the churn is the feed), so the cache is loaded
// as a full sync leaves it, fresh for a day.
func BenchmarkScanToRelayUnderChurn(b *testing.B) {
	for _, churning := range []bool{false, true} {
		b.Run(map[bool]string{false: "idle", true: "churn"}[churning], func(b *testing.B) {
			st := newStation(b, stationOpts{noStart: true, feedURL: "http://127.0.0.1:1/", mod: func(c *config.Config) {
				c.Timing.PassTimeout = 10 * time.Millisecond
				c.HW.Poll = 50 * time.Millisecond
			}})
			now := time.Now().UTC().Truncate(time.Second)
			pass, fs := loadSteadyState(b, st.cfg.Gate.Cache, now)
			st.start(nil, nil)
			code := func() []byte {
				return []byte(verify.NewToken(&pass.Key, pass.ID, verify.StepOf(time.Now())).String() + "\r")
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			var batches, purges atomic.Int64
			if churning {
				wg.Go(func() { churnFeed(b, st.ag.Cache(), fs, now, &stop, &batches, &purges) })
			}
			scanToRelay(b, st, code)
			stop.Store(true)
			wg.Wait()
			if churning {
				b.ReportMetric(float64(batches.Load()), "batches")
				b.ReportMetric(float64(purges.Load()), "purges")
			}
		})
	}
}

// loadSteadyState writes the cache file at path as a full sync leaves it
// at issue 16's steady state, for a gate whose clock reads now: churnHeld
// certificates with random IDs, approved at random in the 48 h before now
// (so half are valid, half expired within the retention), and the
// passenger's, approved an hour ago, which it returns with the feed state.
func loadSteadyState(b *testing.B, path string, now time.Time) (verify.Cert, cache.FeedState) {
	b.Helper()
	r := rand.New(rand.NewPCG(16, 16))
	certs := make([]verify.Cert, churnHeld)
	for i := range certs {
		certs[i] = randomCert(r, now.Add(-time.Duration(r.Int64N(int64(48*time.Hour)))))
	}
	pass := randomCert(r, now.Add(-time.Hour))
	certs[0] = pass
	slices.SortFunc(certs, func(a, b verify.Cert) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	fs := cache.FeedState{KeyID: "bench", IssuerTime: now, MaxAge: 24 * time.Hour, SyncedAt: now, Epoch: 16}
	var after verify.CertID
	for i := 0; i < len(certs); i += 16384 {
		p := &cache.SnapshotPage{Epoch: fs.Epoch, Snapshot: churnHeld, After: after, Upserts: certs[i:min(len(certs), i+16384)], Feed: fs}
		p.Final = i+16384 >= len(certs)
		if _, err := c.ApplySnapshot(p); err != nil {
			b.Fatal(err)
		}
		after = p.Upserts[len(p.Upserts)-1].ID
	}
	fs.Cursor = churnHeld
	return pass, fs
}

func randomCert(r *rand.Rand, approved time.Time) verify.Cert {
	var c verify.Cert
	binary.BigEndian.PutUint64(c.ID[:], r.Uint64())
	binary.BigEndian.PutUint64(c.ID[8:], r.Uint64())
	for i := range 4 {
		binary.BigEndian.PutUint64(c.Key[8*i:], r.Uint64())
	}
	c.Key[0] |= 1
	c.NotBefore = approved.Truncate(time.Second)
	c.NotAfter = c.NotBefore.Add(24 * time.Hour)
	return c
}

// churnFeed applies feed batches of 116 new certificates back to back to
// the agent's cache, and every 360th (an hour of the feed's batches) runs
// the maintenance with a clock an hour further on, until stop. The clock
// stops 27 hours on (the passenger's certificate, approved an hour
// before the start, is kept); from then on the delta is written as a run
// every 1,080 batches, as the 3-hour window would have it, so the delta
// never holds more than a window's certificates.
func churnFeed(b *testing.B, c *cache.Cache, fs cache.FeedState, now time.Time, stop *atomic.Bool, batches, purges *atomic.Int64) {
	r := rand.New(rand.NewPCG(17, 17))
	cursor := fs.Cursor
	purgeAt := now
	for n := 1; !stop.Load(); n++ {
		bt := &cache.Batch{From: cursor, Next: cursor + 116, Feed: fs}
		for range 116 {
			bt.Upserts = append(bt.Upserts, randomCert(r, now))
		}
		if _, err := c.Apply(bt); err != nil {
			b.Error(err)
			return
		}
		cursor = bt.Next
		batches.Add(1)
		if n%360 != 0 {
			continue
		}
		if purgeAt.Before(now.Add(27 * time.Hour)) {
			purgeAt = purgeAt.Add(time.Hour)
		} else if n%1080 == 0 {
			if err := c.WriteRun(purgeAt); err != nil {
				b.Error(err)
				return
			}
		}
		if _, err := c.Purge(purgeAt, agent.PurgeRetention(0)); err != nil {
			b.Error(err)
			return
		}
		purges.Add(1)
	}
}
