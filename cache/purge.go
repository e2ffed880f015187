package cache

import (
	"fmt"
	"time"
)

// PurgeResult says what a purge deleted.
type PurgeResult struct {
	Certs     int `json:"certs"`
	Passbacks int `json:"passbacks"`
}

// Purge is the certificates' maintenance, run by the gate's clock (the
// agent runs it hourly, off the scan path, and only on a trusted clock):
//
//   - once the window has passed since the last run was written, the
//     delta is written as a new run, without its certificates expired
//     more than retention before now, and its segments given back;
//   - the oldest runs are deleted whole while every certificate in them
//     expired more than retention before now: nothing is deleted in
//     place, and a revocation, written after the certificate it revokes,
//     is in a run deleted no earlier;
//   - the groups of runs no longer listed (dropped, or left half written
//     by a cut) are deleted;
//   - a file much larger than its runs need is compacted (compact.go).
//
// It returns the certificates deleted. Lookups go on throughout; feed
// batches wait for it (a run of a 3-hour window is about 9 MB, written in
// transactions of 256 KB).
func (c *Cache) Purge(now time.Time, retention time.Duration) (int, error) {
	if retention < 0 {
		return 0, fmt.Errorf("cache: purge: negative retention %v", retention)
	}
	n := 0
	cut := now.Add(-retention)
	err := c.write(func() error {
		if now.Sub(c.lastCut) >= c.window {
			d, err := c.cutRun(now, cut, nil, nil)
			if n += d; err != nil {
				return err
			}
		}
		d, err := c.dropRuns(cut)
		if n += d; err != nil {
			return err
		}
		if err := c.sweep(); err != nil {
			return err
		}
		if ok, _, _ := c.needsCompaction(); ok {
			return c.compact(now)
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("cache: purge certificates expired before %v: %w", cut, err)
	}
	return n, nil
}

// WriteRun writes the delta as a run now, whatever the window, and
// gives its segments back (Purge does it once a window has passed): for
// a tool that packs the cache before it is copied, and for tests that
// want the certificates in the file.
func (c *Cache) WriteRun(now time.Time) error {
	err := c.write(func() error {
		_, err := c.cutRun(now, time.Time{}, nil, nil)
		return err
	})
	if err != nil {
		return fmt.Errorf("cache: write the delta as a run: %w", err)
	}
	return nil
}

// RunState is what the maintenance has made of the certificates: cheap,
// for the wear report after each maintenance.
type RunState struct {
	Runs        int
	DeltaCerts  int
	LastRun     time.Time
	LastCompact time.Time
}

// RunState says how many runs the file holds, when the newest was written
// and the file last compacted, and how many certificates the delta holds.
func (c *Cache) RunState() RunState {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st := RunState{Runs: len(c.runs), DeltaCerts: c.idx.len(), LastRun: c.lastCut, LastCompact: c.lastCompact}
	return st
}
