// Package scanner reads the texts of the QR codes passengers show at the
// gate and hands them to the gate controller as Scans.
//
// # Sources
//
// Serial reads a QR scanner on a serial line (RS-232, or USB CDC, which
// appears as a tty), through go.bug.st/serial, with the line settings of
// Config (9600 8N1 by default). Modem lines are never used: USB CDC
// scanners and ptys do not have them.
//
// Images reads frames from a FrameSource, such as DirFrames, a spool
// directory a camera writes PNG or JPEG files into, and decodes the QR code
// in each frame with gateagent/qrcode. Files are removed once read; files
// too large, in bytes or in pixels, are refused before decoding.
//
// RunTrigger drives an optional trigger line: a pulse each time the
// approach sensor fires, for scanners that do not scan continuously.
//
// # Framing
//
// A scanner sends each code followed by a terminator: CR, LF or CRLF.
// Framer cuts the byte stream into lines: only the terminator is stripped,
// so a code keeps its trailing spaces, NULs and any other byte. Empty lines
// are skipped. The default terminator, Auto, ends a line at a CR or an LF,
// so a scanner sending any of the three works, a CRLF never leaves an LF at
// the start of the next code, and a code is delivered at its first ending
// byte. Whatever the setting, Stats.Endings counts the endings the scanner
// actually sends (diag compares them with the setting), and Stats counts
// the lines that read as TR1 codes apart from the rejected ones. A line longer than Config.MaxLine (512 bytes by
// default, at most 64 KiB) is dropped when its terminator arrives, and
// logged with its length and counted (Stats.Overlong); the lines after it
// are delivered intact. Memory is bounded whatever the input: the Framer
// never holds more than MaxLine bytes, even of a line that never ends.
//
// # Repeat window
//
// A scanner repeats a code for as long as it stays in view. The same text
// read again less than RepeatWindow after its LAST read is suppressed and
// counted (Stats.Suppressed): a code held in view stays suppressed, and is
// delivered again only after a pause of at least the window. Zero turns
// the window off. See Dedup: it remembers digests of the last few texts,
// in fixed memory.
//
// # Reconnection
//
// Serial.Run never gives up on the port: when it cannot be opened (the
// scanner is not plugged in yet) or is lost (unplugged, read error), Run
// logs it ("scanner port lost"), closes it and tries again with
// exponential backoff from MinBackoff to MaxBackoff, with jitter, until it
// opens again ("scanner port open"); Stats.Reconnects counts such
// recoveries, and Stats.LastError is cleared. A port that stays absent is
// logged once, then its failed opens are counted in a line a minute
// (RepeatEvery), as are over-long lines. Run returns only when its context ends, closing the port so
// that no read is left pending.
//
// # Privacy
//
// A scan's text is a passenger's credential: it is never logged, nor put
// in an error. Logs and Stats hold lengths, counts and times only, and the
// repeat window keeps SHA-256 digests rather than texts.
package scanner
