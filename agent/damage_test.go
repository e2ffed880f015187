package agent_test

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/internal/eventually"
	"gateagent/verify"
)

// TestStartOnDamagedFiles: the agent starts on a key cache (and, in the
// second case, a journal) damaged while it was stopped, with the issuer
// out of reach and events not yet uploaded. It moves the damaged file
// aside and records an alarm: the journal at once (it is checked whole
// as it opens); the cache, whose certificates are checked beside the
// gate once it runs, when that check finds the damage, and then the agent
// stops with an error, the relay never moved, to be started again
// (systemd's Restart=always). Started again, it keeps the gate shut (a
// valid code is refused as undecided, the relay never moves) while the
// cache is empty, has salvaged the events, and once the issuer answers
// it rebuilds the cache, grants the valid code and uploads the events:
// every one, or all but the lost ones the alarm counts.
func TestStartOnDamagedFiles(t *testing.T) {
	for _, journalToo := range []bool{false, true} {
		name := "cache"
		if journalToo {
			name = "cache and journal"
		}
		t.Run(name, func(t *testing.T) {
			st := newStation(t, stationOpts{noStart: true, mod: func(c *config.Config) { c.Timing.Deny = time.Millisecond }})
			// Enough certificates for pages of their own in the cache.
			certs := make([]verify.Cert, 3000)
			nb := time.Now().Truncate(time.Second).Add(-time.Hour)
			for i := range certs {
				h := sha256.Sum256([]byte{byte(i), byte(i >> 8), 'k'})
				copy(certs[i].ID[:], h[:16])
				copy(certs[i].Key[:], h[:])
				certs[i].NotBefore, certs[i].NotAfter = nb, nb.Add(24*time.Hour)
			}
			if err := st.srv.InsertSynthetic(certs); err != nil {
				t.Fatal(err)
			}
			st.start(nil, nil)
			c := st.issue()
			// Refused codes of certificates the issuer never made: their
			// decisions stay in the journal while the issuer is down.
			st.srv.Stop()
			for i := range 120 {
				var key verify.Key
				id := verify.CertID{0xEE, byte(i)}
				st.write(verify.NewToken(&key, id, verify.StepOf(time.Now())).String() + "\r")
				if o := st.want(gate.Denied); o.Decision.Reason != verify.UnknownCert {
					t.Fatalf("scan %d: %v", i, o.Decision.Reason)
				}
			}
			st.stop()
			before := readJournal(t, st.cfg.Gate.Cache)
			if len(before) < 120 {
				t.Fatalf("%d events in the journal before the damage", len(before))
			}
			// The feed's batches reach cache.db only once the delta is
			// written as a run (schema 4): written now, as the agent's
			// maintenance does once a window has passed. Then a leaf of
			// the certificates' groups is wrecked (bucket groups: 24-byte
			// keys, run ‖ last ID, one group a leaf).
			writeRun(t, st.cfg.Gate.Cache)
			wreckLeaf(t, st.cfg.Gate.Cache, 24)
			if journalToo {
				if err := cachetest.WreckJournalRecord(cache.JournalPath(st.cfg.Gate.Cache), 20); err != nil {
					t.Fatal(err)
				}
			}

			if err := st.startUntilStopped(); err == nil || !strings.Contains(err.Error(), "the key cache is damaged") {
				t.Fatalf("the agent on a damaged cache stopped with %v, want the damage", err)
			}
			st.start(nil, nil)
			moved, _ := filepath.Glob(st.cfg.Gate.Cache + ".damaged-*")
			if len(moved) != 1 {
				t.Fatalf("damaged cache moved to %v, want one file", moved)
			}
			// The gate is shut until the cache is rebuilt.
			tok := tokenOf(t, c.Key, c.ID)
			st.write(tok + "\r")
			o := st.want(gate.Denied)
			if o.Decision.Reason != verify.Undecided || !errors.Is(o.Err, cache.ErrNotSynced) {
				t.Fatalf("valid code on the rebuilding gate: %v, %v; want undecided, not synced", o.Decision.Reason, o.Err)
			}
			local, err := st.ag.Journal().Events(0, 10000)
			if err != nil {
				t.Fatal(err)
			}
			alarm, lost := damageAlarms(t, local, journalToo)
			if !strings.Contains(alarm, "key cache damaged") || !strings.Contains(alarm, filepath.Base(moved[0])) {
				t.Fatalf("alarm %q", alarm)
			}
			if !st.logged("the key cache is damaged") {
				t.Fatalf("no error in the log:\n%s", st.logs.String())
			}
			salvaged := 0
			for _, e := range local {
				if w, ok := before[e.Seq]; ok {
					if w != e {
						t.Fatalf("event %d salvaged as %+v, was %+v", e.Seq, e, w)
					}
					salvaged++
				}
			}
			if salvaged+lost != len(before) || journalToo != (lost > 0) {
				t.Fatalf("%d of %d events salvaged, %d reported lost", salvaged, len(before), lost)
			}

			// The issuer is back: the cache is rebuilt, the code granted,
			// and the events uploaded.
			st.srv.Restart()
			st.waitCache(c.ID, func(_ verify.Record, ok bool) bool { return ok })
			st.write(tokenOf(t, c.Key, c.ID) + "\r")
			st.want(gate.Granted)
			if got := levels(st.relayOuts()); strings.Count(got, "U") != 1 {
				t.Fatalf("relay driven %s: want one unlock, for the grant after the rebuild", got)
			}
			n := 0
			if !eventually.Within(20*time.Second, func() bool {
				up := uploaded(t, st)
				n = 0
				for seq := range before {
					if _, ok := up[seq]; ok {
						n++
					}
				}
				return n == salvaged && len(up) > salvaged
			}) {
				t.Fatalf("the issuer holds %d of the %d salvaged events", n, salvaged)
			}
		})
	}
}

// readJournal reads the closed journal beside the cache at path.
func readJournal(t *testing.T, path string) map[uint64]event.Event {
	t.Helper()
	j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	evs, err := j.Events(0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]event.Event{}
	for _, e := range evs {
		out[e.Seq] = e
	}
	return out
}

// writeRun writes the delta of the closed cache at path as a run
// (Cache.WriteRun): feed batches reach cache.db only then, and a test
// that damages certificates in the file needs them there.
func writeRun(t *testing.T, path string) {
	t.Helper()
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRun(time.Now()); err != nil {
		c.Close()
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// wreckLeaf destroys the type of a leaf page of keySize-byte keys that the
// closed file at path uses (the second such page, when there is one).
func wreckLeaf(t *testing.T, path string, keySize uint32) {
	t.Helper()
	pages := cachetest.LeavesInUse(t, path, keySize, 1)
	if len(pages) == 0 {
		t.Fatalf("no leaf page of %d-byte keys in use in %s", keySize, path)
	}
	cachetest.WreckPage(t, path, pages[min(1, len(pages)-1)])
}

// damageAlarms returns the cache's damage alarm and the number of events
// the journal's alarm says were lost (it must say exactly).
func damageAlarms(t *testing.T, evs []event.Event, journalToo bool) (string, int) {
	t.Helper()
	var cacheAlarm string
	lost := 0
	journalAlarm := false
	for _, e := range evs {
		if e.Kind != event.Alarm {
			continue
		}
		switch {
		case strings.HasPrefix(e.Detail, "key cache damaged"):
			cacheAlarm = e.Detail
		case strings.HasPrefix(e.Detail, "journal damaged"):
			journalAlarm = true
			_, n, ok := strings.Cut(e.Detail, "lost: ")
			if !ok {
				t.Fatalf("journal alarm %q does not say how many events were lost", e.Detail)
			}
			if _, err := fmt.Sscan(n, &lost); err != nil {
				t.Fatalf("journal alarm %q: the lost count is not exact", e.Detail)
			}
		}
	}
	if journalAlarm != journalToo {
		t.Fatalf("journal alarm %v, want %v: %+v", journalAlarm, journalToo, evs)
	}
	return cacheAlarm, lost
}

// uploaded returns the gate's events the issuer holds, by sequence number.
func uploaded(t *testing.T, st *station) map[uint64]bool {
	t.Helper()
	up := map[uint64]bool{}
	evs, err := st.srv.GateEvents(st.cfg.Gate.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range evs {
		var e struct{ Seq uint64 }
		if err := json.Unmarshal(raw, &e); err != nil {
			t.Fatal(err)
		}
		up[e.Seq] = true
	}
	return up
}

// tokenOf is the passenger's code of now, from the key the issuer gave
// the phone (the issuer may be down).
func tokenOf(t *testing.T, key string, id verify.CertID) string {
	t.Helper()
	k, err := verify.ParseKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return verify.NewToken(&k, id, verify.StepOf(time.Now())).String()
}
