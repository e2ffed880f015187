package metrics

import (
	"math"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"gateagent/wear"
)

// The flash wear metrics (package wear), read from Sources.Wear.
var (
	descWrittenBytes  = newDesc("storage_written_bytes_total", "Bytes the agent wrote since it started, by /proc/self/io counter: wchar (handed to write(2), sockets and the log included: the one judged) and write_bytes (page cache dirtied for the block layer; whole folios on recent kernels).", "counter")
	descWriteCalls    = newDesc("storage_write_syscalls_total", "Write system calls the agent made since it started (/proc/self/io syscw).")
	descProjectedDay  = newDesc("storage_projected_bytes_per_day", "Bytes a day the agent's writes project, by counter: over the last 24 h once it has run a day, else since it started; absent for its first 10 minutes.", "counter")
	descLifetimeYears = newDesc("storage_projected_lifetime_years", "Years the device lasts at the projected wchar bytes a day: device_bytes × rated_cycles / (bytes a day × device_amplification × 365) ([storage] in the config); absent for the agent's first 10 minutes.")
	descServiceYears  = newDesc("storage_service_years", "The board's planned service life in years ([storage] service_years): diag warns when the projected lifetime falls under it.")
	descFileBytes     = newDesc("storage_file_bytes", "Size of the gate's files in bytes, by file: cache (the certificates' runs), delta (the certificates since the last run) and journal (events, passages); measured every 15 minutes.", "file")
	descLiveRawBytes  = newDesc("storage_live_raw_bytes", "Live raw records: certificates not yet expired × 65 bytes, what the cache file is judged against; measured every 15 minutes.")
	descLastMaint     = newDesc("storage_last_maintenance_timestamp_seconds", "When the certificate files' last maintenance ran (Unix time), by kind: runs (the hourly maintenance: the delta written as a run every 3 hours, expired runs deleted whole), compact (the file last compacted, since the agent started); absent before the first.", "kind")
)

var wearDescs = []*prometheus.Desc{descWrittenBytes, descWriteCalls, descProjectedDay, descLifetimeYears, descServiceYears, descFileBytes, descLiveRawBytes, descLastMaint}

// wearCollector turns Sources.Wear into metrics at scrape time.
type wearCollector struct{ m *Metrics }

func (c wearCollector) Describe(ch chan<- *prometheus.Desc) {
	describe(ch, wearDescs)
}

func (c wearCollector) Collect(ch chan<- prometheus.Metric) {
	e := emitter(ch)
	m := c.m
	if m.src.Wear == nil {
		return
	}
	var r wear.Report
	if !m.safely("wear", func() { r = m.src.Wear() }) {
		return
	}
	e.gauge(descServiceYears, r.Device.ServiceYears)
	if r.Rate != nil {
		e.counter(descWrittenBytes, float64(r.Rate.Total.WChar), "wchar")
		e.counter(descWrittenBytes, float64(r.Rate.Total.WriteBytes), "write_bytes")
		e.counter(descWriteCalls, float64(r.Rate.Total.SyscW))
		if r.Known {
			e.gauge(descProjectedDay, r.PerDay, "wchar")
			e.gauge(descProjectedDay, r.WriteBytesPerDay, "write_bytes")
			e.gauge(descLifetimeYears, r.LifetimeYears) // +Inf when nothing is written
		}
	}
	if f := r.Files; f != nil {
		e.gauge(descFileBytes, float64(f.CacheBytes), "cache")
		e.gauge(descFileBytes, float64(f.DeltaBytes), "delta")
		e.gauge(descFileBytes, float64(f.JournalBytes), "journal")
		e.gauge(descLiveRawBytes, float64(f.LiveRawBytes()))
	}
	if mt := r.Maintenance; mt != nil && !mt.At.IsZero() {
		e.gauge(descLastMaint, float64(mt.At.UnixNano())/1e9, mt.Kind)
		if !mt.LastCompact.IsZero() {
			e.gauge(descLastMaint, float64(mt.LastCompact.UnixNano())/1e9, "compact")
		}
	}
}

// StorageStatus is /status's storage part: the agent's writes and the
// device lifetime they project (package wear), the files against their
// live records, the last maintenance. Bytes are numbers (counts, not
// positions); a figure not known yet is absent.
type StorageStatus struct {
	Counter             string  `json:"counter"` // the one judged: "wchar"
	DeviceBytes         int64   `json:"device_bytes"`
	RatedCycles         int64   `json:"rated_cycles"`
	DeviceAmplification float64 `json:"device_amplification"`
	ServiceYears        float64 `json:"service_years"`
	BudgetBytesPerDay   float64 `json:"budget_bytes_per_day"`

	MeasuredSeconds  float64        `json:"measured_seconds,omitempty"`
	Written          *wear.Counters `json:"written_since_start,omitempty"`
	Last24h          *wear.Counters `json:"written_last_24h,omitempty"`
	BytesPerDay      *float64       `json:"bytes_per_day,omitempty"`
	WriteBytesPerDay *float64       `json:"write_bytes_per_day,omitempty"`
	ProjectedFrom    string         `json:"projected_from,omitempty"` // "last_24h" or "since_start"
	LifetimeYears    *float64       `json:"lifetime_years,omitempty"`
	Short            bool           `json:"lifetime_short"`
	RateError        string         `json:"rate_error,omitempty"`

	FilesAt          time.Time `json:"files_measured_at,omitzero"`
	CacheFileBytes   int64     `json:"cache_file_bytes,omitempty"`
	DeltaFileBytes   int64     `json:"delta_file_bytes,omitempty"`
	JournalFileBytes int64     `json:"journal_file_bytes,omitempty"`
	LiveCertificates int       `json:"live_certificates,omitempty"`
	LiveRawBytes     int64     `json:"live_raw_bytes,omitempty"`
	FileVsLive       *float64  `json:"cache_file_vs_live,omitempty"`
	FilesError       string    `json:"files_error,omitempty"`

	Maintenance *wear.Maintenance `json:"last_maintenance,omitempty"`
	// Compaction says how the certificate files are kept: runs written
	// once and deleted whole, the file compacted when much of it is free.
	Compaction string `json:"compaction"`
}

func storageStatusOf(r wear.Report) *StorageStatus {
	d := r.Device
	s := &StorageStatus{Counter: "wchar", DeviceBytes: d.Bytes, RatedCycles: d.RatedCycles, DeviceAmplification: d.Amplification,
		ServiceYears: d.ServiceYears, BudgetBytesPerDay: math.Round(d.BudgetPerDay()), Compaction: "runs: written once, deleted whole; the file compacted when much of it is free"}
	if rt := r.Rate; rt != nil {
		s.MeasuredSeconds = rt.Elapsed.Seconds()
		w := rt.Written
		s.Written, s.Last24h = &w, rt.Last24h
		if r.Known {
			s.BytesPerDay, s.WriteBytesPerDay = wear.Finite(math.Round(r.PerDay)), wear.Finite(math.Round(r.WriteBytesPerDay))
			s.ProjectedFrom, s.LifetimeYears, s.Short = r.From, wear.Finite(r.LifetimeYears), r.Short()
		}
	}
	if r.RateErr != nil {
		s.RateError = redact(r.RateErr.Error())
	}
	if f := r.Files; f != nil {
		s.FilesAt, s.CacheFileBytes, s.DeltaFileBytes, s.JournalFileBytes = f.At, f.CacheBytes, f.DeltaBytes, f.JournalBytes
		s.LiveCertificates, s.LiveRawBytes = f.LiveCerts, f.LiveRawBytes()
		if f.LiveCerts > 0 {
			v := f.Ratio()
			s.FileVsLive = &v
		}
	}
	if r.FilesErr != nil {
		s.FilesError = redact(r.FilesErr.Error())
	}
	s.Maintenance = r.Maintenance
	if s.Maintenance != nil {
		mt := *s.Maintenance
		mt.Err = redact(mt.Err)
		s.Maintenance = &mt
	}
	return s
}
