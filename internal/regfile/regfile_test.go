package regfile_test

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gateagent/internal/regfile"
)

// Every kind of file that is not a regular one is refused at once, each
// named; a FIFO with no writer does not block the open.
func TestNotRegularRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	loop := filepath.Join(dir, "loop")
	os.Symlink(loop, loop)
	for _, tc := range []struct{ path, kind string }{
		{fifo, "a FIFO"},
		{dir, "a directory"},
		{"/dev/zero", "a character device"},
		{sock, ""}, // a socket cannot be opened at all
		{loop, ""},
		{filepath.Join(dir, "absent"), ""},
	} {
		_, err := regfile.ReadFile(tc.path, 1<<10)
		if err == nil {
			t.Fatalf("%s: read", tc.path)
		}
		if tc.kind == "" {
			if errors.Is(err, regfile.ErrNotRegular) {
				t.Errorf("%s: %v, want the open's own error", tc.path, err)
			}
			continue
		}
		if !errors.Is(err, regfile.ErrNotRegular) || !strings.Contains(err.Error(), tc.kind) || !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: %v, want ErrNotRegular naming %s and the path", tc.path, err, tc.kind)
		}
	}
}

func TestReadFileBounded(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := regfile.ReadFile(p, 10); err != nil || string(b) != "0123456789" {
		t.Fatalf("%q %v", b, err)
	}
	_, err := regfile.ReadFile(p, 9)
	var pe *fs.PathError
	if !errors.Is(err, regfile.ErrTooLarge) || !errors.As(err, &pe) || pe.Path != p {
		t.Fatalf("over the limit: %v", err)
	}
	link := p + ".link"
	os.Symlink(p, link)
	if b, err := regfile.ReadFile(link, 10); err != nil || len(b) != 10 {
		t.Fatalf("through a symbolic link: %q %v", b, err)
	}
}
