package metrics

import (
	"time"

	"gateagent/verify"
)

// clockRingMinutes is how far back ClockRefusals counts.
const clockRingMinutes = 60

// clockRing counts the codes refused for the clock (CODE_STALE,
// CODE_FROM_FUTURE) per minute over the last hour: sixty slots, each
// tagged with its minute, so a slot from an earlier hour is reused, not
// summed. Metrics.ringMu guards it.
type clockRing struct {
	slots [clockRingMinutes]clockSlot
}

type clockSlot struct {
	minute        int64 // Unix minute this slot counts; 0: never used
	stale, future uint32
}

func (r *clockRing) add(at time.Time, reason verify.Reason) {
	m := at.Unix() / 60
	s := &r.slots[uint64(m)%clockRingMinutes]
	if s.minute != m {
		*s = clockSlot{minute: m}
	}
	if reason == verify.CodeStale {
		s.stale++
	} else {
		s.future++
	}
}

// ClockRefusals is how many codes were refused for the clock over the last
// hour: a phone's code minutes behind (CODE_STALE) or ahead
// (CODE_FROM_FUTURE) of the clock the gate checks on.
type ClockRefusals struct {
	Stale  uint64 `json:"code_stale"`
	Future uint64 `json:"code_from_future"`
}

// ClockRefusals counts the denials for CODE_STALE and CODE_FROM_FUTURE
// that Observe saw in the last hour (the current minute and the 59 before
// it).
func (m *Metrics) ClockRefusals() ClockRefusals {
	now := m.now().Unix() / 60
	var c ClockRefusals
	m.ringMu.Lock()
	defer m.ringMu.Unlock()
	for _, s := range m.clock.slots {
		if s.minute > now-clockRingMinutes && s.minute <= now {
			c.Stale += uint64(s.stale)
			c.Future += uint64(s.future)
		}
	}
	return c
}
