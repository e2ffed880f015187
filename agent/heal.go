package agent

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"gateagent/cache"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/keysync"
	"gateagent/verify"
)

// healer is what happens when a record fails authentication. The lookup
// that met it has already refused (the verifier's store error: the gate
// stays shut for that code); here, off the scan path:
//
//   - an error in the log and an alarm event name the record;
//   - a certificate's record is refetched from the key feed at once
//     (keysync.Heal: a full snapshot, which a station proxy usually
//     serves, at the next moment rather than the next poll), which
//     overwrites it with the feed's authenticated one;
//   - a passage, which the feed cannot give back, is replaced by the most
//     conservative one (a passage at the moment the damage was found): the
//     certificate is refused for one anti-passback window, never let
//     through twice;
//   - diag lists the records until they are healed, and for an hour after.
//
// At start it also checks every record of both files (in read
// transactions, beside the gate's work), so that damage is found and
// healed before a passenger meets it.
type healer struct {
	log     *slog.Logger
	cache   *cache.Cache
	journal *cache.Journal
	feed    *keysync.Client
	now     func() time.Time
	reports chan *cache.AuthError

	mu      sync.Mutex
	records map[string]*diag.DamagedRecord
}

// healKeep is how long a healed record stays in diag's list.
const healKeep = time.Hour

func newHealer(log *slog.Logger, c *cache.Cache, j *cache.Journal, f *keysync.Client, now func() time.Time) *healer {
	return &healer{log: log, cache: c, journal: j, feed: f, now: now,
		reports: make(chan *cache.AuthError, 64), records: map[string]*diag.DamagedRecord{}}
}

// Store wraps the verifier's store so that a lookup that met a record
// failing authentication reports it (without waiting).
func (h *healer) Store(s verify.Store) verify.Store { return healingStore{s, h} }

type healingStore struct {
	s verify.Store
	h *healer
}

func (hs healingStore) Lookup(id verify.CertID, dir verify.Direction) (verify.Record, bool, error) {
	r, ok, err := hs.s.Lookup(id, dir)
	if err != nil {
		var ae *cache.AuthError
		if errors.As(err, &ae) {
			hs.h.report(ae)
		}
	}
	return r, ok, err
}

func (h *healer) report(ae *cache.AuthError) {
	select {
	case h.reports <- ae:
	default: // a burst: the record is refused all the same, and reported again at its next lookup
	}
}

// run handles reports until ctx ends; it first checks every record.
func (h *healer) run(ctx context.Context) {
	go h.scrub(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case ae := <-h.reports:
			h.handle(ae)
		}
	}
}

// scrub authenticates every record of both files once.
func (h *healer) scrub(ctx context.Context) {
	start := time.Now()
	cr, err := h.cache.Authenticate()
	if err != nil {
		h.log.Warn("could not check the key cache's records", "err", err)
	}
	jr, jerr := h.journal.Authenticate()
	if jerr != nil {
		h.log.Warn("could not check the journal's records", "err", jerr)
	}
	for _, ae := range append(cr.Bad, jr.Bad...) {
		select {
		case h.reports <- ae:
		case <-ctx.Done():
			return
		}
	}
	if n := cr.Failed + jr.Failed; n > len(cr.Bad)+len(jr.Bad) {
		// More than the reports name: the full resync a report asks
		// for rewrites every certificate anyway.
		h.log.Error("many records failed their integrity check", "failed", n)
	}
	h.log.Debug("records checked", "cache", cr.Records, "journal", jr.Records, "failed", cr.Failed+jr.Failed, "took", time.Since(start).Round(time.Millisecond))
}

// handle logs, alarms and starts the healing of one record, once per
// record until it is healed.
func (h *healer) handle(ae *cache.AuthError) {
	name := ae.Record()
	now := h.now()
	h.mu.Lock()
	d, seen := h.records[name]
	if seen && d.Healed {
		seen = false // damaged again
	}
	if !seen {
		d = &diag.DamagedRecord{Record: name, File: ae.Path, Bucket: ae.Bucket, First: now}
		if id, ok := ae.CertID(); ok {
			d.CertID = id.String()
		}
		if ae.Bucket == "events" && len(ae.Key) == 8 {
			d.Seq = binary.BigEndian.Uint64(ae.Key)
		}
		h.records[name] = d
	}
	d.Last, d.Times = now, d.Times+1
	h.mu.Unlock()
	if seen {
		return // being healed: logged and alarmed once
	}
	id, _ := ae.CertID()
	action := "not used"
	switch ae.Bucket {
	case "certs":
		action = "its codes are refused (undecided); refetching it from the key feed now"
		h.feed.Heal(id)
	case "passback":
		dir := verify.Direction(ae.Key[verify.CertIDLen])
		if _, err := h.journal.RepairPassage(id, dir, now); err != nil {
			action = "its codes are refused (undecided); the passage could not be replaced: " + err.Error()
		} else {
			action = fmt.Sprintf("replaced by a passage at %s (the latest it can have been): the certificate is refused here as PASSBACK for one anti-passback window", now.UTC().Format(time.RFC3339))
		}
	case "events":
		action = "it is uploaded as an alarm in its place"
	case "meta":
		action = "the key feed resyncs in full"
	}
	h.mu.Lock()
	d.Action = action
	h.mu.Unlock()
	h.log.Error("a record failed its integrity check (its bytes changed on the disk): it is never used for a decision; run gateagent diag",
		"record", name, "file", ae.Path, "action", action)
	detail := "record failed its integrity check: " + name + ": " + action
	if len(detail) > event.MaxDetail {
		detail = detail[:event.MaxDetail]
	}
	e := event.Event{Time: now, Kind: event.Alarm, CertID: id, Detail: detail}
	if ae.Bucket == "passback" {
		e.Direction = verify.Direction(ae.Key[verify.CertIDLen])
	}
	if _, err := h.journal.AppendEvent(e); err != nil {
		h.log.Error("could not record the alarm", "record", name, "err", err)
	}
}

// Damaged lists the records that failed authentication and are not yet
// healed, and those healed within the last hour, each checked again now.
func (h *healer) Damaged() []diag.DamagedRecord {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	var out []diag.DamagedRecord
	for name, d := range h.records {
		if !d.Healed && h.healedNow(d) {
			d.Healed, d.HealedAt = true, now
		}
		if d.Healed && now.Sub(d.HealedAt) > healKeep {
			delete(h.records, name)
			continue
		}
		out = append(out, *d)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].First.Before(out[b].First) })
	return out
}

// healedNow reads the record again: healed when it authenticates (or is
// gone: the feed no longer holds it).
func (h *healer) healedNow(d *diag.DamagedRecord) bool {
	id, err := verify.ParseCertID(d.CertID)
	switch d.Bucket {
	case "certs":
		if err != nil {
			return false
		}
		_, _, err := h.cache.Lookup(id, verify.Entry)
		return err == nil
	case "passback":
		if err != nil {
			return false
		}
		for _, dir := range []verify.Direction{verify.Entry, verify.Exit} {
			if _, _, err := h.journal.LastPass(&id, dir); err != nil {
				return false
			}
		}
		return true
	case "meta":
		_, err := h.cache.Feed()
		return err == nil
	case "events":
		// Healed once uploaded (as an alarm in its place) and deleted.
		evs, err := h.journal.Events(d.Seq-1, 1)
		return err == nil && (len(evs) == 0 || evs[0].Seq != d.Seq)
	}
	return false
}
