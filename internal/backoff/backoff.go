// Package backoff is the one retry policy of the daemon's loops: the
// scanner's reconnect, the approach sensor's watch and the key feed's
// rounds. After n consecutive failures the wait is uniformly random in
// [Min, Min·2ⁿ⁻¹], the upper end capped at Max ("full jitter" above Min),
// so that the gates of a station do not retry a recovering issuer in step,
// and never shorter than Min.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy bounds the waits: the first wait is Min, the longest Max.
type Policy struct {
	Min, Max time.Duration
}

// Delay is the wait after n consecutive failures (n ≥ 1; below 1 is taken
// as 1): uniformly random in [Min, min(Max, Min·2ⁿ⁻¹)]. A Max below Min is
// taken as Min.
func (p Policy) Delay(n int) time.Duration { return p.delay(n, rand.Int64N) }

// delay is Delay with its random source: rnd(k) returns a number in [0, k).
func (p Policy) delay(n int, rnd func(int64) int64) time.Duration {
	lo := max(p.Min, 0)
	hi := max(p.Max, lo)
	ceil := p.Ceil(n)
	if ceil <= lo || hi == lo {
		return lo
	}
	return lo + time.Duration(rnd(int64(ceil-lo)+1))
}

// Ceil is the longest wait after n consecutive failures: Min·2ⁿ⁻¹, capped
// at Max.
func (p Policy) Ceil(n int) time.Duration {
	lo := max(p.Min, 0)
	hi := max(p.Max, lo)
	ceil := lo
	for i := 1; i < n && ceil > 0 && ceil < hi; i++ {
		if ceil > hi/2 {
			return hi
		}
		ceil *= 2
	}
	return ceil
}

// Backoff counts consecutive failures under a Policy. The zero value of
// its counter is "no failure yet". It is not safe for concurrent use.
type Backoff struct {
	Policy
	failures int
}

// New returns a Backoff with no failure counted.
func New(min, max time.Duration) *Backoff { return &Backoff{Policy: Policy{Min: min, Max: max}} }

// Fail counts one more failure and returns the wait before the next try.
func (b *Backoff) Fail() time.Duration {
	b.failures++
	return b.Delay(b.failures)
}

// Failures is the number of consecutive failures counted.
func (b *Backoff) Failures() int { return b.failures }

// Reset starts over after a success: the next failure waits Min.
func (b *Backoff) Reset() { b.failures = 0 }
