package wear_test

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"gateagent/wear"
)

const kernelIO = `rchar: 6976
wchar: 12471900000
syscr: 10
syscw: 115034
read_bytes: 4096
write_bytes: 1048576
cancelled_write_bytes: 0
`

func TestParseProcIO(t *testing.T) {
	c, err := wear.ParseProcIO([]byte(kernelIO))
	if err != nil {
		t.Fatal(err)
	}
	if c != (wear.Counters{WChar: 12471900000, WriteBytes: 1048576, SyscW: 115034}) {
		t.Fatalf("read %+v", c)
	}
	bad := []struct{ name, text string }{
		{"empty", ""},
		{"no wchar", "syscw: 1\nwrite_bytes: 2\n"},
		{"no write_bytes", "wchar: 1\nsyscw: 1\n"},
		{"garbled line", "wchar: 1\nsyscw 1\nwrite_bytes: 2\n"},
		{"negative", "wchar: -1\nsyscw: 1\nwrite_bytes: 2\n"},
		{"not a number", "wchar: lots\nsyscw: 1\nwrite_bytes: 2\n"},
		{"overflow", "wchar: 18446744073709551616\nsyscw: 1\nwrite_bytes: 2\n"},
		{"twice", "wchar: 1\nwchar: 2\nsyscw: 1\nwrite_bytes: 2\n"},
		{"huge", kernelIO + string(make([]byte, 5000))},
	}
	for _, b := range bad {
		_, err := wear.ParseProcIO([]byte(b.text))
		var pe *wear.ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%s: %v, want a *ParseError", b.name, err)
		}
	}
}

func TestReadProcIO(t *testing.T) {
	c, err := wear.ReadSelf()
	if err != nil {
		t.Fatalf("this kernel's /proc/self/io: %v", err)
	}
	// Write and sync a file: wchar counts the bytes handed to write(2).
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	after, err := wear.ReadSelf()
	if err != nil {
		t.Fatal(err)
	}
	if d := after.Sub(c); d.WChar < 1<<20 || d.SyscW < 1 {
		t.Errorf("1 MiB written, counted %+v", d)
	}
	_, err = wear.ReadProcIO(filepath.Join(t.TempDir(), "none"))
	if !errors.Is(err, wear.ErrNoCounters) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a missing file: %v", err)
	}
}

func FuzzParseProcIO(f *testing.F) {
	f.Add([]byte(kernelIO))
	f.Add([]byte("wchar: 1\nwrite_bytes: 2\nsyscw: 3"))
	f.Add([]byte("wchar:\n"))
	f.Add([]byte(":::\n\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := wear.ParseProcIO(b)
		var pe *wear.ParseError
		if err != nil && !errors.As(err, &pe) {
			t.Fatalf("error %v is not a *ParseError", err)
		}
		if err != nil && c != (wear.Counters{}) {
			t.Fatalf("error %v with counters %+v", err, c)
		}
	})
}

func TestLifetime(t *testing.T) {
	d := wear.DefaultDevice()
	// The figures: 24 TB of endurance, 12.5 GB a day today.
	if e := d.Endurance(); e != 24e12 {
		t.Errorf("endurance %g", e)
	}
	y := d.LifetimeYears(12.5e9)
	if want := 24e12 / (12.5e9 * 4 * 365); math.Abs(y-want) > 1e-9 || y < 1.31 || y > 1.32 {
		t.Errorf("12.5 GB a day: %.4f years", y)
	}
	// The budget for 10 years is 1.64 GB a day, and at it the lifetime
	// is the service life.
	b := d.BudgetPerDay()
	if math.Abs(b-24e12/(4*365*10)) > 1 || math.Abs(d.LifetimeYears(b)-10) > 1e-9 {
		t.Errorf("budget %g, lifetime at it %g", b, d.LifetimeYears(b))
	}
	if !math.IsInf(d.LifetimeYears(0), 1) {
		t.Error("nothing written: not for ever")
	}
	f := wear.Files{CacheBytes: 342_100_000, LiveCerts: 1_000_000}
	if f.LiveRawBytes() != 65_000_000 || math.Abs(f.Ratio()-5.263) > 0.001 {
		t.Errorf("files: live %d, ratio %.3f", f.LiveRawBytes(), f.Ratio())
	}
	if (wear.Files{CacheBytes: 1}).Ratio() != 0 {
		t.Error("no live certificate: ratio not 0")
	}
}

// counter is a fake /proc/self/io: wchar grows as the test writes.
type counter struct {
	n    atomic.Uint64
	fail atomic.Bool
}

func (c *counter) read() (wear.Counters, error) {
	if c.fail.Load() {
		return wear.Counters{}, wear.ErrNoCounters
	}
	n := c.n.Load()
	return wear.Counters{WChar: n, WriteBytes: 2 * n, SyscW: n / 4096}, nil
}

// TestMeterProjects: in a bubble of fake time, the meter projects the
// bytes since start until it has run a day, then the last 24 hours.
func TestMeterProjects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		c.n.Store(5e9) // written before the meter started: not counted
		m := wear.NewMeter(c.read, time.Now)
		// hour passes an hour of the bubble's clock and samples, as the
		// agent's wear watch does every wear.DefaultEvery.
		hour := func() {
			time.Sleep(time.Hour)
			if err := m.Sample(); err != nil {
				t.Fatal(err)
			}
		}

		time.Sleep(time.Minute) // fake time: the bubble's clock
		c.n.Add(1e6)
		r, err := m.Rate()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := r.PerDay(); ok {
			t.Error("a projection from one minute")
		}
		if r.Written.WChar != 1e6 || r.Total.WChar != 5e9+1e6 {
			t.Errorf("written %+v, total %+v", r.Written, r.Total)
		}

		// 12 hours at 1 GB an hour: 24 GB a day since start.
		for range 12 {
			hour()
			c.n.Add(1e9)
		}
		r, _ = m.Rate()
		pd, ok := r.PerDay()
		wantSince := float64(12e9+1e6) * 24 / (12 + 1.0/60)
		if !ok || math.Abs(pd-wantSince) > 1 || r.Last24h != nil {
			t.Errorf("12 h: %.0f a day (ok %v), want %.0f; last 24h %v", pd, ok, wantSince, r.Last24h)
		}
		if wb, _ := r.Projected(wear.WriteBytes); math.Abs(wb-2*wantSince) > 2 {
			t.Errorf("write_bytes %.0f a day", wb)
		}

		// Then 30 hours at 100 MB an hour: the last day, 2.4 GB, decides.
		for range 30 {
			hour()
			c.n.Add(1e8)
		}
		r, _ = m.Rate()
		pd, ok = r.PerDay()
		if !ok || r.Last24h == nil || r.Window < wear.Day || r.Window > wear.Day+time.Hour {
			t.Fatalf("42 h: last 24h %v over %v", r.Last24h, r.Window)
		}
		if want := float64(r.Last24h.WChar) * float64(wear.Day) / float64(r.Window); pd != want || pd < 2.3e9 || pd > 2.5e9 {
			t.Errorf("42 h: %.0f a day, want about 2.4e9", pd)
		}
	})
}

// TestMeterWithoutCounters: a kernel without the counters is an error
// from Rate, and the meter starts counting once they can be read.
func TestMeterWithoutCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var c counter
		c.fail.Store(true)
		m := wear.NewMeter(c.read, time.Now)
		if _, err := m.Rate(); !errors.Is(err, wear.ErrNoCounters) {
			t.Fatalf("rate without counters: %v", err)
		}
		if err := m.Sample(); !errors.Is(err, wear.ErrNoCounters) {
			t.Fatalf("sample without counters: %v", err)
		}
		c.fail.Store(false)
		c.n.Store(100)
		if err := m.Sample(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Hour)
		c.n.Add(1000)
		r, err := m.Rate()
		if err != nil || r.Written.WChar != 1000 || r.Elapsed != time.Hour {
			t.Fatalf("after the counters came: %+v, %v", r, err)
		}
	})
}
