// Package hw will hold the narrow interfaces of what the gate drives and
// reads (relay, passage sensors, emergency input, indicators, buzzer), their
// periph.io implementation, a simulated one and test fakes.
//
// Not built yet: it comes with the gate runtime (issue 4). Nothing in
// gateagent moves a relay today.
package hw
