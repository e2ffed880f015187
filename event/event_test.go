package event_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"gateagent/event"
	"gateagent/verify"
)

func TestKindNames(t *testing.T) {
	for k, want := range map[event.Kind]string{event.Decision: "decision", event.ForcedPassage: "forced_passage",
		event.Technician: "technician", event.Lapsed: "lapsed", 0: "event_kind(0)", 200: "event_kind(200)"} {
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

// TestUploadJSONCertID: an event without a certificate (a malformed code,
// an alarm) has no cert_id in its JSON, where it had "000…0"; the issuer
// reads both, and an event of an older gate's, the same.
func TestUploadJSONCertID(t *testing.T) {
	none := event.Event{Seq: 1, Time: time.Unix(1, 0).UTC(), Kind: event.Decision, Reason: verify.Malformed}
	b, err := json.Marshal(none)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "cert_id") {
		t.Fatalf("JSON %s: an event without a certificate carries a cert_id", b)
	}
	old := strings.Replace(string(b), `"direction"`, `"cert_id":"00000000000000000000000000000000","direction"`, 1)
	for _, in := range []string{string(b), old} {
		var got event.Event
		if err := json.Unmarshal([]byte(in), &got); err != nil || got != none {
			t.Fatalf("%s read back as %+v (%v), want %+v", in, got, err, none)
		}
	}
	with := none
	with.Reason, with.CertID = verify.OK, verify.CertID{1, 2, 3}
	b, _ = json.Marshal(with)
	var got event.Event
	if err := json.Unmarshal(b, &got); err != nil || got != with || !strings.Contains(string(b), `"cert_id":"010203`) {
		t.Fatalf("%s read back as %+v (%v), want %+v", b, got, err, with)
	}
}
