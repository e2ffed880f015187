//go:build linux

package pty

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Open opens a new pty pair: the master through /dev/ptmx, the slave as
// /dev/pts/N, set raw (no echo, no CR/LF translation, 8-bit clean).
//
// The raw mode has to be set here, before anyone opens SlavePath: a new
// pty starts cooked, so bytes written to Master before the serial library
// has opened the port (and set its own raw mode) would be echoed back into
// Master and have their CR turned into LF.
//
// The Pair then keeps a descriptor of its own on the slave until Close.
// Closing it straight away would work too (the pts number, its settings
// and any unread input all live as long as Master is open), but while no
// descriptor is open on a slave that has been opened before, Linux reports
// a hang-up on the master: reads on Master fail with EIO. Having opened the
// slave to set it raw, that would be so from the moment Open returned, and
// again whenever the serial library closes the port to reopen it. Holding
// the slave keeps Master quiet and usable throughout.
//
// That descriptor is opened with O_NOCTTY (it never becomes anyone's
// controlling terminal) and is never read, so everything written to Master
// goes to whoever opens SlavePath. go.bug.st/serial sets TIOCEXCL when it
// opens the port; that refuses later opens (by anyone without
// CAP_SYS_ADMIN), not descriptors already open like this one, and the
// library clears it (TIOCNXCL) in Close, so the port can be reopened. The
// tests open, close and reopen the port with go.bug.st/serial.
func Open() (*Pair, error) {
	// os.OpenFile adds O_CLOEXEC itself and registers the descriptor with
	// the runtime poller, so Master honours read and write deadlines.
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("pty: %w", err) // "pty: open /dev/ptmx: …"
	}
	n, err := unlock(master)
	if err != nil {
		master.Close()
		return nil, err
	}
	path := "/dev/pts/" + strconv.FormatUint(uint64(n), 10)
	slave, err := os.OpenFile(path, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		return nil, fmt.Errorf("pty: open the slave: %w", err)
	}
	if err := makeRaw(slave); err != nil {
		slave.Close()
		master.Close()
		return nil, fmt.Errorf("pty: set %s raw: %w", path, err)
	}
	return &Pair{Master: master, SlavePath: path, slave: slave}, nil
}

// unlock unlocks the slave (TIOCSPTLCK 0) and returns its number
// (TIOCGPTN). The ioctls go through SyscallConn: (*os.File).Fd would put
// the descriptor back in blocking mode and so disable deadlines.
func unlock(master *os.File) (uint32, error) {
	rc, err := master.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("pty: /dev/ptmx: %w", err)
	}
	var n uint32
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		if e := unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); e != nil {
			ioErr = fmt.Errorf("pty: unlock /dev/ptmx (TIOCSPTLCK): %w", e)
			return
		}
		if n, ioErr = unix.IoctlGetUint32(int(fd), unix.TIOCGPTN); ioErr != nil {
			ioErr = fmt.Errorf("pty: get the pty number (TIOCGPTN): %w", ioErr)
		}
	})
	if err != nil {
		return 0, fmt.Errorf("pty: /dev/ptmx: %w", err)
	}
	return n, ioErr
}

// makeRaw does what cfmakeraw(3) does, through TCGETS/TCSETS.
func makeRaw(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		t, e := unix.IoctlGetTermios(int(fd), unix.TCGETS)
		if e != nil {
			ioErr = fmt.Errorf("TCGETS: %w", e)
			return
		}
		t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
		t.Oflag &^= unix.OPOST
		t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
		t.Cflag &^= unix.CSIZE | unix.PARENB
		t.Cflag |= unix.CS8
		t.Cc[unix.VMIN] = 1
		t.Cc[unix.VTIME] = 0
		if e := unix.IoctlSetTermios(int(fd), unix.TCSETS, t); e != nil {
			ioErr = fmt.Errorf("TCSETS: %w", e)
		}
	})
	if err != nil {
		return err
	}
	return ioErr
}
