package churn_test

import (
	"os"
	"testing"

	"gateagent/internal/churn"
)

// BenchmarkChurnDay runs one simulated steady-state day of issue 16's
// churn per iteration (run it with -benchtime 1x; each further iteration
// is the next day on the same files) on the target GATEAGENT_CHURN_TARGET
// names (default today), after a full sync of the certificates a gate
// holds at steady state. It reports write-MB/day (the bytes judged: the
// device's when GATEAGENT_CHURN_DEV names the block device the benchmark's
// directory GATEAGENT_CHURN_DIR lives on alone, else wchar), wchar-MB/day,
// write_bytes-MB/day (/proc/self/io, folio-granular on recent kernels, for
// information), x-floor (against 20,000 × 4 KB + 1,000,000 × 65 B),
// fsync/day and file-x-live (the certificate files, the journal left out,
// against 1,000,000 × 65 B). A day
// takes minutes: it is in make bench, not in the tests.
func BenchmarkChurnDay(b *testing.B) {
	name := os.Getenv("GATEAGENT_CHURN_TARGET")
	if name == "" {
		name = "today"
	}
	open, ok := churn.Targets[name]
	if !ok {
		b.Fatalf("GATEAGENT_CHURN_TARGET=%q: no such target", name)
	}
	dir := os.Getenv("GATEAGENT_CHURN_DIR")
	if dir == "" {
		dir = b.TempDir()
	} else {
		d, err := os.MkdirTemp(dir, "churn-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	t, err := open(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { t.Close() })
	r := churn.NewRun(churn.Default(), t)
	r.Dev = os.Getenv("GATEAGENT_CHURN_DEV")
	if err := r.Load(); err != nil {
		b.Fatal(err)
	}
	var written, wchar, wb, syncs, fileX float64
	b.ResetTimer()
	for range b.N {
		d, err := r.Day()
		if err != nil {
			b.Fatal(err)
		}
		b.Log(d)
		written += d.WriteMB()
		wchar += float64(d.Wchar) / 1e6
		wb += float64(d.WriteBytes) / 1e6
		syncs += float64(d.Syncs)
		fileX = d.FileXLive()
	}
	n := float64(b.N)
	b.ReportMetric(written/n, "write-MB/day")
	b.ReportMetric(wchar/n, "wchar-MB/day")
	b.ReportMetric(wb/n, "write_bytes-MB/day")
	b.ReportMetric(written/n*1e6/churn.Default().FloorBytes(), "x-floor")
	b.ReportMetric(syncs/n, "fsync/day")
	b.ReportMetric(fileX, "file-x-live")
}
