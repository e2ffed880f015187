// Command churn runs the flash-endurance harness (package
// internal/churn) for a number of simulated days and prints one line per
// day: what the day wrote, its fsyncs, the files' size against the live
// records, and each kind of operation's share. It is the "flat" check of
// issue 16: seven days, each within 10% of the others.
//
// Usage:
//
//	go run ./internal/cmd/churn [-days 7] [-target today] [-dir DIR] [-dev loop0] [-scale 1] [-retention 24h]
//
// -dev names the block device (as in /sys/block) the directory lives on,
// alone: then each day also reports the bytes that reached it, the file
// system's own writes included (docs/flash.md shows how to make one with
// a loop device).
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"gateagent/internal/churn"
)

func main() {
	days := flag.Int("days", 1, "simulated days to run")
	target := flag.String("target", "today", "the storage to drive: "+strings.Join(names(), ", "))
	dir := flag.String("dir", "", "directory for the files (default: a new temporary one, removed at the end)")
	dev := flag.String("dev", "", "block device the directory lives on alone, as named in /sys/block (e.g. loop0)")
	scale := flag.Float64("scale", 1, "multiply certificates, revocations and grants by this")
	revokes := flag.Int("revokes", 0, "revocations per day (before -scale)")
	retention := flag.Duration("retention", churn.Default().Retention, "how long certificates are kept after they expire")
	seed := flag.Uint64("seed", 1, "seed of the certificates and the grants")
	maintain := flag.Duration("maintain-every", churn.Default().MaintainEvery, "how often the storage's maintenance (today: the purge) runs")
	flag.Parse()
	if err := run(*days, *target, *dir, *dev, *scale, *revokes, *retention, *maintain, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "churn:", err)
		os.Exit(1)
	}
}

func names() []string {
	var n []string
	for k := range churn.Targets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

func run(days int, target, dir, dev string, scale float64, revokes int, retention, maintain time.Duration, seed uint64) error {
	cfg := churn.Default()
	cfg.RevokesPerDay, cfg.Retention, cfg.MaintainEvery, cfg.Seed = revokes, retention, maintain, seed
	if days < 1 || scale <= 0 || revokes < 0 {
		return fmt.Errorf("-days %d, -scale %v, -revokes %d: give at least one day, a positive scale and no negative count", days, scale, revokes)
	}
	if err := cfg.Check(); err != nil {
		return fmt.Errorf("-retention or -maintain-every: %w", err)
	}
	open, ok := churn.Targets[target]
	if !ok {
		return fmt.Errorf("no target %q: one of %s", target, strings.Join(names(), ", "))
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "churn-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	cfg = cfg.Scaled(scale)
	t, err := open(dir)
	if err != nil {
		return err
	}
	defer t.Close()
	fmt.Printf("churn: target %s in %s: %d valid certificates, %d a day in batches every %v, retention %v, %d grants a day, floor %.1f MB and %.0f fsyncs a day\n",
		target, dir, cfg.Valid, cfg.Valid, cfg.BatchEvery, cfg.Retention, cfg.GrantsPerDay, cfg.FloorBytes()/1e6, cfg.FloorSyncs())
	r := churn.NewRun(cfg, t)
	r.Dev = dev
	t0 := time.Now()
	if err := r.Load(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	u, err := t.Usage()
	if err != nil {
		return err
	}
	fmt.Printf("loaded in %v: files %.1f MB\n", time.Since(t0).Round(time.Millisecond), float64(u.Total())/1e6)
	for range days {
		d, err := r.Day()
		if err != nil {
			return err
		}
		fmt.Println(d)
	}
	u, err = t.Usage()
	if err != nil {
		return err
	}
	fmt.Printf("fsyncs counted since the files were opened: %d\n", u.Syncs)
	return nil
}
