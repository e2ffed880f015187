// Package scanner will read QR texts from the gate's scanner over a serial
// line (go.bug.st/serial) and decode QR codes from image frames (gozxing).
//
// Not built yet: it comes with the gate runtime (issue 4).
package scanner
