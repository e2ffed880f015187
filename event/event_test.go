package event_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"gateagent/event"
	"gateagent/verify"
)

func TestKindNames(t *testing.T) {
	for k, want := range map[event.Kind]string{event.Decision: "decision", event.ForcedPassage: "forced_passage",
		event.Technician: "technician", 0: "event_kind(0)", 200: "event_kind(200)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d) = %q, want %q", k, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := event.Event{Time: time.Unix(1, 0), Kind: event.Alarm, Reason: verify.OK, Detail: "cache stale"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid event refused: %v", err)
	}
	for name, mod := range map[string]func(*event.Event){
		"kind 0":       func(e *event.Event) { e.Kind = 0 },
		"unknown kind": func(e *event.Event) { e.Kind = 99 },
		"reason":       func(e *event.Event) { e.Reason = 200 },
		"no time":      func(e *event.Event) { e.Time = time.Time{} },
		"long detail":  func(e *event.Event) { e.Detail = strings.Repeat("x", event.MaxDetail+1) },
		"not UTF-8":    func(e *event.Event) { e.Detail = "\xff" },
	} {
		e := ok
		mod(&e)
		if err := e.Validate(); !errors.Is(err, event.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
