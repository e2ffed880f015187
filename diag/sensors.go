package diag

import (
	"context"
	"fmt"
	"strings"
	"time"

	"gateagent/hw"
)

// Reading is one sample of the gate's inputs (nil: not wired).
type Reading struct {
	At        time.Time `json:"at"`
	Passage   *bool     `json:"passage,omitempty"`
	Emergency *bool     `json:"emergency,omitempty"`
	Approach  *bool     `json:"approach,omitempty"`
	Err       string    `json:"error,omitempty"`
}

// SensorPoll is how often the inputs are sampled for the live readout.
const SensorPoll = 20 * time.Millisecond

// WatchInputs samples b's inputs every SensorPoll for d and calls emit
// with the first reading and each that differs from the one before. It
// reads levels only: the agent's own watchers are not disturbed.
func WatchInputs(ctx context.Context, b *hw.Board, d time.Duration, now func() time.Time, emit func(Reading) error) error {
	read := func(in hw.Input, errs *[]string) *bool {
		if in == nil {
			return nil
		}
		v, err := in.Active()
		if err != nil {
			*errs = append(*errs, in.Name()+": "+err.Error())
			return nil
		}
		return &v
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	t := time.NewTicker(SensorPoll)
	defer t.Stop()
	var last Reading
	for first := true; ; first = false {
		var errs []string
		r := Reading{At: now(), Passage: read(b.Passage, &errs), Emergency: read(b.Emergency, &errs), Approach: read(b.Approach, &errs)}
		r.Err = strings.Join(errs, "; ")
		if first || !sameLevels(r, last) {
			if err := emit(r); err != nil {
				return err
			}
			last = r
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func sameLevels(a, b Reading) bool {
	eq := func(x, y *bool) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.Passage, b.Passage) && eq(a.Emergency, b.Emergency) && eq(a.Approach, b.Approach) && a.Err == b.Err
}

func (r Reading) text() string {
	f := func(name string, v *bool, on, off string) string {
		switch {
		case v == nil:
			return name + "=-"
		case *v:
			return name + "=" + on
		}
		return name + "=" + off
	}
	s := fmt.Sprintf("%s  %s  %s  %s", r.At.Format("15:04:05.000"), f("passage", r.Passage, "OCCUPIED", "clear"),
		f("emergency", r.Emergency, "ENGAGED", "released"), f("approach", r.Approach, "someone", "nobody"))
	if r.Err != "" {
		s += "  error: " + r.Err
	}
	return s
}
