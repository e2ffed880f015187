// Package wait holds the one context-aware sleep the daemon's loops share
// (the scanner's reconnect backoff, the key feed's poll interval, the demo).
package wait

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends, whichever comes first. It returns nil
// after the full wait and ctx's error when ctx ended first. Its timer is
// stopped either way, so a long backoff cut short leaves nothing behind.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
