package scannertest_test

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
	"testing"
	"time"

	"gateagent/scanner/scannertest"
)

// readN reads n bytes from f within 3 s.
func readN(f *os.File, n int) (string, error) {
	if err := f.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return "", err
	}
	buf := make([]byte, 0, n)
	for len(buf) < n {
		m, err := f.Read(buf[len(buf):n])
		buf = buf[:len(buf)+m]
		if err != nil {
			return string(buf), err
		}
	}
	return string(buf), nil
}

func TestSocat(t *testing.T) {
	s := scannertest.Start(t)
	dev, err := os.OpenFile(s.Dev, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	peer := s.OpenPeer(t)
	if _, err := peer.Write([]byte("A\x00B \r\n\xff")); err != nil {
		t.Fatal(err)
	}
	if got, err := readN(dev, 7); got != "A\x00B \r\n\xff" || err != nil {
		t.Fatalf("read %q, %v through the pair, want every byte as written", got, err)
	}

	s.Kill(t)
	for _, p := range []string{s.Dev, s.Peer} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after Kill: %v, want it gone", p, err)
		}
	}
	s.Restart(t)
	for _, p := range []string{s.Dev, s.Peer} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s after Restart: %v", p, err)
		}
	}
}
