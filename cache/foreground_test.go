package cache_test

import (
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
)

// TestForegroundHoldsWritesBack: a feed batch and a maintenance that
// come while the gate decides wait for the decision to end; lookups do
// not wait; a decision that never ends holds a write back MaxYield at
// most, never for good.
func TestForegroundHoldsWritesBack(t *testing.T) {
	c := cachetest.Open(t, nil)
	mustApply(t, c, cachetest.Batch(0, 10, 100))

	done := c.Foreground()
	applied := make(chan error, 1)
	go func() {
		_, err := c.Apply(cachetest.Batch(10, 20, 100))
		applied <- err
	}()
	select {
	case err := <-applied:
		t.Fatalf("a batch was written while the gate decided (err %v)", err)
	case <-time.After(cache.MaxYield / 2): // well within the most it may wait
	}
	// The gate's own reads go on meanwhile.
	if _, ok := lookup(t, c, cachetest.Cert(3, 100).ID); !ok {
		t.Fatal("certificate 3 not found while a batch waits")
	}
	done()
	done() // a second call changes nothing
	select {
	case err := <-applied:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the batch still waits after the decision ended")
	}
	if _, ok := lookup(t, c, cachetest.Cert(15, 100).ID); !ok {
		t.Fatal("certificate 15 of the batch not found after it was applied")
	}

	// A decision that never ends (a stuck controller): each write waits
	// MaxYield, then goes on.
	c.Foreground()
	start := time.Now()
	mustApply(t, c, cachetest.Batch(20, 30, 100))
	if _, err := c.Purge(cachetest.Epoch, time.Hour); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < cache.MaxYield {
		t.Errorf("a batch and a maintenance under a decision that never ends took %v, less than MaxYield %v: they did not wait", waited, cache.MaxYield)
	}
	if fs, _ := c.Feed(); fs.Cursor != 30 {
		t.Fatalf("cursor %d after the batch under a stuck decision, want 30", fs.Cursor)
	}
}
