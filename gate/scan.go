package gate

import "time"

// Scan is one text read from the scanner: what the controller checks.
// Scanners (package scanner) produce it; it is defined here, where it is
// consumed, so the controller links no scanner code.
type Scan struct {
	Text []byte // owned copy, exactly as sent (only the terminator is stripped)
	// At is when the text was complete: from a serial scanner, when the
	// read that brought its terminator returned; from an image, when its
	// code had been decoded. The repeat window and the scan-to-relay
	// latency count from it.
	At time.Time
	// Began is when the scan's first part came in: from a serial
	// scanner, when the read that brought the frame's first byte returned
	// (frames whose first bytes came in one read all began with it); from
	// an image, when its file was found, before it was decoded. At − Began
	// is the read stage: how long the scanner took to send the text, or
	// the image to be read and decoded. Began is on At's clock and never
	// after it; zero when unknown.
	Began  time.Time
	Source string // the port name, or the image file name
	// Release, when set, ends the mark its source took as the scan began
	// to arrive (scanner.Options.Arriving: the key cache's writes held
	// back). The controller calls it once the scan is dealt with; a
	// source that cannot hand the scan on calls it itself.
	Release func()
}
