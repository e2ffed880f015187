//go:build linux

package pty

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"go.bug.st/serial"
	"golang.org/x/sys/unix"

	"gateagent/internal/eventually"
)

// wait bounds every blocking step: generous, because these tests also run
// under -race and under qemu-user.
const wait = 5 * time.Second

func open(t *testing.T) *Pair {
	t.Helper()
	p, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	if !strings.HasPrefix(p.SlavePath, "/dev/pts/") {
		t.Errorf("SlavePath = %q, want /dev/pts/N", p.SlavePath)
	}
	return p
}

func openSerial(t *testing.T, path string) serial.Port {
	t.Helper()
	port, err := serial.Open(path, &serial.Mode{BaudRate: 115200})
	if err != nil {
		t.Fatalf("serial.Open(%s): %v", path, err)
	}
	if err := port.SetReadTimeout(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	return port
}

// readN reads exactly n bytes from the port, within wait.
func readN(t *testing.T, port serial.Port, n int) []byte {
	t.Helper()
	var got []byte
	buf := make([]byte, 64)
	deadline := time.Now().Add(wait)
	for len(got) < n {
		if time.Now().After(deadline) {
			t.Fatalf("read %q from the serial port within %v, want %d bytes", got, wait, n)
		}
		k, err := port.Read(buf)
		if err != nil {
			t.Fatalf("serial read after %q: %v", got, err)
		}
		got = append(got, buf[:k]...)
	}
	return got
}

// roundTrip writes msg to Master and expects exactly msg from the port.
func roundTrip(t *testing.T, p *Pair, port serial.Port, msg string) {
	t.Helper()
	if _, err := p.Master.Write([]byte(msg)); err != nil {
		t.Fatalf("write Master: %v", err)
	}
	if got := readN(t, port, len(msg)); !bytes.Equal(got, []byte(msg)) {
		t.Fatalf("serial port read %q, want %q", got, msg)
	}
}

// noEcho checks that nothing comes back on Master: a cooked tty would echo
// the input there.
func noEcho(t *testing.T, p *Pair) {
	t.Helper()
	if err := p.Master.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	defer p.Master.SetReadDeadline(time.Time{})
	buf := make([]byte, 64)
	n, err := p.Master.Read(buf)
	if n > 0 {
		t.Errorf("Master echoed %q", buf[:n])
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read Master: %v, want a timeout", err)
	}
}

func TestSerialReadsWhatMasterWrites(t *testing.T) {
	p := open(t)
	port := openSerial(t, p.SlavePath)
	defer port.Close()

	roundTrip(t, p, port, "TR1:ABC \r")
	noEcho(t, p)
	// Raw: CR stays CR, NUL stays NUL, control characters are data (no
	// signals, no flow control, no erase), and 8-bit bytes pass untouched.
	roundTrip(t, p, port, "A\x00B\rC\nD\r\n\x03\x1a\x11\x13\x7f\x04\xff\x80 end\r")
	noEcho(t, p)
}

// The demo may type before the agent has opened the port: those bytes must
// neither be echoed nor cooked while they wait.
func TestRawBeforeTheSerialLibraryOpens(t *testing.T) {
	p := open(t)

	tio := termios(t, p.SlavePath)
	if tio.Lflag&(unix.ECHO|unix.ICANON|unix.ISIG|unix.IEXTEN) != 0 {
		t.Errorf("lflag %#o: echo, canonical mode or signals still on", tio.Lflag)
	}
	if tio.Iflag&(unix.ICRNL|unix.INLCR|unix.IGNCR|unix.IXON|unix.ISTRIP) != 0 {
		t.Errorf("iflag %#o: input translation still on", tio.Iflag)
	}
	if tio.Oflag&unix.OPOST != 0 {
		t.Errorf("oflag %#o: output processing still on", tio.Oflag)
	}
	if tio.Cflag&unix.CSIZE != unix.CS8 || tio.Cflag&unix.PARENB != 0 {
		t.Errorf("cflag %#o: not 8 bits without parity", tio.Cflag)
	}

	const early = "TR1:EARLY\r\x00"
	if _, err := p.Master.Write([]byte(early)); err != nil {
		t.Fatal(err)
	}
	noEcho(t, p)
	port := openSerial(t, p.SlavePath)
	defer port.Close()
	if got := readN(t, port, len(early)); string(got) != early {
		t.Errorf("read %q, want %q", got, early)
	}
}

// The scanner reader may close the port and open it again (after an error,
// say): TIOCEXCL must not lock it out, and Master must not hang up between.
func TestSerialReopen(t *testing.T) {
	p := open(t)
	for i := range 3 {
		port := openSerial(t, p.SlavePath)
		roundTrip(t, p, port, "TR1:AGAIN\r")
		if err := port.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
		noEcho(t, p) // a timeout, not EIO: no hang-up while the port is closed
		// Written while nobody has the port open: kept for the next opener.
		if _, err := p.Master.Write([]byte("queued\r")); err != nil {
			t.Fatalf("write Master with the port closed: %v", err)
		}
		port = openSerial(t, p.SlavePath)
		if got := readN(t, port, len("queued\r")); string(got) != "queued\r" {
			t.Errorf("read %q after reopening, want %q", got, "queued\r")
		}
		port.Close()
	}
}

func TestCloseLeaksNoDescriptors(t *testing.T) {
	cycle := func() {
		p, err := Open()
		if err != nil {
			t.Fatal(err)
		}
		port := openSerial(t, p.SlavePath)
		roundTrip(t, p, port, "TR1:ABC \r")
		if err := port.Close(); err != nil {
			t.Errorf("close the serial port: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	cycle() // the runtime's poller opens its own descriptors on first use
	before := openFDs(t)
	for range 3 {
		cycle()
	}
	if after := openFDs(t); len(after) != len(before) {
		t.Errorf("%d descriptors open before, %d after:\nbefore %v\nafter  %v", len(before), len(after), before, after)
	}
}

func TestCloseBothEnds(t *testing.T) {
	p := open(t)
	port := openSerial(t, p.SlavePath)
	defer port.Close()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Master.Write([]byte("x")); err == nil {
		t.Error("Master still writable after Close")
	}
	// With the master gone the port reports the hang-up instead of blocking.
	buf := make([]byte, 8)
	eventually.True(t, wait, "the serial port reports the pty's hang-up", func() bool {
		n, err := port.Read(buf)
		return err != nil || n > 0
	})
}

func termios(t *testing.T, path string) *unix.Termios {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	tio, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		t.Fatal(err)
	}
	return tio
}

// openFDs lists this process's open descriptors with what they point to.
func openFDs(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		target, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds = append(fds, e.Name()+"→"+target)
	}
	return fds
}
