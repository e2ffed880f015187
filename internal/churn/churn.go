// Package churn is the flash-endurance harness of issue 16: it drives a
// gate's storage through simulated days of steady-state churn, the way the
// key feed client and the gate controller drive it, and counts what each
// day writes.
//
// A day at the default Config: 1,000,000 valid certificates, as many new
// ones a day in feed batches every 10 s with random IDs, each valid 24 h
// and kept 7 h after it expires (the agent's purge retention at the
// longest exit grace); the hourly maintenance (a run written every 3 h,
// expired runs deleted); 20,000 grants a day, each a
// decision event with fsync and then its passage; event uploads every
// 10 s, each acknowledged. Time is simulated: a day runs as fast as the
// storage can take it.
//
// Bytes are counted from /proc/self/io (wchar: bytes handed to write(2);
// write_bytes: page cache dirtied, whole folios on recent kernels, so for
// information only) and, when the run has a block device of its own
// (Run.Dev), from the device: what the goal is judged on. fsyncs are
// counted per target (Usage.Syncs): bbolt issues two fdatasyncs per commit
// and one fsync when it grows the file, and strace agrees with that count
// (docs/flash.md).
package churn

import (
	"encoding/binary"
	"fmt"
	"time"

	"gateagent/cache"
	"gateagent/verify"
)

// Config is one churn workload.
type Config struct {
	// Valid is how many certificates are valid at any instant; as many are
	// issued per Validity.
	Valid int
	// Validity is a certificate's life (the spec's 24 h).
	Validity time.Duration
	// Retention is how long the gate keeps a certificate after it expires
	// (the agent purges those expired longer ago).
	Retention time.Duration
	// BatchEvery is the feed's poll: the certificates issued since the last
	// batch arrive in one batch.
	BatchEvery time.Duration
	// RevokesPerDay revokes that many valid certificates a day, spread over
	// the batches.
	RevokesPerDay int
	// GrantsPerDay is the number of granted codes a day, each a decision
	// event written with fsync and then, 2 s later, its passage.
	GrantsPerDay int
	// UploadEvery is how often the event log is uploaded and acknowledged.
	UploadEvery time.Duration
	// UploadBatch is the most events one upload carries (keysync's 500).
	UploadBatch int
	// MaintainEvery is how often the storage's maintenance runs (the
	// agent's hourly purge).
	MaintainEvery time.Duration
	// PassbackWindow is the verifier's anti-passback window: passages older
	// than it are purged.
	PassbackWindow time.Duration
	// Seed makes the certificates and the order of events reproducible.
	Seed uint64
}

// Default is the workload of issue 16.
func Default() Config {
	return Config{
		Valid:          1_000_000,
		Validity:       24 * time.Hour,
		Retention:      7 * time.Hour, // agent.PurgeRetention at the longest exit grace
		BatchEvery:     10 * time.Second,
		GrantsPerDay:   20_000,
		UploadEvery:    10 * time.Second,
		UploadBatch:    500,
		MaintainEvery:  time.Hour,
		PassbackWindow: 30 * time.Minute,
		Seed:           1,
	}
}

// Scaled returns c with its certificates, revocations and grants
// multiplied by f (at least one of each that c has), its times unchanged.
func (c Config) Scaled(f float64) Config {
	scale := func(n int) int {
		if n == 0 {
			return 0
		}
		return max(1, int(float64(n)*f+0.5))
	}
	c.Valid, c.RevokesPerDay, c.GrantsPerDay = scale(c.Valid), scale(c.RevokesPerDay), scale(c.GrantsPerDay)
	return c
}

// Check says what in c would keep a simulated day from ending, or make
// it meaningless: an interval that is not positive, a negative retention.
func (c Config) Check() error {
	for _, iv := range []struct {
		name string
		d    time.Duration
	}{{"feed batch interval", c.BatchEvery}, {"upload interval", c.UploadEvery}, {"maintenance interval", c.MaintainEvery}} {
		if iv.d <= 0 {
			return fmt.Errorf("the %s is %v: it must be positive (e.g. 1h)", iv.name, iv.d)
		}
	}
	if c.Retention < 0 {
		return fmt.Errorf("the retention is %v: it must not be negative (0 deletes certificates as they expire)", c.Retention)
	}
	return nil
}

// BlockSize is the unit the floor counts a durable grant in: one block of
// the file system and of the eMMC's mapping.
const BlockSize = 4096

// RawRecord is a certificate's raw bytes: ID 16, key 32, not_before 8,
// not_after 8, status 1 (as the feed carries it).
const RawRecord = verify.CertIDLen + verify.KeyLen + 8 + 8 + 1

// FloorBytes is the floor for a day: one block per durable grant,
// and the raw bytes of the day's new certificates.
func (c Config) FloorBytes() float64 {
	return float64(c.GrantsPerDay)*BlockSize + float64(c.issuedPerDay())*RawRecord
}

// FloorSyncs is the floor of fsyncs in a day: one per grant and one per
// feed batch that brings records.
func (c Config) FloorSyncs() float64 {
	batches := float64(24*time.Hour) / float64(c.BatchEvery)
	if per := float64(c.issuedPerDay()) / batches; per < 1 {
		batches = float64(c.issuedPerDay()) // most polls bring nothing
	}
	return float64(c.GrantsPerDay) + batches
}

// LiveBytes is the raw size of the certificates valid at an instant (the
// issue's "live raw records": 1M × 65 B).
func (c Config) LiveBytes() float64 { return float64(c.Valid) * RawRecord }

func (c Config) issuedPerDay() int {
	return int(float64(c.Valid) * float64(24*time.Hour) / float64(c.Validity))
}

// perCert is the time between two issuances.
func (c Config) perCert() time.Duration { return c.Validity / time.Duration(c.Valid) }

// Start is the simulated instant the first day begins.
var Start = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

// Cert is the certificate issued k-th, k counting from the first one the
// preload holds. Its ID and key are pseudo-random functions of (seed, k);
// it is issued at issuedAt(k), whole seconds as the feed carries times.
func (r *Run) cert(k int64) verify.Cert {
	var c verify.Cert
	s := r.cfg.Seed*0x9e3779b97f4a7c15 + uint64(k)
	binary.BigEndian.PutUint64(c.ID[:8], mix(s, 1))
	binary.BigEndian.PutUint64(c.ID[8:], mix(s, 2))
	for i := range 4 {
		binary.BigEndian.PutUint64(c.Key[8*i:], mix(s, uint64(3+i)))
	}
	c.Key[0] |= 1 // never the all-zero key
	c.NotBefore = r.issuedAt(k)
	c.NotAfter = c.NotBefore.Add(r.cfg.Validity)
	return c
}

// mix is splitmix64's finaliser over s and a lane: IDs and keys that look
// random, with no allocation and no hash state.
func mix(s, lane uint64) uint64 {
	z := s + lane*0xbf58476d1ce4e5b9
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// issuedAt is when certificate k was approved: the preload's first one
// Validity + Retention before Start, then one every perCert.
func (r *Run) issuedAt(k int64) time.Time {
	t := Start.Add(-r.cfg.Validity - r.cfg.Retention).Add(time.Duration(k) * r.cfg.perCert())
	return t.Truncate(time.Second)
}

// firstIssuedAfter is the lowest k issued at or after t.
func (r *Run) firstIssuedAfter(t time.Time) int64 {
	d := t.Sub(Start.Add(-r.cfg.Validity - r.cfg.Retention))
	per := r.cfg.perCert()
	return int64((d + per - 1) / per)
}

// FeedStateAt is the feed state a batch served at t carries.
func FeedStateAt(t time.Time) cache.FeedState { return feedState(t) }

func feedState(t time.Time) cache.FeedState {
	return cache.FeedState{KeyID: "churn", IssuerTime: t, MaxAge: 30 * time.Minute, SyncedAt: t, Epoch: 1}
}
