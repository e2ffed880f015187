package wear

import "math"

// Report is what the gate says of its wear: the rate and what it
// projects, the cache's files against their live records, and the last
// maintenance. /status, the metrics and diag read it. Any part may be
// missing: Rate without a running agent (or without the kernel's
// counters: RateErr), Files when they could not be read (FilesErr).
type Report struct {
	Device Device

	Rate    *Rate
	RateErr error
	// PerDay is the projected bytes a day (WChar, the figure judged) and
	// WriteBytesPerDay WriteBytes's beside it; Known is false before
	// MinElapsed. From says over what: "last_24h" or "since_start".
	PerDay, WriteBytesPerDay float64
	Known                    bool
	From                     string
	// LifetimeYears is the device's lifetime at PerDay (+Inf when
	// nothing is written); meaningful when Known.
	LifetimeYears float64

	Files    *Files
	FilesErr error

	Maintenance *Maintenance
}

// Projected from.
const (
	FromLast24h    = "last_24h"
	FromSinceStart = "since_start"
)

// NewReport projects rate (nil: not measured, err saying why) on dev.
func NewReport(dev Device, rate *Rate, err error) Report {
	r := Report{Device: dev, Rate: rate, RateErr: err}
	if rate == nil {
		return r
	}
	r.PerDay, r.Known = rate.PerDay()
	r.WriteBytesPerDay, _ = rate.Projected(WriteBytes)
	r.From = FromSinceStart
	if rate.Last24h != nil {
		r.From = FromLast24h
	}
	r.LifetimeYears = dev.LifetimeYears(r.PerDay)
	return r
}

// Short reports whether the projected lifetime falls under the planned
// service life.
func (r Report) Short() bool {
	return r.Known && r.LifetimeYears < r.Device.ServiceYears
}

// Finite is v, or nil when it is not a finite number (JSON has none).
func Finite(v float64) *float64 {
	if math.IsInf(v, 0) || math.IsNaN(v) {
		return nil
	}
	return &v
}
