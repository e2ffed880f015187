// Package hw holds the narrow interfaces of what the gate drives and reads:
// the turnstile relay, the passage sensor, the emergency input, the approach
// sensor and scanner trigger, the green and red indicators and the buzzer.
//
// Every line is seen in logical terms: an Output that is on is active (the
// relay energised, so the gate is unlocked; a lamp lit; the buzzer
// sounding), an Input that is active sees what it watches (someone in the
// passage; the emergency switch engaged). Which electrical level that is
// comes from the config (active_low), so nothing above this package knows it.
//
// Implementations: periph.io pins by name (package gpiohw, the driver: only
// the wiring and diag import it), a simulated board that prints its state
// (sim.go) and fakes on periph's gpiotest pins (hwtest). This package
// imports no driver, so the gate controller links none.
// Every output is driven off (its safe level) as it is opened, before any
// input is read, and again by Board.Safe at shutdown.
package hw
