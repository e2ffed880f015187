// Package metrics is the gate's counters, health and status over HTTP:
//
//	GET /healthz  can the gate grant a valid code (200 "ok", or 503 and why)
//	GET /status   the gate's state as JSON (Status)
//	GET /metrics  Prometheus metrics, namespace gateagent
//
// Other paths answer 404 and other methods 405 (HEAD is served as GET).
//
// /healthz, /status's "healthy" and gateagent_ready all read one verdict,
// Sources.Ready (health.Judge of the agent's parts): unhealthy whenever the
// gate cannot grant, whatever the reason (its controller hangs, its event
// log cannot be written, a board fault, no certificates yet, a stale cache
// it refuses to use, an untrusted clock). The watchdog is another matter:
// it restarts the agent only when the controller hangs, since a restart
// cures none of the others. A lost scanner or a feed that does not answer
// while the cache is fresh leave the gate able to grant: they are in
// /status and the metrics (gateagent_scanner_connected,
// gateagent_feed_failures, ...), where alerts should look for them.
//
// Counters and latency histograms are fed by Observe, hooked into
// gate.Config.Observe. Everything else is read from Sources at scrape (or
// /status) time. The cache's statistics walk the whole file, so they are
// read at most once per Options.CacheEvery and reused in between.
//
// No label and no field of /status ever carries a certificate ID, a token's
// text or any other identity: decisions are counted by reason, outcome kind
// and a clamped step offset only, and error texts that come from the
// sources (the feed's last error, the cache's error, the scanner's last
// error) have any long hex run (a cert ID) replaced by "[redacted]".
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"gateagent/cache"
	"gateagent/gate"
	"gateagent/health"
	"gateagent/internal/version"
	"gateagent/keysync"
	"gateagent/scanner"
	"gateagent/station"
	"gateagent/verify"
	"gateagent/wear"
)

// Namespace prefixes every metric name.
const Namespace = "gateagent"

// DefaultCacheEvery is how long a read of the cache's statistics is reused
// when Options.CacheEvery is zero.
const DefaultCacheEvery = time.Minute

// Sources are read at scrape (and /status) time. Each may be nil: that
// part is left out of the metrics and of /status.
type Sources struct {
	// Gate is the controller's status (gate.Controller.Status).
	Gate func() gate.Status
	// Feed is the key feed client's status (keysync.Client.Status).
	Feed func() keysync.Status
	// Scanner returns the serial scanner's counters; false when the gate
	// has no serial scanner (an image scanner).
	Scanner func() (scanner.Stats, bool)
	// Cache returns the key cache's statistics (cache.Cache.Stats). It
	// walks the whole file: it is called at most once per
	// Options.CacheEvery, never twice at once, and its result (or error)
	// is reused in between.
	Cache func() (cache.Stats, error)
	// Ready says whether the gate can grant (health.Judge of the agent's
	// parts, the controller's liveness among them). A nil Ready counts as
	// ready.
	Ready func() health.Readiness
	// Station is the station peer node's status (station.Node.Status);
	// nil without a station group.
	Station func() station.Status
	// Wear is what the gate reports of its flash's wear (package wear):
	// cheap, the files' figures measured off the scan path beforehand.
	Wear func() wear.Report
}

// Info names the gate in the build-info metric and in /status.
type Info struct {
	GateID    string
	Direction string
	Version   string // empty: version.Version
}

// Options are the collaborators of Metrics. Zero fields take defaults.
type Options struct {
	Now        func() time.Time // default time.Now
	CacheEvery time.Duration    // default DefaultCacheEvery (1 min)
	Logger     *slog.Logger     // default discards
}

// The histogram buckets, in seconds.
var (
	scanToRelayBuckets = []float64{.0005, .001, .002, .003, .005, .01, .02, .05, .1, .25, .5, 1}
	stageBuckets       = []float64{.00001, .00005, .0001, .0005, .001, .002, .005, .01, .05, .1, .5, 1}
)

// The stages of Outcome.Stages, in the order of Latency, then the
// scan-to-relay latency of grants.
const (
	stageRead = iota
	stageDecode
	stageLookup
	stageTag
	stageRecord
	stageRelay
	stageScanToRelay
	numStages
)

var stageNames = [numStages]string{"read", "decode", "lookup", "tag", "record", "relay", "scan_to_relay"}

// maxOffsetLabel clamps the step-offset label to -3..3.
const maxOffsetLabel = 3

// Metrics counts the gate's outcomes and serves them with its health and
// status. Its methods are safe for concurrent use.
type Metrics struct {
	info       Info
	src        Sources
	now        func() time.Time
	cacheEvery time.Duration
	log        *slog.Logger
	started    time.Time
	reg        *prometheus.Registry

	// Pre-resolved children, so that Observe does no label lookups.
	decisionVec *prometheus.CounterVec
	decisions   []prometheus.Counter // by verify.Reason
	outcomeVec  *prometheus.CounterVec
	outcomes    []prometheus.Counter // by gate.OutcomeKind
	offsets     [2*maxOffsetLabel + 1]prometheus.Counter
	scanToRelay prometheus.Histogram
	stageHist   [stageScanToRelay]prometheus.Observer

	// lat keeps the exact recent samples and bucket counts of each stage
	// for Latency; drift the recent step offsets for Drift. ringMu guards
	// both: Observe holds it once, for a few stores; readers for a copy.
	ringMu sync.Mutex
	lat    [numStages]latencyRing
	drift  driftRing
	clock  clockRing

	// cacheMu is held while Sources.Cache runs (one read at a time) and
	// guards cached. Observe never takes it.
	cacheMu sync.Mutex
	cached  cacheRead
}

// cacheRead is one read of Sources.Cache.
type cacheRead struct {
	stats cache.Stats
	err   error
	at    time.Time
	ok    bool // a read was made
}

// New returns the gate's metrics, registered on a private registry with
// the Go and process collectors.
func New(info Info, src Sources, opts Options) *Metrics {
	if info.Version == "" {
		info.Version = version.Version
	}
	m := &Metrics{info: info, src: src, now: opts.Now, cacheEvery: opts.CacheEvery, log: opts.Logger}
	if m.now == nil {
		m.now = time.Now
	}
	if m.cacheEvery <= 0 {
		m.cacheEvery = DefaultCacheEvery
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.started = m.now()

	m.decisionVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "decisions_total",
		Help: "Checked scans (granted and denied outcomes) by the verifier's reason, e.g. OK, CODE_STALE.",
	}, []string{"reason"})
	for _, r := range verify.Reasons() {
		m.decisions = append(m.decisions, m.decisionVec.WithLabelValues(r.String()))
	}
	m.outcomeVec = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "outcomes_total",
		Help: "What the gate did, by kind: granted, denied, ignored, passed, forced, ...",
	}, []string{"kind"})
	m.outcomes = append(m.outcomes, nil) // OutcomeKind 0 is not an outcome
	for k := gate.OutcomeKind(1); k.String() != "unknown"; k++ {
		m.outcomes = append(m.outcomes, m.outcomeVec.WithLabelValues(k.String()))
	}
	offsetVec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "token_step_offset_total",
		Help: "Authentic tokens by their step minus the gate's step (clock drift of phones against the gate), clamped: -3 counts -3 and below, 3 counts 3 and above.",
	}, []string{"offset"})
	for i := range m.offsets {
		m.offsets[i] = offsetVec.WithLabelValues(strconv.Itoa(i - maxOffsetLabel))
	}
	m.scanToRelay = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "scan_to_relay_seconds",
		Help:    "Granted scans: from the scanner's read of the code to the relay being set.",
		Buckets: scanToRelayBuckets,
	})
	stageVec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "stage_seconds",
		Help:    "Time spent in each stage of a checked scan (read, decode, lookup, tag, record, relay); a stage that did not run is not observed.",
		Buckets: stageBuckets,
	}, []string{"stage"})
	for i := range m.stageHist {
		m.stageHist[i] = stageVec.WithLabelValues(stageNames[i])
	}
	for i := range m.lat {
		b := stageBuckets
		if i == stageScanToRelay {
			b = scanToRelayBuckets
		}
		m.lat[i].init(b)
	}

	m.reg = prometheus.NewRegistry()
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.decisionVec, m.outcomeVec, offsetVec, m.scanToRelay, stageVec,
		sourceCollector{m}, peerCollector{m}, wearCollector{m},
	)
	return m
}

// Registry is the private registry /metrics serves.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe counts one outcome of the gate. It is meant for
// gate.Config.Observe, on the controller's goroutine: it does no I/O,
// never calls a Source, allocates nothing and takes one lock, which
// readers (Latency, Drift, /status) hold only to copy the recent samples
// and which is never held while a Source (the slow cache walk above all)
// runs. It is also safe to call from several goroutines.
func (m *Metrics) Observe(o gate.Outcome) {
	if int(o.Kind) < len(m.outcomes) && o.Kind != 0 {
		m.outcomes[o.Kind].Inc()
	} else {
		m.outcomeVec.WithLabelValues(o.Kind.String()).Inc() // "unknown"
	}
	if o.Kind != gate.Granted && o.Kind != gate.Denied {
		return
	}
	d := &o.Decision
	if r := int(d.Reason); r < len(m.decisions) {
		m.decisions[r].Inc()
	} else {
		m.decisionVec.WithLabelValues(d.Reason.String()).Inc() // at most 256 values
	}
	authentic := d.Authentic()
	if authentic {
		m.offsets[clamp(d.StepOffset, maxOffsetLabel)+maxOffsetLabel].Inc()
	}
	// The samples (zero: the stage did not run) and their buckets.
	st := [numStages]time.Duration{o.Stages.Read, o.Stages.Decode, o.Stages.Lookup, o.Stages.Tag, o.Stages.Record, o.Stages.Relay}
	if o.Kind == gate.Granted && !o.ScanAt.IsZero() && !o.At.IsZero() {
		st[stageScanToRelay] = max(0, o.At.Sub(o.ScanAt))
	}
	var bucket [numStages]int
	for i, v := range st {
		if v > 0 {
			if i == stageScanToRelay {
				m.scanToRelay.Observe(v.Seconds())
			} else {
				m.stageHist[i].Observe(v.Seconds())
			}
			bucket[i] = m.lat[i].bucketOf(v)
		}
	}
	m.ringMu.Lock()
	for i, v := range st {
		if v > 0 {
			m.lat[i].add(v, bucket[i])
		}
	}
	if authentic {
		m.drift.add(d.StepOffset)
	}
	if o.Kind == gate.Denied && (d.Reason == verify.CodeStale || d.Reason == verify.CodeFromFuture) {
		at := o.At
		if at.IsZero() {
			at = m.now()
		}
		m.clock.add(at, d.Reason)
	}
	m.ringMu.Unlock()
}

func clamp(v, limit int64) int64 {
	return max(-limit, min(limit, v))
}

// cacheStats returns the last read of Sources.Cache, reading it again
// when it is older than CacheEvery (or from the future: the clock was
// set back). Concurrent callers wait for the read under way and share it.
// false: there is no Cache source.
func (m *Metrics) cacheStats() (cacheRead, bool) {
	if m.src.Cache == nil {
		return cacheRead{}, false
	}
	m.cacheMu.Lock()
	defer m.cacheMu.Unlock()
	now := m.now()
	if c := m.cached; c.ok && !now.Before(c.at) && now.Sub(c.at) < m.cacheEvery {
		return c, true
	}
	r := cacheRead{at: now, ok: true}
	if !m.safely("cache", func() { r.stats, r.err = m.src.Cache() }) {
		r.err = fmt.Errorf("metrics: cache statistics source panicked")
	}
	if r.err != nil {
		m.log.Debug("metrics: cache statistics unavailable: left out of the metrics", "err", r.err)
	}
	m.cached = r
	return r, true
}

// ready calls Sources.Ready: ready when it is nil. A Ready that panics
// judges the gate unresponsive: nobody can say it grants.
func (m *Metrics) ready() health.Readiness {
	if m.src.Ready == nil {
		return health.Readiness{}
	}
	var r health.Readiness
	if !m.safely("ready", func() { r = m.src.Ready() }) {
		r = health.Readiness{Problems: []health.Problem{{Cause: health.Unresponsive, What: "the health source panicked"}}}
	}
	return r
}

// safely runs f, a call of a Source, and reports false if it panicked:
// a broken source must not take the gate's process down with a scrape
// (the registry collects on goroutines of its own).
func (m *Metrics) safely(source string, f func()) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			m.log.Warn("metrics: status source panicked: left out", "source", source, "panic", p)
			ok = false
		}
	}()
	f()
	return true
}

// Handler serves GET /healthz, /status and /metrics.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	// Method patterns: the mux answers 405 with an Allow header for other
	// methods, 404 for other paths. GET patterns also match HEAD.
	mux.HandleFunc("GET /healthz", m.serveHealth)
	mux.HandleFunc("GET /status", m.serveStatus)
	mux.Handle("GET /metrics", promhttpHandler(m.reg))
	return mux
}
