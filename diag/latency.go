package diag

import (
	"fmt"
	"io"
	"strings"
	"time"

	"gateagent/internal/plural"
	"gateagent/metrics"
)

// judgeLatency judges the running agent's per-stage latency figures.
func judgeLatency(lat []metrics.StageLatency, live bool) Check {
	c := Check{Name: NameLatency}
	if !live {
		c.Status, c.Line = Skip, "no figures: the agent keeps them in memory while it runs, and it is not running"
		return c
	}
	var total metrics.StageLatency
	var parts []string
	slowest, slowestP50 := "", time.Duration(-1)
	for _, s := range lat {
		if s.Stage == "scan_to_relay" {
			total = s
			continue
		}
		if s.Count == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s", s.Stage, ms(s.P50)))
		if s.P50 > slowestP50 {
			slowest, slowestP50 = s.Stage, s.P50
		}
	}
	c.Facts = map[string]any{"grants": total.Count, "p50_seconds": total.P50.Seconds(), "p99_seconds": total.P99.Seconds(), "max_seconds": total.Max.Seconds()}
	if total.Count == 0 {
		c.Status, c.Line = Pass, "no grant since the agent started: no scan-to-relay figures yet"
		if len(parts) > 0 {
			c.Line += "; stage medians " + strings.Join(parts, ", ")
		}
		return c
	}
	line := fmt.Sprintf("scan to relay p50 %s, p99 %s, max %s over %s; stage medians %s", ms(total.P50), ms(total.P99), ms(total.Max),
		plural.N(total.Count, "grant", "grants"), strings.Join(parts, ", "))
	if total.P99 > LatencyWarn {
		c.Status, c.Line = Warn, fmt.Sprintf("slow: %s; the slowest stage is %s: see gateagent diag latency (record: the cache's disk; read: the scanner's baud rate)", line, slowest)
		return c
	}
	c.Status, c.Line = Pass, line
	return c
}

// writeHistogram prints each stage's histogram for a person.
func writeHistogram(w io.Writer, c Check, lat []metrics.StageLatency) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%-4s  %s\n\n", c.Status, c.Line)
	for _, s := range lat {
		fmt.Fprintf(&b, "%-13s %6d samples  p50 %9s  p99 %9s  max %9s\n", s.Stage, s.Count, ms(s.P50), ms(s.P99), ms(s.Max))
		if s.Count == 0 {
			continue
		}
		var prev uint64
		for _, bk := range s.Buckets {
			n := bk.Count - prev
			prev = bk.Count
			if n == 0 {
				continue
			}
			bar := strings.Repeat("#", int(max(1, n*40/s.Count)))
			fmt.Fprintf(&b, "    <= %9s %6d %s\n", ms(bk.UpperBound), n, bar)
		}
		if n := s.Count - prev; n > 0 {
			fmt.Fprintf(&b, "    >  %9s %6d %s\n", ms(s.Buckets[len(s.Buckets)-1].UpperBound), n, strings.Repeat("#", int(max(1, n*40/s.Count))))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.3fms", float64(d)/float64(time.Millisecond))
}
