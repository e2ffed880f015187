package cache_test

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/internal/seglog/seglogtest"
	"gateagent/verify"
)

// TestJournalPowerCut cuts the power at every operation on the journal's
// segments of a workload that records events and passages, acknowledges
// and purges some, renumbers once, compacts during an outage (segments
// of two records) and reopens, on internal/seglog's model of a power
// cut (writes and renames not synced lost, the write in flight torn).
// After each cut the journal opens whole, and:
//
//   - every event whose append returned is there under its number, with
//     what was written, unless it was acknowledged;
//   - no number is given twice: the next event's follows every number an
//     append returned;
//   - every passage recorded is known, unless purged;
//   - no event is there that was never appended.
func TestJournalPowerCut(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "journal")
	o := cachetest.Options(&cache.Options{JournalSegment: 2 * 4096}) // two records a segment
	type model struct {
		events   map[uint64]string // appended and returned: seq → detail
		inflight map[uint64]string // appended, not returned
		acked    uint64            // the highest number acknowledged (issued)
		renumber bool              // a renumbering was issued: numbers moved
		maxSeq   uint64
		passes   map[verify.CertID]time.Time
		cut      time.Time // passages before it may be purged
	}
	ids := cachetest.Batch(0, 40, 40).Upserts
	workload := func(fs *seglogtest.CrashFS, seed uint64) *model {
		m := &model{events: map[uint64]string{}, inflight: map[uint64]string{}, passes: map[verify.CertID]time.Time{}}
		cache.SetJournalFS(t, fs)
		rng := rand.New(rand.NewPCG(seed, 7))
		j, err := cache.OpenJournal(dir, o)
		if err != nil {
			return m
		}
		defer func() { j.Close() }()
		now := t0
		for i := range 90 {
			now = now.Add(time.Minute)
			switch k := rng.IntN(20); {
			case k == 0:
				j.Close()
				if j, err = cache.OpenJournal(dir, o); err != nil {
					return m
				}
			case k == 1 && i > 60:
				// Acknowledged: the upload of everything so far.
				m.acked = max(m.acked, m.maxSeq)
				if _, err := j.DeleteEventsThrough(m.maxSeq); err != nil {
					return m
				}
			case k == 2:
				m.cut = now.Add(-10 * time.Minute)
				if _, err := j.PurgePassages(now, 10*time.Minute); err != nil {
					return m
				}
			case k == 3 && !m.renumber && i > 30:
				m.renumber = true // the numbers change: checked no further
				if _, err := j.Renumber(m.maxSeq+100, now); err != nil {
					return m
				}
				return m
			default:
				detail := fmt.Sprintf("event %d", i)
				e := event.Event{Time: now, Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, Detail: detail}
				next := m.maxSeq + 1 // the journal's next number, as far as the test knows
				m.inflight[next] = detail
				var seq uint64
				if k%2 == 0 {
					id := ids[rng.IntN(len(ids))].ID
					e.Kind, e.CertID = event.Passage, id
					seq, err = j.RecordPassage(id, verify.Entry, e)
					if err == nil {
						m.passes[id] = now
					}
				} else {
					seq, err = j.AppendEvent(e)
				}
				if err != nil {
					return m
				}
				if seq != next {
					t.Fatalf("seed %d: event numbered %d, want %d", seed, seq, next)
				}
				delete(m.inflight, next)
				m.events[seq], m.maxSeq = detail, seq
			}
		}
		return m
	}
	dry := seglogtest.NewCrashFS()
	workload(dry, 1)
	total := dry.Ops()
	if total < 100 {
		t.Fatalf("the workload made %d operations on the segments", total)
	}
	cuts := 0
	for seed := uint64(1); seed <= 3; seed++ {
		for cut := 1; cut <= total+1; cut++ {
			fs := seglogtest.NewCrashFS()
			fs.CutAt = cut
			m := workload(fs, seed)
			after := fs.Crash(rand.New(rand.NewPCG(seed, uint64(cut))))
			cache.SetJournalFS(t, after)
			what := fmt.Sprintf("seed %d, cut at operation %d", seed, cut)
			j, err := cache.OpenJournal(dir, o)
			if err != nil {
				t.Fatalf("%s: open after the cut: %v", what, err)
			}
			evs, err := j.Events(0, 1000)
			if err != nil {
				t.Fatalf("%s: events: %v", what, err)
			}
			if !m.renumber {
				got := map[uint64]bool{}
				for _, e := range evs {
					want, ok := m.events[e.Seq]
					if !ok {
						want, ok = m.inflight[e.Seq]
					}
					if !ok || e.Detail != want {
						t.Fatalf("%s: event %d reads %q, never appended so", what, e.Seq, e.Detail)
					}
					got[e.Seq] = true
				}
				for seq, detail := range m.events {
					if seq > m.acked && !got[seq] {
						t.Fatalf("%s: event %d (%s) was durable and not acknowledged, and is lost", what, seq, detail)
					}
				}
				for id, at := range m.passes {
					if at.Before(m.cut) {
						continue
					}
					if last, ok, err := j.LastPass(&id, verify.Entry); err != nil || !ok || last.Before(at) {
						t.Fatalf("%s: the passage of %s at %v is lost: %v %v %v", what, id, at, last, ok, err)
					}
				}
			}
			seq, err := j.AppendEvent(event.Event{Time: t0, Kind: event.Alarm, Detail: "after the cut"})
			if err != nil || seq <= m.maxSeq && !m.renumber {
				t.Fatalf("%s: the next event is numbered %d (%v); %d was given before the cut", what, seq, err, m.maxSeq)
			}
			j.Close()
			j, err = cache.OpenJournal(dir, o)
			if err != nil {
				t.Fatalf("%s: reopen after the append: %v", what, err)
			}
			if evs, err := j.Events(0, 1000); err != nil || len(evs) == 0 || evs[len(evs)-1].Detail != "after the cut" {
				t.Fatalf("%s: reopened after the append: %d events, %v", what, len(evs), err)
			}
			j.Close()
			cuts++
		}
	}
	t.Logf("%d cuts, %d operations in the first workload", cuts, total)
}
