package keysync

import (
	"context"
	"fmt"
	"time"

	"gateagent/event"
	"gateagent/verify"
)

// isStale: the cache has not been known caught up within the feed's
// maximum age (or never). Call with c.mu held or before c is shared.
func (c *Client) isStale(now time.Time) bool {
	if c.freshAt.IsZero() || c.maxAge <= 0 {
		return true
	}
	return now.Sub(c.freshAt) > c.maxAge
}

// Stale reports whether the cache is past the feed's maximum age.
func (c *Client) Stale() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.isStale(c.cfg.Now())
}

// starved: the gate cannot grant for want of a fresh cache: it never
// synced, or it is stale and RefuseWhenStale is set. Call with c.mu held.
func (c *Client) starved(now time.Time) bool {
	return c.freshAt.IsZero() || c.cfg.RefuseWhenStale && c.isStale(now)
}

// staleRecheck bounds the staleness timer, so that a step of the wall
// clock (NTP, a technician) is noticed within it.
const staleRecheck = 10 * time.Second

// watchStale checks staleness at the moment the cache passes the feed's
// maximum age, and again whenever a round has synced, until ctx ends.
func (c *Client) watchStale(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		c.mu.Lock()
		wait := staleRecheck
		if !c.freshAt.IsZero() && c.maxAge > 0 {
			if d := c.freshAt.Add(c.maxAge).Sub(c.cfg.Now()); d >= 0 && d < wait {
				wait = d + time.Millisecond // just past the age, not at it
			}
		}
		c.mu.Unlock()
		t.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-c.synced:
			continue
		case <-t.C:
		}
		if c.checkStale() {
			select {
			case c.wake <- struct{}{}: // Run retries now, not after its backoff
			default:
			}
		}
	}
}

// checkStale raises the staleness alarm (log and event) when the cache
// turns stale, and clears it when it is fresh again. It reports whether
// the cache just turned stale and the gate now refuses for it.
func (c *Client) checkStale() (refusing bool) {
	c.alarmMu.Lock()
	defer c.alarmMu.Unlock()
	now := c.cfg.Now()
	c.mu.Lock()
	stale := c.isStale(now)
	changed := stale != c.alarmState
	c.alarmState = stale
	age, maxAge, never := now.Sub(c.freshAt), c.maxAge, c.freshAt.IsZero()
	refusing = c.starved(now)
	c.mu.Unlock()
	if !changed {
		return false
	}
	var detail string
	if stale {
		detail = fmt.Sprintf("key cache stale: last caught up %s ago, feed allows %s", age.Round(time.Second), maxAge)
		if never {
			detail = "key cache stale: never synced with the issuer"
		}
		msg := detail + ": check the network path to the issuer"
		if c.cfg.RefuseWhenStale {
			msg = detail + ": every code is refused (refuse_when_stale) until the gate reaches the issuer; check the network path to it"
		}
		c.log.Error(msg)
	} else {
		detail = "key cache fresh again"
		c.log.Info(detail)
	}
	if c.cfg.Journal == nil {
		return
	}
	if _, err := c.cfg.Journal.AppendEvent(event.Event{Time: now, Kind: event.Alarm, Detail: detail}); err != nil {
		c.log.Error("could not record the staleness alarm", "err", err)
	}
	return stale && refusing
}

// Now is the gate's clock corrected by the offset learnt from the issuer:
// the clock the verifier should use. Before any offset is learnt it is the
// gate's own clock.
func (c *Client) Now() time.Time {
	c.mu.Lock()
	off := c.offset
	c.mu.Unlock()
	return c.cfg.Now().Add(off)
}

// Offset returns the learnt offset (issuer minus gate) and whether one was
// learnt since start.
func (c *Client) Offset() (time.Duration, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.offset, c.offsetOK
}

// Status is the client's state, for status pages and diag.
type Status struct {
	Head     uint64        `json:"head"`
	Offset   time.Duration `json:"clock_offset"`
	OffsetOK bool          `json:"clock_offset_known"`
	RTT      time.Duration `json:"rtt"`
	FreshAt  time.Time     `json:"fresh_at,omitzero"`
	MaxAge   time.Duration `json:"max_age"`
	Stale    bool          `json:"stale"`
	// Refusing: the cache is stale and RefuseWhenStale is set, so every
	// lookup is refused.
	Refusing  bool      `json:"refusing"`
	Failures  int       `json:"failures"`
	LastError string    `json:"last_error,omitempty"`
	LastErrAt time.Time `json:"last_error_at,omitzero"`
	Uploaded  uint64    `json:"events_uploaded"`
}

// Status returns a snapshot of the client's state.
func (c *Client) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.cfg.Now()
	s := Status{Head: c.head, Offset: c.offset, OffsetOK: c.offsetOK, RTT: c.rtt, FreshAt: c.freshAt, MaxAge: c.maxAge,
		Stale: c.isStale(now), Failures: c.failures, LastErrAt: c.lastErrAt, Uploaded: c.uploaded}
	s.Refusing = s.Stale && c.cfg.RefuseWhenStale
	if c.lastErr != nil {
		s.LastError = c.lastErr.Error()
	}
	return s
}

// Guard wraps the verifier's store: when RefuseWhenStale is set and the
// cache is stale, every lookup fails with ErrStale, which the verifier
// turns into an undecided (gate fault) decision. Otherwise it is s.
func (c *Client) Guard(s verify.Store) verify.Store {
	if !c.cfg.RefuseWhenStale {
		return s
	}
	return guard{c, s}
}

type guard struct {
	c *Client
	s verify.Store
}

func (g guard) Lookup(id verify.CertID, dir verify.Direction) (verify.Record, bool, error) {
	if g.c.Stale() {
		return verify.Record{}, false, ErrStale
	}
	return g.s.Lookup(id, dir)
}
