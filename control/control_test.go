package control_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"gateagent/control"
	"log/slog"
)

func serve(t *testing.T, path string, h http.Handler) (stop func()) {
	t.Helper()
	l, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, l, h, slog.New(slog.DiscardHandler)) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
}

func TestRoundTripWithPeer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.sock")
	stop := serve(t, path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := control.PeerOf(r)
		fmt.Fprintf(w, "%s %v %d", r.URL.Path, p.Known, p.UID)
	}))
	defer stop()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want 0660", fi.Mode().Perm())
	}
	c := control.NewClient(path)
	if !c.Alive(context.Background()) {
		t.Fatal("agent not alive")
	}
	resp, err := c.Do(context.Background(), http.MethodGet, "/status", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("/status true %d", os.Getuid()); string(b) != want {
		t.Errorf("got %q, want %q", b, want)
	}
}

func TestStaleSocketReplacedLiveOneRefused(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "control.sock")
	// A socket file left by an agent that died: nobody listens on it.
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	stop := serve(t, path, http.NotFoundHandler())
	// A second agent on the same socket is refused while the first runs.
	if _, err := control.Listen(path); err == nil || !strings.Contains(err.Error(), "another gateagent") {
		t.Errorf("second Listen: %v", err)
	}
	stop()

	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("x"), 0o600)
	if _, err := control.Listen(plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a plain file: %v", err)
	}
	if _, err := control.Listen(filepath.Join(dir, "no", "such", "dir.sock")); err == nil || !strings.Contains(err.Error(), "RuntimeDirectory") {
		t.Errorf("Listen in a missing directory: %v", err)
	}
}

func TestNobodyThere(t *testing.T) {
	c := control.NewClient(filepath.Join(t.TempDir(), "none.sock"))
	if c.Alive(context.Background()) {
		t.Fatal("alive without an agent")
	}
}

// childEnv makes the test binary a client that pings the socket named
// in it and exits 3 when the agent answered, 4 when permission was
// denied, 5 otherwise.
const childEnv = "GATEAGENT_CONTROL_PING"

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		err := control.NewClient(path).Ping(context.Background())
		switch {
		case err == nil:
			os.Exit(3)
		case errors.Is(err, fs.ErrPermission):
			os.Exit(4)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(5)
	}
	os.Exit(m.Run())
}

// TestPermissionDenied: a user outside the socket's group is told that,
// not that no agent runs. The client runs as another user: as nobody
// when the test runs as root (as in CI), else as this user against a
// socket it may not open.
func TestPermissionDenied(t *testing.T) {
	// A directory anyone may enter, holding a copy of this test binary
	// that anyone may run.
	dir, err := os.MkdirTemp("", "control-perm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "control.test")
	exe, _ := os.ReadFile(os.Args[0])
	if err := os.WriteFile(bin, exe, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "control.sock")
	stop := serve(t, path, http.NotFoundHandler())
	defer stop()

	ping := func() int {
		t.Helper()
		var cmd *exec.Cmd
		if wrap := os.Getenv("GATEAGENT_TEST_EXEC"); wrap != "" { // e.g. qemu-aarch64-static
			cmd = exec.Command(wrap, bin)
		} else {
			cmd = exec.Command(bin)
		}
		cmd.Env = append(os.Environ(), childEnv+"="+path)
		if os.Getuid() == 0 {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
		out, _ := cmd.CombinedOutput()
		if cmd.ProcessState == nil {
			t.Fatalf("client did not run: %s", out)
		}
		code := cmd.ProcessState.ExitCode()
		if code == 5 {
			t.Logf("client: %s", out)
		}
		return code
	}
	os.Chmod(path, 0o666)
	if code := ping(); code != 3 {
		t.Fatalf("client with permission: exit %d, want 3 (the agent answered)", code)
	}
	os.Chmod(path, 0o660) // the agent's mode: root and the agent's group
	if os.Getuid() != 0 {
		os.Chmod(path, 0) // this user owns it: take its own permission away
	}
	if code := ping(); code != 4 {
		t.Fatalf("client without permission: exit %d, want 4 (permission denied)", code)
	}
}
