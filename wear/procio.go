package wear

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// Counters are this process's write counters from /proc/self/io, each
// counted since the process started (all its threads, the dead ones too):
//
//   - WChar: bytes handed to write(2), pwrite(2) and their kin, to any
//     file descriptor: files, but also sockets (uploads to the issuer, the
//     control socket's answers, station peers) and the log on stderr.
//   - WriteBytes: bytes of the page cache this process dirtied for a block
//     device, counted as pages (folios) turn dirty: what it caused to be
//     sent to the block layer, sockets excluded. On kernels that keep a
//     file's page cache in large folios (ext4 on 6.x), a 4 KB write into a
//     file counts the whole folio, up to 1 MB (docs/flash.md, "Counting
//     bytes"), so it can overstate the device's bytes many times.
//   - SyscW: write system calls (of any size, to any descriptor).
//
// Neither byte counter sees the file system's own writes (its journal,
// its metadata), made by kernel threads.
type Counters struct {
	WChar      uint64 `json:"wchar"`
	WriteBytes uint64 `json:"write_bytes"`
	SyscW      uint64 `json:"syscw"`
}

// Sub is the counters from b to c (c taken after b); a counter that went
// back (it never does in one process) counts 0.
func (c Counters) Sub(b Counters) Counters {
	d := func(x, y uint64) uint64 {
		if x < y {
			return 0
		}
		return x - y
	}
	return Counters{WChar: d(c.WChar, b.WChar), WriteBytes: d(c.WriteBytes, b.WriteBytes), SyscW: d(c.SyscW, b.SyscW)}
}

// ProcSelfIO is where the kernel shows the process's counters. It needs
// CONFIG_TASK_IO_ACCOUNTING (Debian's and most boards' kernels have it).
const ProcSelfIO = "/proc/self/io"

// ErrNoCounters: the kernel shows no write counters for this process
// (/proc/self/io absent or unreadable).
var ErrNoCounters = errors.New("wear: no write counters")

// ParseError is a /proc/self/io that does not read as the kernel writes it.
type ParseError struct {
	Line int // 1-based; 0 when a field is missing
	Msg  string
}

func (e *ParseError) Error() string {
	if e.Line == 0 {
		return "wear: /proc/self/io: " + e.Msg
	}
	return fmt.Sprintf("wear: /proc/self/io line %d: %s", e.Line, e.Msg)
}

// maxProcIO bounds what ParseProcIO reads: the kernel writes 7 short lines.
const maxProcIO = 4096

// ParseProcIO reads the counters from the text of /proc/self/io ("name:
// value" lines). The three counters must each be there once, as decimal
// numbers; other lines (rchar, syscr, read_bytes, …) are skipped. Any other
// shape is a *ParseError: a garbled file is never read as zero.
func ParseProcIO(b []byte) (Counters, error) {
	if len(b) > maxProcIO {
		return Counters{}, &ParseError{Msg: fmt.Sprintf("%d bytes, more than the kernel writes", len(b))}
	}
	var c Counters
	var seen [3]bool
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return Counters{}, &ParseError{Line: i + 1, Msg: "not a \"name: value\" line"}
		}
		var dst *uint64
		var k int
		switch name {
		case "wchar":
			dst, k = &c.WChar, 0
		case "write_bytes":
			dst, k = &c.WriteBytes, 1
		case "syscw":
			dst, k = &c.SyscW, 2
		default:
			continue
		}
		if seen[k] {
			return Counters{}, &ParseError{Line: i + 1, Msg: name + " given twice"}
		}
		n, err := strconv.ParseUint(strings.TrimSpace(value), 10, 64)
		if err != nil {
			return Counters{}, &ParseError{Line: i + 1, Msg: name + ": not a decimal count"}
		}
		*dst, seen[k] = n, true
	}
	for k, name := range []string{"wchar", "write_bytes", "syscw"} {
		if !seen[k] {
			return Counters{}, &ParseError{Msg: "no " + name}
		}
	}
	return c, nil
}

// ReadProcIO reads and parses the counters at path (ProcSelfIO); a file
// that cannot be read is ErrNoCounters, wrapped with the cause.
func ReadProcIO(path string) (Counters, error) {
	f, err := os.Open(path)
	if err != nil {
		return Counters{}, fmt.Errorf("%w: %w", ErrNoCounters, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxProcIO+1))
	if err != nil {
		return Counters{}, fmt.Errorf("%w: read %s: %w", ErrNoCounters, path, err)
	}
	return ParseProcIO(b)
}

// ReadSelf reads this process's counters from ProcSelfIO.
func ReadSelf() (Counters, error) { return ReadProcIO(ProcSelfIO) }
