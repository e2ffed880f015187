package hw_test

import (
	"bytes"
	"context"
	"testing"

	"gateagent/hw"
)

func TestSimPrintsChangesOnly(t *testing.T) {
	var out bytes.Buffer
	var changes []string
	sim := hw.NewSim(&out, func(name string, on bool) {
		if on {
			changes = append(changes, name)
		}
	})
	b := sim.Board()
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	b.Relay.Set(true)
	b.Relay.Set(true)
	b.Relay.Set(false)
	want := "hw: relay off\nhw: green off\nhw: red off\nhw: buzzer off\nhw: relay on\nhw: relay off\n"
	if out.String() != want {
		t.Fatalf("printed %q, want %q", out.String(), want)
	}
	if len(changes) != 1 || changes[0] != "relay" || sim.Output("relay") {
		t.Fatalf("changes %v, relay %v", changes, sim.Output("relay"))
	}
	in := sim.Input("emergency")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := make(chan bool, 8)
	go in.Watch(ctx, ch)
	if <-ch {
		t.Fatal("emergency active at start")
	}
	in.Set(true)
	in.Set(false) // a short pulse is seen whole, in order
	if !<-ch || <-ch {
		t.Fatal("pulse not seen as on then off")
	}
}

func TestParsePull(t *testing.T) {
	for s, want := range map[string]hw.Pull{"": hw.PullNoChange, "up": hw.PullUp, "down": hw.PullDown, "none": hw.PullNone, "float": hw.PullNone} {
		if got, err := hw.ParsePull(s); err != nil || got != want {
			t.Errorf("%q: %v %v", s, got, err)
		}
	}
	if _, err := hw.ParsePull("sideways"); err == nil {
		t.Error("accepted sideways")
	}
}
