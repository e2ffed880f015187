package agent_test

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/verify"
)

// TestGarbageScannerBoundedLog: a scanner spewing 10,000 garbage lines (a
// pty, all in one write) through the real agent: every line is refused as
// MALFORMED, the log holds a bounded number of lines at info and above
// (the first denial, then its count), and the event log holds at most one
// malformed decision a second plus the counts of those left out, which
// add up to the 10,000.
func TestGarbageScannerBoundedLog(t *testing.T) {
	st := newStation(t, stationOpts{mod: func(c *config.Config) {
		c.Feed.Interval = time.Hour // few uploads: the events stay in the journal, or at the issuer
	}})
	var spew strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&spew, "GARBAGE %d\r", i)
	}
	start := time.Now()
	st.write(spew.String())
	deadline := time.After(60 * time.Second)
	for n := 0; n < 10000; {
		select {
		case o := <-st.outcomes:
			if o.Kind != gate.Denied || o.Decision.Reason != verify.Malformed {
				t.Fatalf("outcome %v %v, want every line refused as MALFORMED", o.Kind, o.Decision.Reason)
			}
			n++
		case <-deadline:
			t.Fatalf("only %d of 10,000 lines refused within 60 s", n)
		}
	}
	took := time.Since(start)
	t.Logf("10,000 garbage lines refused in %v", took.Round(time.Millisecond))
	st.stop() // writes what is still counted: the log's count line, the event log's count

	var loud, denied []string
	for _, l := range strings.Split(st.logs.String(), "\n") {
		if l == "" || strings.Contains(l, "level=DEBUG") {
			continue
		}
		loud = append(loud, l)
		if strings.Contains(l, "msg=denied") {
			denied = append(denied, l)
		}
	}
	// One line and one count per 10 s the spew lasted.
	maxDenied := 2 * (int(took/(10*time.Second)) + 1)
	if len(denied) < 2 || len(denied) > maxDenied || !strings.Contains(denied[len(denied)-1], "repeated=") {
		t.Errorf("%d denial lines for 10,000 garbage lines in %v, want at most %d, ending with their count:\n%s",
			len(denied), took, maxDenied, strings.Join(denied, "\n"))
	}
	if len(loud) > 40 {
		t.Errorf("%d log lines at info and above: not bounded:\n%s", len(loud), strings.Join(loud, "\n"))
	}
	logged := 0
	for _, l := range denied {
		logged++
		if m := regexp.MustCompile(`repeated=(\d+)`).FindStringSubmatch(l); m != nil {
			n, _ := strconv.Atoi(m[1])
			logged += n - 1
		}
	}
	if logged != 10000 {
		t.Errorf("the log's lines stand for %d denials, want 10,000", logged)
	}

	j, err := cache.OpenJournal(cache.JournalPath(st.cfg.Gate.Cache), cachetest.Options(&cache.Options{ReadOnly: true}))
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	local, err := j.Events(0, 100000)
	if err != nil {
		t.Fatal(err)
	}
	// The agent's first feed round may upload the first malformed
	// decisions before the hour's interval starts: those are the issuer's.
	raw, err := st.srv.GateEvents(st.cfg.Gate.ID)
	if err != nil {
		t.Fatal(err)
	}
	var evs []event.Event
	seen := map[uint64]bool{}
	for _, r := range raw {
		var e event.Event
		if err := json.Unmarshal(r, &e); err != nil {
			t.Fatal(err)
		}
		seen[e.Seq] = true
		evs = append(evs, e)
	}
	for _, e := range local {
		if !seen[e.Seq] {
			evs = append(evs, e)
		}
	}
	more := regexp.MustCompile(`(\d+) more malformed scans? not recorded`)
	records, represented := 0, 0
	for _, e := range evs {
		if e.Reason != verify.Malformed {
			continue
		}
		records++
		if m := more.FindStringSubmatch(e.Detail); m != nil {
			n, _ := strconv.Atoi(m[1])
			represented += n
			if strings.HasPrefix(e.Detail, m[0]) {
				continue // a count alone
			}
		}
		represented++
	}
	if maxRecords := 2 * (int(took/time.Second) + 2); records > maxRecords {
		t.Errorf("%d malformed events for a spew of %v, want at most %d", records, took, maxRecords)
	}
	if represented != 10000 {
		t.Errorf("the event log's malformed records stand for %d scans, want 10,000", represented)
	}
}
