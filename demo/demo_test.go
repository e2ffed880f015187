package demo_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"gateagent/demo"
)

// TestWalkthrough runs the README's demo and checks what it prints: each
// step as a station expects it, and no passenger's code in the gate's log.
func TestWalkthrough(t *testing.T) {
	var out, log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := demo.Run(ctx, &out, demo.Options{Dir: t.TempDir(), Log: &log, QR: true}); err != nil {
		t.Fatalf("demo failed: %v\noutput:\n%s", err, out.String())
	}
	for _, want := range []string{
		"GRANTED: event recorded, relay unlocked",
		"passage clear: relay locked",
		`gate 2     DENIED PASSBACK "seen at gate DEMO-E01"`,
		"DENIED CODE_STALE",
		"DENIED PASSBACK",
		"DENIED REVOKED",
		"relay held open",
		"emergency released: relay locked",
		"holds the gate's 7 events: 4 decisions, 1 passage, 2 emergency, 0 alarms",
		"daemon mode",
		"PASS  feed",
		"PASS  latency    scan to relay",
		"PASS  peers      group DEMO-entry: 1 of 1 peers alive",

		"PASS  records",
		"WARN  keys",
		"result: WARN",
		"shut down cleanly",
		"█", // the QR code
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(log.String(), "TR1:") {
		t.Error("a passenger's code appears in the agent's log")
	}
	if strings.Contains(log.String(), "11010519900307") {
		t.Error("the passenger's ID number appears in the log")
	}
}
