package scanner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gateagent/hw"
	"gateagent/internal/backoff"
)

// Backoff between attempts to watch a failed approach sensor.
const (
	triggerMinRetry = 100 * time.Millisecond
	triggerMaxRetry = 5 * time.Second
)

// RunTrigger pulses trigger for pulse each time approach becomes active,
// until ctx ends; then it returns ctx.Err() (joined with the error of
// turning the trigger off, if that fails). It leaves trigger off when it
// returns.
//
// The first level Watch reports counts: someone already standing at the
// scanner when RunTrigger starts gets a pulse. A new activation during a
// pulse restarts it. If the sensor's Watch fails, the failure is logged and
// the watch restarted with backoff; a failing Set is logged and the next
// activation tries again.
func RunTrigger(ctx context.Context, approach hw.Input, trigger hw.Output, pulse time.Duration, log *slog.Logger) error {
	switch {
	case approach == nil || trigger == nil:
		return errors.New("scanner: trigger needs both the approach input and the trigger output (hw.approach and hw.trigger)")
	case pulse <= 0:
		return fmt.Errorf("scanner: trigger pulse %v: must be positive (scanner.trigger_pulse)", pulse)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("input", approach.Name(), "output", trigger.Name())

	set := func(on bool) error {
		if err := trigger.Set(on); err != nil {
			err = fmt.Errorf("scanner: set trigger %s %v: %w", trigger.Name(), on, err)
			log.Warn("trigger line failed", "err", err)
			return err
		}
		return nil
	}
	_ = set(false)

	levels := make(chan bool)
	var (
		watchDone chan error // nil while no watch runs
		stopWatch context.CancelFunc
		retry     <-chan time.Time // the pending restart of a failed watch
		retries   = backoff.New(triggerMinRetry, triggerMaxRetry)
		pulseEnd  = time.NewTimer(time.Hour)
		pulsing   bool
		active    bool
	)
	pulseEnd.Stop()
	startWatch := func() {
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- approach.Watch(wctx, levels) }()
		watchDone, stopWatch, active = done, cancel, false
	}
	defer func() {
		pulseEnd.Stop()
		if watchDone != nil {
			stopWatch()
			// Watch may be blocked sending a level: take it until it ends.
			for waiting := true; waiting; {
				select {
				case <-levels:
				case <-watchDone:
					waiting = false
				}
			}
		}
	}()
	startWatch()
	for {
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), set(false))
		case on := <-levels:
			if on && !active {
				log.Debug("approach: trigger pulse", "pulse", pulse)
				if pulsing || set(true) == nil {
					pulsing = true
					pulseEnd.Reset(pulse)
				}
			}
			retries.Reset() // the sensor works
			active = on
		case <-pulseEnd.C:
			pulsing = false
			_ = set(false)
		case err := <-watchDone:
			stopWatch()
			watchDone = nil
			if ctx.Err() != nil {
				continue // the ctx.Done case returns
			}
			if err == nil {
				err = errors.New("its watch ended")
			}
			err = fmt.Errorf("scanner: watch %s: %w", approach.Name(), err)
			pause := retries.Fail()
			log.Warn("approach sensor failed: no scan trigger until it recovers", "err", err, "retry_in", pause)
			retry = time.After(pause)
		case <-retry:
			retry = nil
			startWatch()
		}
	}
}
