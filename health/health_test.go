package health

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/gate"
	"gateagent/keysync"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func healthy() Parts {
	return Parts{Gate: &gate.Status{State: "idle"}, Feed: &keysync.Status{FreshAt: t0.Add(-time.Minute), MaxAge: 30 * time.Minute},
		Now: t0, TrustedAfter: t0.Add(-24 * time.Hour)}
}

func TestJudge(t *testing.T) {
	full := fmt.Errorf("cache: append decision event: %w", syscall.ENOSPC)
	cases := []struct {
		name  string
		mod   func(*Parts)
		cause Cause
		what  string
	}{
		{"healthy", func(*Parts) {}, 0, ""},
		{"controller hung", func(p *Parts) { p.Ping = errors.New("gate: controller loop unresponsive for 2s") }, Unresponsive, "does not answer"},
		{"disk full", func(p *Parts) { p.Gate.RecordFault, p.Gate.RecordErr, p.Gate.RecordFaultSince = full.Error(), full, t0 }, NotRecording, "cannot be recorded"},
		{"read-only file system", func(p *Parts) { p.Cache = fmt.Errorf("/var/lib/gateagent: %w", syscall.EROFS) }, CacheNotWritable, "cannot be written"},
		{"passage sensor", func(p *Parts) { p.Gate.Fault = "the passage sensor cannot be read" }, BoardFault, "passage sensor"},
		{"relay", func(p *Parts) { p.Gate.RelayFault = true }, BoardFault, "relay output"},
		{"never synced", func(p *Parts) { p.Feed.FreshAt = time.Time{} }, NeverSynced, "waiting for the first key sync"},
		{"stale, refusing", func(p *Parts) { p.Feed.Stale, p.Feed.Refusing = true, true }, Stale, "refuse_when_stale"},
		{"clock in 1970", func(p *Parts) { p.Now = time.Unix(0, 0) }, ClockUntrusted, "1970-01-01"},
		{"clock disputed", func(p *Parts) { p.Gate.ClockRefused, p.Gate.ClockRefusedSince = gate.ClockDispute, t0 }, ClockDisputed, "disagrees with the passengers' phones"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := healthy()
			tc.mod(&p)
			r := Judge(p)
			if tc.cause == 0 {
				if !r.OK() || r.Summary() != "in service" {
					t.Fatalf("healthy parts judged %+v", r)
				}
				return
			}
			if r.OK() || len(r.Problems) != 1 || !r.Has(tc.cause) {
				t.Fatalf("%+v, want %v alone", r.Problems, tc.cause)
			}
			if s := r.Summary(); !strings.HasPrefix(s, "out of service: ") || !strings.Contains(s, tc.what) {
				t.Errorf("summary %q lacks %q", s, tc.what)
			}
		})
	}
	// A stale cache the gate still trusts (refuse_when_stale off) grants.
	p := healthy()
	p.Feed.Stale = true
	if r := Judge(p); !r.OK() {
		t.Errorf("stale without refusal: %+v", r)
	}
	// Fewer passengers refused for the clock than gate.ClockDispute: one
	// with an old screenshot, not a wrong clock.
	p = healthy()
	p.Gate.ClockRefused = gate.ClockDispute - 1
	if r := Judge(p); !r.OK() {
		t.Errorf("%d passengers refused for the clock: %+v", p.Gate.ClockRefused, r)
	}
	// The record fault keeps its error for errors.Is and its start.
	p = healthy()
	p.Gate.RecordFault, p.Gate.RecordErr, p.Gate.RecordFaultSince = full.Error(), full, t0
	pr, _ := Judge(p).Find(NotRecording)
	if !errors.Is(pr.Err, syscall.ENOSPC) || !pr.Since.Equal(t0) || !strings.Contains(pr.Detail, "no space left") {
		t.Errorf("problem %+v", pr)
	}
	// Parts not looked at judge nothing.
	if r := Judge(Parts{}); !r.OK() {
		t.Errorf("no parts: %+v", r)
	}
}

func TestReadinessJSON(t *testing.T) {
	p := healthy()
	p.Feed.FreshAt = time.Time{}
	p.Gate.Fault = "the passage sensor cannot be read"
	r := Judge(p)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"cause":"board_fault"`) || !strings.Contains(string(b), `"cause":"never_synced"`) {
		t.Fatalf("JSON %s", b)
	}
	var back Readiness
	if err := json.Unmarshal(b, &back); err != nil || !back.Same(r) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	for _, c := range Causes() {
		var d Cause
		if err := d.UnmarshalText([]byte(c.String())); err != nil || d != c {
			t.Errorf("cause %v does not round-trip", c)
		}
	}
}
