package agent

import (
	"context"
	"os"
	"sync"
	"time"

	"gateagent/cache"
	"gateagent/wear"
)

// wearWatch keeps what the gate reports of its flash's wear (package
// wear): the meter of the agent's own writes, and, measured every
// wear.DefaultEvery off the scan path, the cache's files against their live
// certificates (a walk of every record's expiry); the purge loop tells it
// of each purge.
type wearWatch struct {
	meter  *wear.Meter
	device wear.Device
	store  *cache.Store
	now    func() time.Time // the gate's corrected clock, as the purge's

	mu       sync.Mutex
	files    *wear.Files
	filesErr error
	maint    *wear.Maintenance
}

// measureFiles reads the files' sizes and counts the live certificates.
func (w *wearWatch) measureFiles() {
	now := w.now()
	f := wear.Files{At: now}
	var err error
	var fi os.FileInfo
	if fi, err = os.Stat(w.store.Cache.Path()); err == nil {
		f.CacheBytes = fi.Size()
		f.DeltaBytes = cache.DeltaSize(cache.DeltaPath(w.store.Cache.Path()))
		f.JournalBytes = w.store.Journal.Usage().Bytes
		f.LiveCerts, err = w.store.Cache.Live(now)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.filesErr = err
		return
	}
	w.files, w.filesErr = &f, nil
}

// purged records a maintenance of the certificate files.
func (w *wearWatch) purged(at time.Time, certs int, err error) {
	rs := w.store.Cache.RunState()
	m := &wear.Maintenance{Kind: wear.MaintenanceRuns, At: at, Certs: certs,
		Runs: rs.Runs, LastRun: rs.LastRun, LastCompact: rs.LastCompact, DeltaCerts: rs.DeltaCerts}
	if err != nil {
		m.Err = err.Error()
	}
	w.mu.Lock()
	w.maint = m
	w.mu.Unlock()
}

// run samples the meter and measures the files every d until ctx ends; a
// failed sample is left for the meter's Rate to report.
func (w *wearWatch) run(ctx context.Context, d time.Duration) {
	w.measureFiles()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = w.meter.Sample()
			w.measureFiles()
		}
	}
}

// Fresh measures the files again, then reports: for diag, which a
// technician runs now and then (the walk costs about what the cache
// check's statistics do).
func (w *wearWatch) Fresh() wear.Report {
	w.measureFiles()
	return w.Report()
}

// Report is the wear report now, the files as last measured (for
// /status and the metrics, which are read often).
func (w *wearWatch) Report() wear.Report {
	rate, err := w.meter.Rate()
	var r wear.Report
	if err != nil {
		r = wear.NewReport(w.device, nil, err)
	} else {
		r = wear.NewReport(w.device, &rate, nil)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.files != nil {
		f := *w.files
		r.Files = &f
	}
	r.FilesErr = w.filesErr
	if w.maint != nil {
		m := *w.maint
		r.Maintenance = &m
	}
	return r
}
