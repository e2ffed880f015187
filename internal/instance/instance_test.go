package instance

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSecondAcquireIsTurnedAway(t *testing.T) {
	path := PathFor(filepath.Join(t.TempDir(), "cache.db"))
	l, err := Acquire(path)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to an open file description: a second open in
	// this process conflicts as another process's would.
	_, err = Acquire(path)
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) {
		t.Fatalf("second Acquire: %v, want a *HeldError", err)
	}
	if held.PID != os.Getpid() || held.Path != path {
		t.Errorf("held by %+v, want pid %d at %s", held, os.Getpid(), path)
	}
	if want := "another gateagent (pid " + strconv.Itoa(os.Getpid()) + ") runs this gate"; !strings.Contains(err.Error(), want) {
		t.Errorf("message %q lacks %q", err, want)
	}
	if _, err := Share(path); !errors.Is(err, ErrHeld) {
		t.Fatalf("Share beside an agent: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	l2, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	l2.Release()
}

func TestShare(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, FileName)
	l, err := Share(path)
	if err != nil {
		t.Fatalf("Share with no lock file: %v", err)
	}
	l.Release()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Share created the lock file (%v): one made by root would keep the agent out", err)
	}
	// While a sharer holds the lock, an agent cannot start; the process
	// ID in the file is a previous agent's, long gone, and is not named.
	os.WriteFile(path, []byte("999999999\n"), 0o640)
	l, err = Share(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Acquire(path)
	var held *HeldError
	if !errors.As(err, &held) || held.PID != 0 {
		t.Errorf("Acquire beside a sharer: %v (%+v)", err, held)
	}
	// Two sharers share it.
	l2, err := Share(path)
	if err != nil {
		t.Fatalf("second sharer: %v", err)
	}
	l2.Release()
	l.Release()
	a, err := Acquire(path)
	if err != nil {
		t.Fatalf("Acquire after the sharers left: %v", err)
	}
	a.Release()
}

func TestAcquireMissingDirectory(t *testing.T) {
	_, err := Acquire(filepath.Join(t.TempDir(), "none", FileName))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want ErrNotExist", err)
	}
}
