package control_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
