// Package wear tells the operator what the agent costs its board's flash:
// the bytes it writes a day, the device lifetime that rate projects, and
// the cache's files against the certificates they hold (issue 16).
//
// # Which counter
//
// The rate is measured from the kernel's count of the process's writes
// (/proc/self/io, Counters). The projection uses WChar, the bytes the agent
// hands to write(2): every write of today's storage is a whole 4 KB bbolt
// page, and for those WChar agreed with the bytes that reached a block
// device of the run's own within 0.2% (docs/flash.md, "Counting bytes").
// WChar also counts the agent's socket writes (uploads, answers on the
// control socket and to a metrics scraper, station peers) and its log on
// stderr, so it overstates the device's bytes by those, which err on the
// side of an early warning; and it undercounts a write smaller than a block
// (none in today's storage). WriteBytes, what the process dirtied for the
// block layer, would be the device's own figure, but kernels that keep a
// file's page cache in large folios (ext4 on 6.x) count a whole folio, up
// to 1 MB, for a 4 KB write: judged on it, a gate could warn hundreds of
// times too early. Both are reported; WChar is judged.
//
// # The projection
//
// The rate is the bytes written over real elapsed time, on a clock read
// through the monotonic clock when it is time.Now (a board whose clock is
// set by NTP after boot does not jump the figure): projected to a day from
// the samples since start, and, once the agent has run a day, the last 24
// hours, which then decide. A projection from less than MinElapsed is not
// made: the first minutes (the files checked at open, a full sync) are not
// a day's writing.
//
// The lifetime in years at that rate is
//
//	device bytes × rated cycles / (bytes a day × device amplification × 365)
//
// where the device amplification is the eMMC controller's own (its
// internal write amplification), configured with the device's size and
// rated program/erase cycles (config [storage]).
package wear

import (
	"fmt"
	"math"
	"time"
)

// RawRecordBytes is the raw bytes of one certificate as the feed defines
// it: ID 16, flags 1, not_before 8, not_after 8, key 32. The cache's files
// are judged against live certificates × RawRecordBytes ("live raw
// records", docs/flash.md).
const RawRecordBytes = 65

// Day is the period the rate is projected to.
const Day = 24 * time.Hour

// Year is 365 days, as the lifetime formula counts them.
const Year = 365 * Day

// Device is the board's storage as the config describes it.
type Device struct {
	// Bytes is the device's size (an 8 GB eMMC: 8,000,000,000).
	Bytes int64 `json:"bytes"`
	// RatedCycles is the program/erase cycles each block is rated for.
	RatedCycles int64 `json:"rated_cycles"`
	// Amplification is the device's internal write amplification: bytes
	// programmed to flash per byte written to the device.
	Amplification float64 `json:"amplification"`
	// ServiceYears is the board's planned service life.
	ServiceYears float64 `json:"service_years"`
}

// Defaults of Device (config [storage]): an 8 GB industrial eMMC rated
// for 3,000 cycles, a realistic internal amplification of 4, and a board
// planned to serve 10 years.
const (
	DefaultDeviceBytes   = 8_000_000_000
	DefaultRatedCycles   = 3000
	DefaultAmplification = 4
	DefaultServiceYears  = 10
)

// DefaultDevice is the device the defaults describe.
func DefaultDevice() Device {
	return Device{Bytes: DefaultDeviceBytes, RatedCycles: DefaultRatedCycles, Amplification: DefaultAmplification, ServiceYears: DefaultServiceYears}
}

// Endurance is the bytes the device takes before its rated wear:
// Bytes × RatedCycles.
func (d Device) Endurance() float64 { return float64(d.Bytes) * float64(d.RatedCycles) }

// LifetimeYears is how long the device lasts at bytesPerDay written to
// it: Endurance / (bytesPerDay × Amplification × 365). +Inf when nothing
// is written.
func (d Device) LifetimeYears(bytesPerDay float64) float64 {
	if bytesPerDay <= 0 {
		return math.Inf(1)
	}
	return d.Endurance() / (bytesPerDay * d.Amplification * 365)
}

// BudgetPerDay is the most the agent may write a day for the device to
// last ServiceYears.
func (d Device) BudgetPerDay() float64 {
	return d.Endurance() / (d.Amplification * 365 * d.ServiceYears)
}

// Files are the cache's files against what they hold.
type Files struct {
	At time.Time `json:"at"`
	// CacheBytes is the certificate file (its runs), DeltaBytes the
	// delta's log beside it: the certificate files are both.
	CacheBytes   int64 `json:"cache_bytes"`
	DeltaBytes   int64 `json:"delta_bytes"`
	JournalBytes int64 `json:"journal_bytes"`
	// LiveCerts are the certificates not yet expired at At.
	LiveCerts int `json:"live_certificates"`
}

// LiveRawBytes is LiveCerts × RawRecordBytes.
func (f Files) LiveRawBytes() int64 { return int64(f.LiveCerts) * RawRecordBytes }

// CertBytes is the certificate files' size: the file and the delta.
func (f Files) CertBytes() int64 { return f.CacheBytes + f.DeltaBytes }

// Ratio is the certificate files' size over the live raw records; 0 when
// none is live.
func (f Files) Ratio() float64 {
	if f.LiveCerts == 0 {
		return 0
	}
	return float64(f.CertBytes()) / float64(f.LiveRawBytes())
}

// Maintenance is the last maintenance of the certificate files (Kind
// "runs", the hourly one of package cache): every window the delta is
// written as a run, runs whose certificates all expired are deleted whole
// (Certs counts them), and the file is compacted when much of it is free.
type Maintenance struct {
	Kind  string    `json:"kind"`
	At    time.Time `json:"at"`
	Certs int       `json:"certs"` // certificates deleted
	Err   string    `json:"error,omitempty"`
	// Runs is how many runs the file holds; LastRun when the newest was
	// written, LastCompact when the file was last compacted (zero:
	// never, since the agent started).
	Runs        int       `json:"runs"`
	LastRun     time.Time `json:"last_run,omitzero"`
	LastCompact time.Time `json:"last_compact,omitzero"`
	// DeltaCerts is how many certificates the delta holds, not yet in a
	// run.
	DeltaCerts int `json:"delta_certificates"`
}

// MaintenanceRuns is Maintenance.Kind of the certificates' maintenance.
const MaintenanceRuns = "runs"

// Bytes formats n bytes for a person: "12.5 GB", "640 MB", "12 KB"
// (decimal units, as devices are sold).
func Bytes(n float64) string {
	switch {
	case n >= 1e12:
		return fmt.Sprintf("%.1f TB", n/1e12)
	case n >= 1e9:
		return fmt.Sprintf("%.1f GB", n/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0f KB", n/1e3)
	}
	return fmt.Sprintf("%.0f B", n)
}
