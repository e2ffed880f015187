package metrics

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gateagent/cache"
	"gateagent/gate"
	"gateagent/health"
	"gateagent/keysync"
	"gateagent/scanner"
	"gateagent/station"
	"gateagent/wear"
)

// Status is what /status serves as JSON. A part whose source is nil is
// absent. Error texts are redacted of cert IDs (see the package comment).
// Durations are seconds, with the unit in the key ("rtt_seconds"); 64-bit
// numbers that name a position (sequence numbers, feed cursors, epochs)
// are strings, since a JSON number above 2^53 loses digits in JavaScript
// and in every tool built on it.
type Status struct {
	GateID        string    `json:"gate_id"`
	Direction     string    `json:"direction"`
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	Now           time.Time `json:"now"`
	// Healthy is what /healthz reports: the gate can grant a valid code.
	// When it cannot, HealthError says why in one line and Problems lists
	// each cause (health.Readiness).
	Healthy     bool             `json:"healthy"`
	HealthError string           `json:"health_error,omitempty"`
	Problems    []health.Problem `json:"problems,omitempty"`
	// ClockRefusals counts the codes refused for the clock in the last
	// hour.
	ClockRefusals ClockRefusals `json:"clock_refusals_last_hour"`

	Gate    *gate.Status    `json:"gate,omitempty"`
	Feed    *FeedStatus     `json:"feed,omitempty"`
	Scanner *ScannerStatus  `json:"scanner,omitempty"`
	Cache   *CacheStatus    `json:"cache,omitempty"`
	Station *station.Status `json:"station,omitempty"`
	Storage *StorageStatus  `json:"storage,omitempty"`
	Latency []StageLatency  `json:"latency"`
	Drift   Drift           `json:"drift"`
}

// FeedStatus is the key feed client's state (keysync.Status).
type FeedStatus struct {
	Head          uint64    `json:"head,string"`
	OffsetSeconds float64   `json:"clock_offset_seconds"`
	OffsetKnown   bool      `json:"clock_offset_known"`
	RTTSeconds    float64   `json:"rtt_seconds"`
	FreshAt       time.Time `json:"fresh_at,omitzero"`
	MaxAgeSeconds float64   `json:"max_age_seconds"`
	Stale         bool      `json:"stale"`
	Refusing      bool      `json:"refusing"`
	Failures      int       `json:"failures"`
	LastError     string    `json:"last_error,omitempty"`
	LastErrAt     time.Time `json:"last_error_at,omitzero"`
	Uploaded      uint64    `json:"events_uploaded"`
}

func feedStatusOf(f keysync.Status) *FeedStatus {
	return &FeedStatus{Head: f.Head, OffsetSeconds: f.Offset.Seconds(), OffsetKnown: f.OffsetOK, RTTSeconds: f.RTT.Seconds(),
		FreshAt: f.FreshAt, MaxAgeSeconds: f.MaxAge.Seconds(), Stale: f.Stale, Refusing: f.Refusing, Failures: f.Failures,
		LastError: redact(f.LastError), LastErrAt: f.LastErrAt, Uploaded: f.Uploaded}
}

// ScannerStatus is the serial scanner's counters (scanner.Stats).
// Present is false when the gate has no serial scanner; the rest is then
// zero. Lines are Codes (read as TR1 codes) and Rejected lines.
type ScannerStatus struct {
	Present    bool      `json:"present"`
	Connected  bool      `json:"connected"`
	Lines      uint64    `json:"lines"`
	Codes      uint64    `json:"codes"`
	Rejected   uint64    `json:"rejected"`
	Suppressed uint64    `json:"suppressed"`
	Overlong   uint64    `json:"overlong"`
	Reconnects uint64    `json:"reconnects"`
	LastScan   time.Time `json:"last_scan,omitzero"`
	LastError  string    `json:"last_error,omitempty"`
	// Endings counts the line endings the scanner sent; Sends names them
	// ("cr", "lf", "crlf", "mixed"; absent before the first).
	Endings ScannerEndings `json:"endings"`
	Sends   string         `json:"sends,omitempty"`
}

// ScannerEndings is scanner.Endings.
type ScannerEndings struct {
	CR   uint64 `json:"cr"`
	LF   uint64 `json:"lf"`
	CRLF uint64 `json:"crlf"`
}

// CacheStatus is the last read of the key cache's statistics: when it
// was made (reads are reused for Options.CacheEvery) and either Stats or
// the Error it failed with.
type CacheStatus struct {
	ReadAt time.Time   `json:"cache_read_at"`
	Error  string      `json:"cache_error,omitempty"`
	Stats  *CacheStats `json:"stats,omitempty"`
}

// CacheStats is cache.Stats without anything that names a certificate
// (a full sync's resume point is a cert ID: only its progress is shown).
type CacheStats struct {
	Schema    int       `json:"schema"`
	Certs     int       `json:"certs"`
	Passbacks int       `json:"passbacks"`
	Events    int       `json:"events"` // not yet acknowledged by the issuer
	LastSeq   uint64    `json:"last_event_seq,string"`
	OldestAt  time.Time `json:"oldest_event_at,omitzero"`
	FileSize  int64     `json:"file_size"`
	Feed      CacheFeed `json:"feed"`
}

// CacheFeed is what the cache knows of the key feed (cache.FeedState).
type CacheFeed struct {
	Cursor        uint64       `json:"cursor,string"`
	KeyID         string       `json:"key_id,omitempty"`
	IssuerTime    time.Time    `json:"issuer_time,omitzero"`
	MaxAgeSeconds float64      `json:"max_age_seconds"`
	SyncedAt      time.Time    `json:"synced_at,omitzero"`
	Epoch         uint64       `json:"epoch,string,omitempty"`
	Resync        *CacheResync `json:"resync,omitempty"`
}

// CacheResync is the progress of a full sync under way.
type CacheResync struct {
	Epoch    uint64 `json:"epoch,string"`
	Snapshot uint64 `json:"snapshot,string"`
	Certs    int    `json:"certs"`
}

func cacheStatsOf(s cache.Stats) *CacheStats {
	f := s.Feed
	out := &CacheStats{Schema: s.Schema, Certs: s.Certs, Passbacks: s.Passbacks, Events: s.Events, LastSeq: s.LastSeq,
		OldestAt: s.OldestAt, FileSize: s.FileSize,
		Feed: CacheFeed{Cursor: f.Cursor, KeyID: f.KeyID, IssuerTime: f.IssuerTime, MaxAgeSeconds: f.MaxAge.Seconds(), SyncedAt: f.SyncedAt, Epoch: f.Epoch}}
	if r := f.Resync; r != nil {
		out.Feed.Resync = &CacheResync{Epoch: r.Epoch, Snapshot: r.Snapshot, Certs: r.Certs}
	}
	return out
}

// Status reads the sources (the cache's statistics as reused for
// CacheEvery) and returns what /status serves.
func (m *Metrics) Status() Status {
	now := m.now()
	s := Status{
		GateID: m.info.GateID, Direction: m.info.Direction, Version: m.info.Version,
		StartedAt: m.started, UptimeSeconds: now.Sub(m.started).Seconds(), Now: now,
		Latency: m.Latency(), Drift: m.Drift(), ClockRefusals: m.ClockRefusals(),
	}
	r := m.ready()
	s.Healthy = r.OK()
	if !s.Healthy {
		s.HealthError = redact(r.Summary())
		for _, p := range r.Problems {
			p.What, p.Detail = redact(p.What), redact(p.Detail)
			s.Problems = append(s.Problems, p)
		}
	}
	if m.src.Gate != nil {
		var g gate.Status
		if m.safely("gate", func() { g = m.src.Gate() }) {
			s.Gate = &g
		}
	}
	if m.src.Feed != nil {
		var f keysync.Status
		if m.safely("feed", func() { f = m.src.Feed() }) {
			s.Feed = feedStatusOf(f)
		}
	}
	if m.src.Scanner != nil {
		var st scanner.Stats
		var present bool
		if m.safely("scanner", func() { st, present = m.src.Scanner() }) {
			s.Scanner = &ScannerStatus{Present: present}
			if present {
				s.Scanner = &ScannerStatus{Present: true, Connected: st.Connected, Lines: st.Lines, Codes: st.Codes, Rejected: st.Rejected,
					Suppressed: st.Suppressed, Overlong: st.Overlong, Reconnects: st.Reconnects, LastScan: st.LastScan, LastError: redact(st.LastError),
					Endings: ScannerEndings{CR: st.Endings.CR, LF: st.Endings.LF, CRLF: st.Endings.CRLF}, Sends: st.Endings.Sent()}
			}
		}
	}
	if st, ok := m.station(); ok {
		s.Station = &st
	}
	if m.src.Wear != nil {
		var r wear.Report
		if m.safely("wear", func() { r = m.src.Wear() }) {
			s.Storage = storageStatusOf(r)
		}
	}
	if cr, ok := m.cacheStats(); ok {
		s.Cache = &CacheStatus{ReadAt: cr.at}
		if cr.err != nil {
			s.Cache.Error = redact(cr.err.Error())
		} else {
			s.Cache.Stats = cacheStatsOf(cr.stats)
		}
	}
	return s
}

// healthAdvice is what /healthz tells whoever reads a failure: diag says
// what to do about each cause.
const healthAdvice = "every code is refused: run gateagent diag on the gate, it says what to do"

// serveHealth answers 200 "ok" while the gate can grant a valid code, 503
// otherwise: one line per cause, then the advice.
func (m *Metrics) serveHealth(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	rd := m.ready()
	if rd.OK() {
		fmt.Fprint(w, "ok\n")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	for _, p := range rd.Problems {
		line := p.What
		if p.Detail != "" {
			line += ": " + p.Detail
		}
		fmt.Fprintf(w, "unhealthy: %s: %s\n", p.Cause, redact(line))
	}
	fmt.Fprintf(w, "%s\n", healthAdvice)
}

func (m *Metrics) serveStatus(w http.ResponseWriter, r *http.Request) {
	b, err := json.MarshalIndent(m.Status(), "", "  ")
	if err != nil { // cannot happen: every field marshals
		m.log.Error("metrics: encode status", "err", err)
		http.Error(w, "status unavailable: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(append(b, '\n'))
}

func promhttpHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// minRedact is the shortest hex run redacted when it has a letter; runs of
// a full cert ID's length (32) or more are redacted even if all digits.
const (
	minRedact = 16
	certIDHex = 32
)

// redact replaces the hex runs in s that may be a cert ID (or part of
// one) with "[redacted]": runs of 32 hex digits or more, and runs of 16 or
// more that hold a letter (plain decimal numbers such as cursors stay).
func redact(s string) string {
	isHex := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
	var out []byte
	last := 0
	for i := 0; i < len(s); {
		if !isHex(s[i]) {
			i++
			continue
		}
		j, letter := i, false
		for j < len(s) && isHex(s[j]) {
			letter = letter || s[j] > '9'
			j++
		}
		if n := j - i; n >= certIDHex || n >= minRedact && letter {
			out = append(append(out, s[last:i]...), "[redacted]"...)
			last = j
		}
		i = j
	}
	if out == nil {
		return s
	}
	return string(append(out, s[last:]...))
}
