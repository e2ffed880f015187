package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"gateagent/gate"
	"gateagent/health"
	"gateagent/keysync"
	"gateagent/scanner"
)

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, labels, nil)
}

// The metrics read from Sources at scrape time.
var (
	descUp        = newDesc("up", "1 when the gate controller's loop answers, 0 when it does not (the watchdog restarts the agent).")
	descReady     = newDesc("ready", "1 when the gate can grant a valid code (what /healthz reports), 0 when every code is refused: gateagent_not_ready says why.")
	descNotReady  = newDesc("not_ready", "1 for each cause that keeps the gate from granting now: unresponsive, not_recording, cache_not_writable, board_fault, never_synced, stale, clock_untrusted, scanner_absent, clock_disputed.", "cause")
	descBuildInfo = newDesc("build_info", "Always 1: the agent's version and the gate it runs.", "version", "gate", "direction")
	descEmergency = newDesc("gate_emergency", "1 while the emergency input holds the gate open.")

	descFeedStale     = newDesc("feed_stale", "1 when the key cache has not caught up with the issuer within the feed's maximum age (or never did): revocations may be missed.")
	descFeedFreshTime = newDesc("feed_last_fresh_timestamp_seconds", "When the key cache was last known caught up with the issuer (Unix time); absent when never.")
	descFeedAge       = newDesc("feed_age_seconds", "Seconds since the key cache was last known caught up with the issuer; absent when never.")
	descFeedHead      = newDesc("feed_head", "The issuer's feed head cursor as last seen.")
	descFeedLag       = newDesc("feed_lag_records", "Feed records the key cache is behind the issuer's head (head − cache cursor).")
	descFeedFailures  = newDesc("feed_failures", "Consecutive failed exchanges with the issuer; 0 after a success.")
	descClockOffset   = newDesc("clock_offset_seconds", "The issuer's clock minus the gate's, as learnt from the feed; absent until learnt.")

	descCacheCerts     = newDesc("cache_certificates", "Certificates in the key cache.")
	descCacheFileBytes = newDesc("cache_file_bytes", "Size of the key cache file in bytes.")
	descEventsBacklog  = newDesc("events_backlog", "Events in the gate's log not yet acknowledged by the issuer.")
	descEventsOldest   = newDesc("events_oldest_age_seconds", "Age of the oldest event not yet acknowledged by the issuer; absent when none.")

	descScannerConnected  = newDesc("scanner_connected", "1 when the serial scanner's port is open.")
	descScannerReconnects = newDesc("scanner_reconnects_total", "Successful reopens of the serial scanner's port after a loss.")
	descScannerLines      = newDesc("scanner_lines_total", "Frames delivered by the serial scanner: codes and rejected lines.")
	descScannerCodes      = newDesc("scanner_codes_total", "Lines from the serial scanner that read as TR1 codes.")
	descScannerRejected   = newDesc("scanner_rejected_total", "Lines from the serial scanner that do not read as a TR1 code (refused as MALFORMED).")
	descScannerOverlong   = newDesc("scanner_overlong_total", "Over-long lines from the serial scanner, dropped.")
	descScannerSuppressed = newDesc("scanner_suppressed_total", "Repeated frames from the serial scanner suppressed within the repeat window.")
)

var sourceDescs = []*prometheus.Desc{
	descUp, descReady, descNotReady, descBuildInfo, descEmergency,
	descFeedStale, descFeedFreshTime, descFeedAge, descFeedHead, descFeedLag, descFeedFailures, descClockOffset,
	descCacheCerts, descCacheFileBytes, descEventsBacklog, descEventsOldest,
	descScannerConnected, descScannerReconnects, descScannerLines, descScannerCodes, descScannerRejected, descScannerOverlong, descScannerSuppressed,
}

// describe sends a collector's descriptions.
func describe(ch chan<- *prometheus.Desc, descs []*prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// emitter sends a collector's samples at scrape time.
type emitter chan<- prometheus.Metric

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func (e emitter) counter(d *prometheus.Desc, v float64, labels ...string) {
	e <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// sourceCollector turns Sources into metrics at scrape time. A source
// that is nil, errs or panics is left out of that scrape; the scrape
// itself never fails.
type sourceCollector struct{ m *Metrics }

func (c sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, sourceDescs)
}

func (c sourceCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter(ch)
	m := c.m
	now := m.now()

	e.gauge(descBuildInfo, 1, m.info.Version, m.info.GateID, m.info.Direction)
	rd := m.ready()
	e.gauge(descUp, bool01(!rd.Has(health.Unresponsive)))
	e.gauge(descReady, bool01(rd.OK()))
	for _, c := range health.Causes() {
		e.gauge(descNotReady, bool01(rd.Has(c)), c.String())
	}

	if m.src.Gate != nil {
		var st gate.Status
		if m.safely("gate", func() { st = m.src.Gate() }) {
			e.gauge(descEmergency, bool01(st.Emergency))
		}
	}

	var feed keysync.Status
	feedOK := m.src.Feed != nil && m.safely("feed", func() { feed = m.src.Feed() })
	if feedOK {
		e.gauge(descFeedStale, bool01(feed.Stale))
		if !feed.FreshAt.IsZero() {
			e.gauge(descFeedFreshTime, float64(feed.FreshAt.UnixNano())/1e9)
			e.gauge(descFeedAge, now.Sub(feed.FreshAt).Seconds())
		}
		e.gauge(descFeedHead, float64(feed.Head))
		e.gauge(descFeedFailures, float64(feed.Failures))
		if feed.OffsetOK {
			e.gauge(descClockOffset, feed.Offset.Seconds())
		}
	}

	if cr, ok := m.cacheStats(); ok && cr.err == nil {
		s := cr.stats
		e.gauge(descCacheCerts, float64(s.Certs))
		e.gauge(descCacheFileBytes, float64(s.FileSize))
		e.gauge(descEventsBacklog, float64(s.Events))
		if s.Events > 0 && !s.OldestAt.IsZero() {
			e.gauge(descEventsOldest, now.Sub(s.OldestAt).Seconds())
		}
		// The head is known once learnt from the issuer (or from the
		// cache at start); a cache ahead of it (a newer read than the
		// feed's status) shows no lag rather than a negative one.
		if feedOK && feed.Head > 0 && feed.Head >= s.Feed.Cursor {
			e.gauge(descFeedLag, float64(feed.Head-s.Feed.Cursor))
		}
	}

	if m.src.Scanner != nil {
		var st scanner.Stats
		var present bool
		if m.safely("scanner", func() { st, present = m.src.Scanner() }) && present {
			e.gauge(descScannerConnected, bool01(st.Connected))
			e.counter(descScannerReconnects, float64(st.Reconnects))
			e.counter(descScannerLines, float64(st.Lines))
			e.counter(descScannerCodes, float64(st.Codes))
			e.counter(descScannerRejected, float64(st.Rejected))
			e.counter(descScannerOverlong, float64(st.Overlong))
			e.counter(descScannerSuppressed, float64(st.Suppressed))
		}
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
