package churn

import (
	"strings"
	"time"

	"gateagent/cache"
	"gateagent/event"
	"gateagent/verify"
)

// Target is a gate's storage as the agent drives it: the key feed's
// batches and full sync, the verifier's lookups, the controller's events
// and passages, the uploader's reads and acknowledgements, and the hourly
// maintenance. The design of today (Today) and the candidate designs
// implement it, so that one harness measures them all.
type Target interface {
	// Load writes a full sync: certificates in ascending ID order, in
	// pages, the last one moving the cursor to cursor.
	Load(pages func(yield func(certs []verify.Cert) bool), cursor uint64, fs cache.FeedState) error
	// Apply writes one feed batch, all or nothing, durably.
	Apply(b *cache.Batch) error
	// Lookup finds a certificate, as the verifier does.
	Lookup(id verify.CertID) (verify.Record, bool, error)
	// AppendEvent stores a grant's decision durably (before the relay).
	AppendEvent(e event.Event) (uint64, error)
	// RecordPassage stores the passage and the anti-passback state.
	RecordPassage(id verify.CertID, dir verify.Direction, e event.Event) (uint64, error)
	// Events returns the next upload; DeleteEventsThrough forgets what
	// the issuer acknowledged.
	Events(after uint64, max int) ([]event.Event, error)
	DeleteEventsThrough(seq uint64) (int, error)
	// Maintain runs the hourly maintenance at now (today: the purge of
	// certificates expired more than retention ago and of passages older
	// than window).
	Maintain(now time.Time, retention, window time.Duration) error
	// Usage says what the target's files hold and how many fsyncs (fsync
	// and fdatasync calls) it has issued since it was opened.
	Usage() (Usage, error)
	Close() error
}

// Usage is a target's files and syncs.
type Usage struct {
	// FileBytes is the size of each file the target keeps, by role
	// ("certs", "journal", …).
	FileBytes map[string]int64
	// Syncs counts fsync and fdatasync calls since open.
	Syncs int64
}

// Total is the sum of the files' sizes.
func (u Usage) Total() int64 {
	var n int64
	for _, v := range u.FileBytes {
		n += v
	}
	return n
}

// Certs is the sum of the certificate files' sizes: every file but the
// journal's (its role starts with "journal").
func (u Usage) Certs() int64 {
	var n int64
	for k, v := range u.FileBytes {
		if !strings.HasPrefix(k, "journal") {
			n += v
		}
	}
	return n
}

// Targets are the storages the harness can drive, by name: today's (the
// candidate designs of docs/flash.md §3 were measured with prototypes
// since retired: the design chosen is package cache's).
var Targets = map[string]func(dir string) (Target, error){
	"today": func(dir string) (Target, error) { return OpenToday(dir) },
}
