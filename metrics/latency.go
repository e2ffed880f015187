package metrics

import (
	"encoding/json"
	"math"
	"slices"
	"sync"
	"time"
)

// Sizes of the rings of recent samples.
const (
	latencyRingSize = 1024 // per stage, for the percentiles of Latency
	driftRingSize   = 256  // authentic decisions, for Drift
)

// StageLatency is one stage's latency figures, for diag's latency check.
//
// Count and Buckets cover every sample since start, like the Prometheus
// histogram beside them. P50, P99 and Max are exact over the last 1024
// samples (nearest rank), which the histogram's buckets cannot give.
//
// In JSON the durations are numbers of seconds: {"stage":"tag","count":3,
// "p50_seconds":0.00002,"p99_seconds":…,"max_seconds":…,"buckets":
// [{"le_seconds":0.00001,"count":0},…]}.
type StageLatency struct {
	Stage   string // read, decode, lookup, tag, record, relay or scan_to_relay
	Count   uint64 // samples since start
	P50     time.Duration
	P99     time.Duration
	Max     time.Duration
	Buckets []Bucket // the histogram's buckets, cumulative, without +Inf (that is Count)
}

// Bucket is one cumulative histogram bucket: Count samples took at most
// UpperBound. In JSON: {"le_seconds":0.001,"count":12}.
type Bucket struct {
	UpperBound time.Duration
	Count      uint64
}

type stageLatencyJSON struct {
	Stage   string   `json:"stage"`
	Count   uint64   `json:"count"`
	P50     float64  `json:"p50_seconds"`
	P99     float64  `json:"p99_seconds"`
	Max     float64  `json:"max_seconds"`
	Buckets []Bucket `json:"buckets"`
}

type bucketJSON struct {
	UpperBound float64 `json:"le_seconds"`
	Count      uint64  `json:"count"`
}

func seconds(d time.Duration) float64  { return d.Seconds() }
func duration(s float64) time.Duration { return time.Duration(math.Round(s * 1e9)) }

// MarshalJSON writes the durations as seconds.
func (l StageLatency) MarshalJSON() ([]byte, error) {
	return json.Marshal(stageLatencyJSON{l.Stage, l.Count, seconds(l.P50), seconds(l.P99), seconds(l.Max), l.Buckets})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (l *StageLatency) UnmarshalJSON(b []byte) error {
	var j stageLatencyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*l = StageLatency{Stage: j.Stage, Count: j.Count, P50: duration(j.P50), P99: duration(j.P99), Max: duration(j.Max), Buckets: j.Buckets}
	return nil
}

// MarshalJSON writes the bound as seconds.
func (b Bucket) MarshalJSON() ([]byte, error) {
	return json.Marshal(bucketJSON{seconds(b.UpperBound), b.Count})
}

// UnmarshalJSON reads what MarshalJSON wrote.
func (b *Bucket) UnmarshalJSON(data []byte) error {
	var j bucketJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*b = Bucket{duration(j.UpperBound), j.Count}
	return nil
}

// latencyRing keeps one stage's last latencyRingSize samples and its
// bucket counts since start. Metrics.ringMu guards it (bounds are fixed).
type latencyRing struct {
	bounds []time.Duration // the histogram's upper bounds

	n       uint64 // samples since start
	samples [latencyRingSize]time.Duration
	counts  []uint64 // per bucket, not cumulative; the last one is +Inf
}

func (r *latencyRing) init(bucketSeconds []float64) {
	r.bounds = make([]time.Duration, len(bucketSeconds))
	for i, s := range bucketSeconds {
		r.bounds[i] = duration(s)
	}
	r.counts = make([]uint64, len(bucketSeconds)+1)
}

// add records d, whose bucket is b (bucketOf, computed before the lock).
func (r *latencyRing) add(d time.Duration, b int) {
	r.samples[r.n%latencyRingSize] = d
	r.n++
	r.counts[b]++
}

// bucketOf returns the index of d's bucket in r.counts: the first bound
// at or above d, or the +Inf bucket.
func (r *latencyRing) bucketOf(d time.Duration) int {
	b := 0
	for b < len(r.bounds) && d > r.bounds[b] {
		b++
	}
	return b
}

// snapshot copies r under mu, then computes its figures outside it.
func (r *latencyRing) snapshot(mu *sync.Mutex, stage string) StageLatency {
	var recent [latencyRingSize]time.Duration
	mu.Lock()
	n, counts := r.n, slices.Clone(r.counts)
	k := int(min(n, latencyRingSize))
	copy(recent[:k], r.samples[:k])
	mu.Unlock()

	l := StageLatency{Stage: stage, Count: n, Buckets: make([]Bucket, len(r.bounds))}
	var cum uint64
	for i, ub := range r.bounds {
		cum += counts[i]
		l.Buckets[i] = Bucket{UpperBound: ub, Count: cum}
	}
	if k > 0 {
		s := recent[:k]
		slices.Sort(s)
		l.P50, l.P99, l.Max = rank(s, 0.50), rank(s, 0.99), s[k-1]
	}
	return l
}

// rank is the nearest-rank p-quantile of the sorted, non-empty s.
func rank(s []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(s)))) - 1
	return s[max(0, min(len(s)-1, i))]
}

// Latency returns the figures of each stage of a checked scan, in the
// order read, decode, lookup, tag, record, relay, then scan_to_relay
// (granted scans: scanner read to relay set).
func (m *Metrics) Latency() []StageLatency {
	out := make([]StageLatency, numStages)
	for i := range m.lat {
		out[i] = m.lat[i].snapshot(&m.ringMu, stageNames[i])
	}
	return out
}

// Drift is the clock drift learnt from the step offsets (token's step
// minus the gate's step, Decision.StepOffset) of the last 256 authentic
// decisions: a Mean near −1 means the phones run a step behind the gate,
// that is the gate's clock is ahead.
type Drift struct {
	N      int           `json:"n"`      // decisions counted, at most 256
	Counts map[int64]int `json:"counts"` // step offset → decisions
	Mean   float64       `json:"mean"`   // mean step offset; 0 when N is 0
}

// driftRing keeps the last driftRingSize step offsets. Metrics.ringMu
// guards it.
type driftRing struct {
	n       uint64
	offsets [driftRingSize]int64
}

func (r *driftRing) add(off int64) {
	r.offsets[r.n%driftRingSize] = off
	r.n++
}

// Drift returns the step offsets of the last 256 authentic decisions
// (granted or denied after the tag was found right) seen by Observe.
func (m *Metrics) Drift() Drift {
	var offs [driftRingSize]int64
	r := &m.drift
	m.ringMu.Lock()
	k := int(min(r.n, driftRingSize))
	copy(offs[:k], r.offsets[:k])
	m.ringMu.Unlock()

	d := Drift{N: k, Counts: make(map[int64]int)}
	var sum float64
	for _, o := range offs[:k] {
		d.Counts[o]++
		sum += float64(o)
	}
	if k > 0 {
		d.Mean = sum / float64(k)
	}
	return d
}
