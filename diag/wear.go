package diag

import (
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"gateagent/cache"
	"gateagent/internal/plural"
	"gateagent/wear"
)

// NameWear is the flash wear check.
const NameWear = "wear"

// wearFacts is what the wear check looks at: the running agent's report
// (daemon), or the files alone, read by diag (standalone).
type wearFacts struct {
	r      wear.Report
	daemon bool
	now    time.Time
	// closed: standalone, the cache was not opened (the cache check says
	// why).
	closed bool
}

// judgeWear judges the bytes the agent writes a day against the device's
// endurance. It warns when the projected lifetime falls under the planned
// service life, and never fails: the gate works, and wears out.
func judgeWear(f wearFacts) Check {
	r := f.r
	d := r.Device
	c := Check{Name: NameWear, Facts: map[string]any{"counter": "wchar", "device_bytes": d.Bytes, "rated_cycles": d.RatedCycles,
		"device_amplification": d.Amplification, "service_years": d.ServiceYears, "budget_bytes_per_day": math.Round(d.BudgetPerDay()),
		"compaction": "none: purge in place"}}
	files := filesText(c.Facts, r, f.closed)
	if !f.daemon {
		c.Status = Pass
		if f.closed && r.Files == nil {
			c.Status = Skip
		}
		c.Line = files + "; the write rate needs the running agent (it measures its own writes while it runs): start it, and run gateagent diag again after 10 minutes"
		return c
	}
	maint := maintText(c.Facts, r.Maintenance, f.now)
	if r.RateErr != nil || r.Rate == nil {
		c.Status = Skip
		why := "not measured"
		if r.RateErr != nil {
			why = oneLine(r.RateErr)
		}
		c.Line = fmt.Sprintf("the write rate is not known: the kernel shows no write counters for the agent (%s): a kernel built with CONFIG_TASK_IO_ACCOUNTING shows them; %s; %s", why, files, maint)
		return c
	}
	rt := r.Rate
	c.Facts["measured_seconds"] = rt.Elapsed.Seconds()
	c.Facts["written_since_start"] = rt.Written
	if !r.Known {
		c.Status = Pass
		c.Line = fmt.Sprintf("measuring: %s written (wchar) in %s since the agent started; the rate is projected after %s; %s; %s",
			wear.Bytes(float64(rt.Written.WChar)), rt.Elapsed.Round(time.Second), wear.MinElapsed, files, maint)
		return c
	}
	c.Facts["bytes_per_day"], c.Facts["write_bytes_per_day"], c.Facts["projected_from"] = math.Round(r.PerDay), math.Round(r.WriteBytesPerDay), r.From
	if v := wear.Finite(r.LifetimeYears); v != nil {
		c.Facts["lifetime_years"] = *v
	}
	over := "over the last 24 h"
	if r.From == wear.FromSinceStart {
		over = fmt.Sprintf("projected from the %s since the agent started", rt.Elapsed.Round(time.Minute))
	}
	life := "for ever"
	if !math.IsInf(r.LifetimeYears, 1) {
		life = fmt.Sprintf("%.1f years", r.LifetimeYears)
	}
	rate := fmt.Sprintf("the agent writes %s a day (wchar, %s; write_bytes %s): the %s device (%d cycles, amplification %g) lasts %s at this rate, planned %g (budget %s a day)",
		wear.Bytes(r.PerDay), over, wear.Bytes(r.WriteBytesPerDay), wear.Bytes(float64(d.Bytes)), d.RatedCycles, d.Amplification, life, d.ServiceYears, wear.Bytes(d.BudgetPerDay()))
	if r.Short() {
		c.Status = Warn
		c.Line = fmt.Sprintf("flash wears out early: %s; %s; %s: each grant and each passage writes a 4 KB block and each key feed batch one or two, so check feed.interval (every batch is a write, however small), "+
			"how many passengers this gate serves, that the issuer is not resyncing the gate again and again (the feed check), and that [storage] describes this board's device (lsblk -b, its datasheet); the write path is explained in docs/flash.md", rate, files, maint)
		return c
	}
	c.Status, c.Line = Pass, fmt.Sprintf("%s; %s; %s", rate, files, maint)
	return c
}

// filesText says what the cache's files hold against their live records.
func filesText(facts map[string]any, r wear.Report, closed bool) string {
	f := r.Files
	if f == nil {
		if closed {
			return "the files were not measured: the cache did not open (see the cache check)"
		}
		if r.FilesErr != nil {
			return "the files were not measured (" + oneLine(r.FilesErr) + ")"
		}
		return "the files are not measured yet"
	}
	facts["cache_file_bytes"], facts["journal_file_bytes"] = f.CacheBytes, f.JournalBytes
	facts["delta_bytes"] = f.DeltaBytes
	facts["live_certificates"], facts["live_raw_bytes"] = f.LiveCerts, f.LiveRawBytes()
	files := fmt.Sprintf("certificate files %s (cache %s, delta %s)", wear.Bytes(float64(f.CertBytes())), wear.Bytes(float64(f.CacheBytes)), wear.Bytes(float64(f.DeltaBytes)))
	if f.LiveCerts == 0 {
		return fmt.Sprintf("%s with no live certificate, journal %s", files, wear.Bytes(float64(f.JournalBytes)))
	}
	facts["cache_file_vs_live"] = f.Ratio()
	ratio := fmt.Sprintf("%.2f×", f.Ratio())
	if f.Ratio() >= 10 {
		ratio = fmt.Sprintf("%.0f×", f.Ratio())
	}
	small := ""
	if f.CertBytes() < 4<<20 {
		small = " (files this small are mostly their fixed pages and segments)"
	}
	return fmt.Sprintf("%s = %s its live records (%s × %d B = %s)%s, journal %s", files, ratio,
		plural.N(f.LiveCerts, "certificate", "certificates"), wear.RawRecordBytes, wear.Bytes(float64(f.LiveRawBytes())), small, wear.Bytes(float64(f.JournalBytes)))
}

// maintText says when the certificate files were last maintained.
func maintText(facts map[string]any, m *wear.Maintenance, now time.Time) string {
	if m == nil {
		return "no maintenance yet (the first runs a minute after start: the delta written as a run every 3 hours, expired runs deleted whole, the file compacted when much of it is free)"
	}
	facts["last_maintenance"] = m
	if m.Err != "" {
		return fmt.Sprintf("last maintenance %s failed: %s", ago(now, m.At), m.Err)
	}
	run := "no run written yet"
	if !m.LastRun.IsZero() {
		run = "the newest run written " + ago(now, m.LastRun)
	}
	compact := "not compacted since the agent started"
	if !m.LastCompact.IsZero() {
		compact = "compacted " + ago(now, m.LastCompact)
	}
	return fmt.Sprintf("last maintenance %s, %s deleted with their runs; %s, %s in the delta; %s",
		ago(now, m.At), plural.N(m.Certs, "certificate", "certificates"), run, plural.N(m.DeltaCerts, "certificate", "certificates"), compact)
}

// measureFiles reads the cache's files and counts the live certificates
// at now (diag on its own: the cache opened read only).
func measureFiles(c *cache.Cache, journal string, now time.Time) (*wear.Files, error) {
	f := &wear.Files{At: now}
	fi, err := os.Stat(c.Path())
	if err != nil {
		return nil, err
	}
	f.CacheBytes = fi.Size()
	f.DeltaBytes = cache.DeltaSize(cache.DeltaPath(c.Path()))
	switch n, err := cache.JournalSize(journal); {
	case err == nil:
		f.JournalBytes = n
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	if f.LiveCerts, err = c.Live(now); err != nil {
		return nil, err
	}
	return f, nil
}
