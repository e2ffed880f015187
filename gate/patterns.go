package gate

import (
	"time"

	"gateagent/verify"
)

// step is one stretch of a signal pattern: the red lamp and the buzzer
// held for dur.
type step struct {
	red, buzz bool
	dur       time.Duration
}

// pattern is what the passenger sees and hears after a scan. Green is not
// part of it: green follows the gate's state (unlocked or not).
type pattern []step

const (
	beep  = 120 * time.Millisecond
	pause = 120 * time.Millisecond
)

// Signals per outcome. A passenger learns three denials apart by ear:
// two short beeps ask for a fresh code, one long beep sends them to the
// manual channel, three short beeps mean the code is not valid here.
var (
	sigGranted = pattern{{buzz: true, dur: 80 * time.Millisecond}}
	sigBusy    = pattern{{buzz: true, dur: 60 * time.Millisecond}}
	// sigAck: a scan was handed to a technician (NextScan).
	sigAck = pattern{{buzz: true, dur: 40 * time.Millisecond}}
)

// denySignal returns the red lamp and buzzer pattern for a denial of the
// given family, the red lamp lit for at least hold.
func denySignal(f verify.Family, hold time.Duration) pattern {
	var p pattern
	switch f {
	case verify.FamilyRefresh: // refresh your code
		p = pattern{{true, true, beep}, {true, false, pause}, {true, true, beep}}
	case verify.FamilyManual: // go to the manual channel
		p = pattern{{true, true, 800 * time.Millisecond}}
	case verify.FamilyInvalid: // not valid
		p = pattern{{true, true, beep}, {true, false, pause}, {true, true, beep}, {true, false, pause}, {true, true, beep}}
	default: // the gate cannot decide: out of service
		p = pattern{{true, true, 400 * time.Millisecond}, {true, false, 200 * time.Millisecond}, {true, true, 400 * time.Millisecond}}
	}
	return holdRed(p, hold)
}

// alarmSignal is the forced-passage alarm: fast beeps, red, for d.
func alarmSignal(d time.Duration) pattern {
	var p pattern
	for t := time.Duration(0); t < d; t += 2 * 100 * time.Millisecond {
		p = append(p, step{true, true, 100 * time.Millisecond}, step{true, false, 100 * time.Millisecond})
	}
	return p
}

// holdRed extends p with the red lamp alone until it lasts hold.
func holdRed(p pattern, hold time.Duration) pattern {
	var total time.Duration
	for _, s := range p {
		total += s.dur
	}
	if total < hold {
		p = append(p, step{red: true, dur: hold - total})
	}
	return p
}
