// Package hwtest provides fake gate boards on periph's gpiotest pins, with a
// journal of every operation on them, so tests can check what the gate
// drove and in which order (outputs safe before any input is read).
package hwtest

import (
	"fmt"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpiotest"

	"gateagent/hw"
	"gateagent/hw/gpiohw"
)

// Op is one operation on a pin.
type Op struct {
	Pin   string
	Kind  string // "out", "in" or "read"
	Level gpio.Level
}

// Journal records the operations on a set of pins, in order.
type Journal struct {
	mu   sync.Mutex
	ops  []Op
	subs []func(Op)
}

func (j *Journal) add(op Op) {
	j.mu.Lock()
	j.ops = append(j.ops, op)
	subs := j.subs
	j.mu.Unlock()
	for _, f := range subs {
		f(op)
	}
}

// Ops returns a copy of the journal.
func (j *Journal) Ops() []Op {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]Op(nil), j.ops...)
}

// Outs returns the levels driven on the named pin, in order.
func (j *Journal) Outs(pin string) []gpio.Level {
	var out []gpio.Level
	for _, op := range j.Ops() {
		if op.Pin == pin && op.Kind == "out" {
			out = append(out, op.Level)
		}
	}
	return out
}

// Levels returns the levels the named pin went through as it was driven:
// Outs with repeats of the same level folded, so a pin driven again to the
// level it holds shows no movement.
func (j *Journal) Levels(pin string) []gpio.Level {
	var out []gpio.Level
	for _, l := range j.Outs(pin) {
		if len(out) == 0 || out[len(out)-1] != l {
			out = append(out, l)
		}
	}
	return out
}

// Subscribe calls f (from the goroutine that drove the pin) for each later
// operation. f must not block.
func (j *Journal) Subscribe(f func(Op)) {
	j.mu.Lock()
	j.subs = append(j.subs, f)
	j.mu.Unlock()
}

// Pin is a gpiotest.Pin that journals its operations. Its edges are
// wake-ups, as a real pin's are: the level is whatever Read says when the
// waiter looks (gpiotest's own EdgesChan replays each edge's level, which
// a glitch test cannot use).
type Pin struct {
	*gpiotest.Pin
	j    *Journal
	wake chan struct{}
}

// WaitForEdge waits for the next Drive, or timeout (-1: forever).
func (p *Pin) WaitForEdge(timeout time.Duration) bool {
	if timeout < 0 {
		<-p.wake
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.wake:
		return true
	case <-t.C:
		return false
	}
}

// Out journals and sets the level.
func (p *Pin) Out(l gpio.Level) error {
	err := p.Pin.Out(l)
	p.j.add(Op{Pin: p.N, Kind: "out", Level: l})
	return err
}

// In journals and configures the pin as an input.
func (p *Pin) In(pull gpio.Pull, e gpio.Edge) error {
	p.j.add(Op{Pin: p.N, Kind: "in"})
	select { // flush a pending edge, as In does on a real pin
	case <-p.wake:
	default:
	}
	return p.Pin.In(pull, e)
}

// Read journals and reads the level.
func (p *Pin) Read() gpio.Level {
	l := p.Pin.Read()
	p.j.add(Op{Pin: p.N, Kind: "read", Level: l})
	return l
}

// Drive sets an input pin's level as the outside world would, as one edge.
func (p *Pin) Drive(l gpio.Level) {
	p.Pin.Lock()
	p.Pin.L = l
	p.Pin.Unlock()
	select {
	case p.wake <- struct{}{}:
	default: // an edge is already pending: the waiter reads the level
	}
}

// Level is the pin's current level.
func (p *Pin) Level() gpio.Level {
	p.Pin.Lock()
	defer p.Pin.Unlock()
	return p.Pin.L
}

// Board is a set of fake pins named as in Wiring.
type Board struct {
	Journal *Journal
	Pins    map[string]*Pin
}

// Pin names of the fake board.
const (
	Relay, Green, Red, Buzzer, Trigger = "RELAY", "GREEN", "RED", "BUZZER", "TRIGGER"
	Passage, Emergency, Approach       = "PASSAGE", "EMERGENCY", "APPROACH"
)

// NewBoard returns fake pins, every one at the low level, as a board's
// GPIO lines are before the agent touches them.
func NewBoard() *Board {
	b := &Board{Journal: &Journal{}, Pins: map[string]*Pin{}}
	for _, n := range []string{Relay, Green, Red, Buzzer, Trigger, Passage, Emergency, Approach} {
		b.Pins[n] = &Pin{Pin: &gpiotest.Pin{N: n, Clock: clockwork.NewRealClock(), EdgesChan: make(chan gpio.Level, 1)},
			j: b.Journal, wake: make(chan struct{}, 1)}
	}
	return b
}

// Lookup finds a pin by name, as gpioreg.ByName does (nil when absent).
func (b *Board) Lookup(name string) gpio.PinIO {
	if p, ok := b.Pins[name]; ok {
		return p
	}
	return nil
}

// Wiring is the hw.Pins of this fake board. relayActiveLow wires the relay
// as most relay boards are (energised by a low level); inputs are active
// high. Debounce is off and the poll short, for tests.
func Wiring(relayActiveLow bool) hw.Pins {
	return hw.Pins{
		Relay: hw.Line{Pin: Relay, ActiveLow: relayActiveLow}, Green: hw.Line{Pin: Green}, Red: hw.Line{Pin: Red},
		Buzzer: hw.Line{Pin: Buzzer}, Passage: hw.Line{Pin: Passage}, Emergency: hw.Line{Pin: Emergency},
		Debounce: -1, Poll: 5 * time.Millisecond,
	}
}

// Open opens the fake board as the agent would open a real one.
func (b *Board) Open(p hw.Pins) (*hw.Board, error) { return gpiohw.OpenPins(p, b.Lookup) }

// Set drives the named input: active true sets it to its active level
// given activeLow.
func (b *Board) Set(name string, level gpio.Level) {
	p, ok := b.Pins[name]
	if !ok {
		panic(fmt.Sprintf("hwtest: no pin %q", name))
	}
	p.Drive(level)
}

// WaitOut returns a channel that receives each later level driven on pin.
// The channel is buffered (256); levels beyond that are dropped.
func (b *Board) WaitOut(pin string) <-chan gpio.Level {
	ch := make(chan gpio.Level, 256)
	b.Journal.Subscribe(func(op Op) {
		if op.Pin == pin && op.Kind == "out" {
			select {
			case ch <- op.Level:
			default:
			}
		}
	})
	return ch
}
