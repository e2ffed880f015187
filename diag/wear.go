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
		c.Line = fmt.Sprintf("flash wears out early: %s; %s; %s: each key feed batch rewrites a page per certificate and the hourly purge half the file, so check feed.interval and the feed's batch size, "+
			"and that [storage] describes this board's device (lsblk -b, its datasheet); the write path's fix is tracked in docs/flash.md (issue 16)", rate, files, maint)
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
	facts["live_certificates"], facts["live_raw_bytes"] = f.LiveCerts, f.LiveRawBytes()
	if f.LiveCerts == 0 {
		return fmt.Sprintf("cache file %s with no live certificate, journal %s", wear.Bytes(float64(f.CacheBytes)), wear.Bytes(float64(f.JournalBytes)))
	}
	facts["cache_file_vs_live"] = f.Ratio()
	ratio := fmt.Sprintf("%.2f×", f.Ratio())
	if f.Ratio() >= 10 {
		ratio = fmt.Sprintf("%.0f×", f.Ratio())
	}
	small := ""
	if f.CacheBytes < 1<<20 {
		small = " (a cache this small is mostly its fixed pages)"
	}
	return fmt.Sprintf("cache file %s = %s its live records (%s × %d B = %s)%s, journal %s", wear.Bytes(float64(f.CacheBytes)), ratio,
		plural.N(f.LiveCerts, "certificate", "certificates"), wear.RawRecordBytes, wear.Bytes(float64(f.LiveRawBytes())), small, wear.Bytes(float64(f.JournalBytes)))
}

// maintText says when the certificate file was last maintained.
func maintText(facts map[string]any, m *wear.Maintenance, now time.Time) string {
	const how = "no compaction: the purge deletes expired certificates in place"
	if m == nil {
		return "no purge yet (the first runs a minute after start; " + how + ")"
	}
	facts["last_maintenance"] = m
	s := fmt.Sprintf("last purge %s, %d certificates deleted (%s)", ago(now, m.At), m.Certs, how)
	if m.Err != "" {
		s = fmt.Sprintf("last purge %s failed: %s (%s)", ago(now, m.At), m.Err, how)
	}
	return s
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
