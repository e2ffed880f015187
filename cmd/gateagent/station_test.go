package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/internal/eventually"
	"gateagent/station/stationtest"
)

// stationConfig is simConfig with a [station] section: this gate T1 and
// one peer T2 that does not answer.
func stationConfig(t *testing.T, dir, keyFile, bind string) string {
	t.Helper()
	path := simConfig(t, dir, filepath.Join(dir, "cache.db"), "")
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, `[station]
group = "TEST"
gates = ["T1", "T2"]
bind = %q
seeds = ["127.0.0.9:1"]
key_files = [%q]
join_timeout = "300ms"
`, bind, keyFile)
	return path
}

// TestStationKeyRefused: a station key that others can read, or that is
// not there, stops the gate at start with the file and what to do; run
// --check says the same.
func TestStationKeyRefused(t *testing.T) {
	dir := t.TempDir()
	key := stationtest.KeyFile(t, stationtest.Key(t))
	if err := os.Chmod(key, 0o640); err != nil {
		t.Fatal(err)
	}
	cfg := stationConfig(t, dir, key, stationtest.FreeAddr(t, "127.0.0.1"))
	r := runGateagent(t, gateagent("run", "--config", cfg))
	startFailure(t, r, exitConfig, "station.key_files", key, "readable by others", "chmod 0600 "+key)
	rc := runGateagent(t, gateagent("run", "--config", cfg, "--check", "--user", me(t)))
	if rc.code != exitConfig || !strings.Contains(rc.stderr, "station.key_files") || !strings.Contains(rc.stderr, "chmod 0600") {
		t.Errorf("run --check accepted a group-readable key: exit %d\n%s%s", rc.code, rc.stdout, rc.stderr)
	}
	missing := filepath.Join(dir, "none.key")
	cfg = stationConfig(t, dir, missing, stationtest.FreeAddr(t, "127.0.0.1"))
	r = runGateagent(t, gateagent("run", "--config", cfg))
	startFailure(t, r, exitConfig, "station.key_files", missing, "copy the group's station key to "+missing)
}

// TestStationBindRefused: an address that is not the board's stops the
// gate at start, naming station.bind.
func TestStationBindRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := stationConfig(t, dir, stationtest.KeyFile(t, stationtest.Key(t)), "192.0.2.1:7946")
	r := runGateagent(t, gateagent("run", "--config", cfg))
	startFailure(t, r, exitConfig, "station.bind", "check station.bind (192.0.2.1:7946)")
}

// TestRunWithoutStationPeers: no peer answers: after station.join_timeout
// the gate is in service on its own and says so; run --check notes the
// group.
func TestRunWithoutStationPeers(t *testing.T) {
	dir := t.TempDir()
	cfg := stationConfig(t, dir, stationtest.KeyFile(t, stationtest.Key(t)), stationtest.FreeAddr(t, "127.0.0.1"))
	rc := runGateagent(t, gateagent("run", "--config", cfg, "--check", "--user", me(t)))
	if rc.code != 0 || !strings.Contains(rc.stdout, "station: group TEST: 2 gates, 1 seeds") {
		t.Fatalf("run --check: exit %d\n%s%s", rc.code, rc.stdout, rc.stderr)
	}
	r := startRunning("run", "--config", cfg)
	errOut := &r.log
	// The scanner opens after the join timeout, and the log says the gate
	// runs without its peers (its issuer is absent too: it waits for the
	// first key sync).
	if !eventually.Within(10*time.Second, func() bool {
		return strings.Contains(errOut.String(), "no station peer reachable") && strings.Contains(errOut.String(), "waiting for the first key sync")
	}) {
		t.Errorf("the log does not say the gate runs without its peers:\n%s", errOut.String())
	}
	r.sigterm(t)
}
