//go:build linux

package fsaccess

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// nobody is an ordinary user that owns nothing here: numeric IDs, so the
// test needs no entry in /etc/passwd.
var nobody = User{Name: "nobody", UID: 65534, GID: 65534}

// openDir is a new temp directory every user may reach (t.TempDir's own
// directories are 0700).
func openDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("checking as another user through the kernel needs root (CI runs as root); TestModeBits covers the fallback")
	}
}

// TestCheckAsAnotherUser: diag, as root, asks whether the agent's user
// could write the cache's directory: the kernel answers for that user.
func TestCheckAsAnotherUser(t *testing.T) {
	needRoot(t)
	dir := filepath.Join(openDir(t), "state")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	m, err := Check(dir, Write|Search, nobody)
	if m != Kernel || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("root's 0755 directory as nobody: %s %v, want a kernel refusal (EACCES)", m, err)
	}
	var d *Denied
	if !errors.As(err, &d) || d.Path != dir || d.User.UID != 65534 {
		t.Fatalf("refusal %#v", err)
	}
	if _, err := Check(dir, Read|Search, nobody); err != nil {
		t.Fatalf("reading a 0755 directory as nobody: %v", err)
	}
	if err := os.Chown(dir, nobody.UID, nobody.GID); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(dir, Write|Search, nobody); err != nil {
		t.Fatalf("nobody's own directory: %v", err)
	}
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	if _, err := Check(dir, Write|Search, nobody); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("nobody's 0555 directory: %v, want EACCES", err)
	}
	// Group write counts for a member of the group, not for others.
	os.Chown(dir, 0, 4242)
	os.Chmod(dir, 0o770)
	if _, err := Check(dir, Write|Search, nobody); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("group 4242's directory, nobody not in it: %v", err)
	}
	member := nobody
	member.Groups = []int{4242}
	if _, err := Check(dir, Write|Search, member); err != nil {
		t.Fatalf("group 4242's directory, as a member: %v", err)
	}
	// Root is still root: the switch of IDs stayed on its own thread.
	if os.Geteuid() != 0 {
		t.Fatal("the process lost root")
	}
	if err := os.WriteFile(filepath.Join(t.TempDir(), "f"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestCheckLeavesOtherThreadsAlone: many checks as nobody while other
// goroutines write into a directory only root may write: none of them
// ever runs with nobody's IDs.
func TestCheckLeavesOtherThreadsAlone(t *testing.T) {
	needRoot(t)
	private := t.TempDir()
	os.Chmod(private, 0o700)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 200 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := Check(private, Write, nobody); !errors.Is(err, fs.ErrPermission) {
				errs <- err
			}
		}()
		go func() {
			defer wg.Done()
			f, err := os.CreateTemp(private, "w")
			if err != nil {
				errs <- err
				return
			}
			f.Close()
			_ = i
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("%v", err)
	}
}

// TestCheckReadOnlyMount: a directory the user owns, on a file system
// mounted read-only: not writable (EROFS), as the kernel says.
func TestCheckReadOnlyMount(t *testing.T) {
	needRoot(t)
	src, dst := openDir(t), openDir(t)
	os.Chown(src, nobody.UID, nobody.GID)
	if err := syscall.Mount(src, dst, "", syscall.MS_BIND, ""); err != nil {
		t.Skipf("cannot bind-mount here: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dst, syscall.MNT_DETACH) })
	if err := syscall.Mount("", dst, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	if ro, err := ReadOnly(dst); err != nil || !ro {
		t.Fatalf("ReadOnly = %v, %v", ro, err)
	}
	if _, err := Check(dst, Write|Search, nobody); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("read-only mount: %v, want EROFS", err)
	}
	if err := modeBits(dst, Write|Search, nobody); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("read-only mount by mode bits: %v, want EROFS", err)
	}
}

// TestModeBits: the fallback for a diag that is neither root nor the
// agent's user judges from ownership and permission bits.
func TestModeBits(t *testing.T) {
	st, err := os.Stat(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	owner := int(st.Sys().(*syscall.Stat_t).Uid)
	me := User{UID: owner, GID: 99999}
	if owner == 0 {
		me.UID = 54321 // not root: root passes mode bits
	}
	dir := filepath.Join(openDir(t), "d")
	os.Mkdir(dir, 0o755)
	if owner == 0 {
		os.Chown(dir, me.UID, 0)
	}
	if err := modeBits(dir, Write|Search, me); err != nil {
		t.Fatalf("own 0755 directory: %v", err)
	}
	os.Chmod(dir, 0o555)
	if err := modeBits(dir, Write, me); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("own 0555 directory: %v, want EACCES", err)
	}
	other := User{UID: 54322, GID: 99998}
	os.Chmod(dir, 0o775)
	if err := modeBits(dir, Write, other); !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("another's 0775 directory: %v, want EACCES", err)
	}
	if err := modeBits(filepath.Join(dir, "none"), Write, me); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
