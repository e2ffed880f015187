package cache

import (
	"sync"
	"time"
)

// MaxYield is the longest one of the cache's own writes waits for the
// gate's decisions (Foreground): a gate that decides without a pause, or
// a decision that never ends, delays the feed and the maintenance by at
// most this a write, never stops them.
const MaxYield = 100 * time.Millisecond

// foreground counts the decisions under way (Foreground) and lets the
// cache's writes wait for none to be (yield).
type foreground struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

// Foreground tells the cache that the gate has begun a decision on a scan;
// done, called once the decision is made (its event written, the relay
// set), ends it. While one is under way the cache's own work does not
// begin: a feed batch, a maintenance, and each of their writes (the
// batch's record of the delta, each transaction of the maintenance, of a
// compaction or of a full sync) wait for the decision, at most MaxYield,
// so that a grant's fsync does not queue on the device behind theirs nor
// its decision share a core with them. A write already under way
// finishes; nothing a lookup reads waits.
func (c *Cache) Foreground() (done func()) {
	f := &c.fg
	f.mu.Lock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.n--; f.n == 0 {
				close(f.idle)
			}
			f.mu.Unlock()
		})
	}
}

// yield waits, at most MaxYield, until no decision is under way: called
// before each of the cache's own durable writes.
func (c *Cache) yield() {
	f := &c.fg
	f.mu.Lock()
	if f.n == 0 {
		f.mu.Unlock()
		return
	}
	idle := f.idle
	f.mu.Unlock()
	t := time.NewTimer(MaxYield)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}
