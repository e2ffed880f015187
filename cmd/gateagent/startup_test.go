package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config/configtest"
	"gateagent/internal/syncbuf"
)

// asGateagent, set in a child's environment, makes the test binary run
// gateagent's main with the arguments after "--": the real command, in a
// process of its own, so that a panic or a fatal error shows as it would
// in the journal.
const asGateagent = "GATEAGENT_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asGateagent) == "1" {
		args := os.Args[1:]
		for i, a := range args {
			if a == "--" {
				args = args[i+1:]
				break
			}
		}
		os.Exit(run(args, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// gateagent is the command `gateagent args...` as a process of its own.
func gateagent(args ...string) *exec.Cmd {
	self := append([]string{"-test.run=^$", "--"}, args...)
	var cmd *exec.Cmd
	if wrap := os.Getenv("GATEAGENT_TEST_EXEC"); wrap != "" { // e.g. qemu-aarch64-static
		cmd = exec.Command(wrap, append([]string{os.Args[0]}, self...)...)
	} else {
		cmd = exec.Command(os.Args[0], self...)
	}
	cmd.Env = append(os.Environ(), asGateagent+"=1", "NOTIFY_SOCKET=")
	return cmd
}

// result is how a gateagent process ended.
type result struct {
	code           int
	stdout, stderr string
}

// runGateagent runs cmd to its end (at most 30 s) and checks that it
// ended as a program should: by its own exit, without a panic or a fatal
// runtime error.
func runGateagent(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var out, errOut syncbuf.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("gateagent %q still running after 30 s:\n%s", cmd.Args, errOut.String())
	}
	r := result{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
	noCrash(t, cmd.ProcessState, r.stderr)
	return r
}

// proc is a gateagent process left running: its stdout (the simulated
// board's printout) and stderr, and done, closed once it has exited.
type proc struct {
	cmd         *exec.Cmd
	out, errOut syncbuf.Buffer
	done        chan struct{}
}

// startGateagent starts cmd and kills it at the test's end if it still
// runs.
func startGateagent(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &p.out, &p.errOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

// noCrash fails the test when a process died of a signal or printed a Go
// panic or fatal error.
func noCrash(t *testing.T, st *os.ProcessState, stderr string) {
	t.Helper()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		t.Fatalf("gateagent died of signal %v:\n%s", ws.Signal(), stderr)
	}
	for _, crash := range []string{"panic:", "fatal error:", "goroutine "} {
		if strings.Contains(stderr, crash) {
			t.Fatalf("gateagent crashed (%q):\n%s", crash, stderr)
		}
	}
}

// simConfig writes a gate config on the simulated board into dir (its
// scanner and issuer absent: the agent starts without them) and returns
// its path. extra is appended to the file: sections that change a key.
func simConfig(t *testing.T, dir, cachePath, feedExtra string) string {
	t.Helper()
	return simConfigKeys(t, dir, cachePath, feedExtra, configtest.TOML(t, t.TempDir()))
}

// simConfigKeys is simConfig with the [keys] section given.
func simConfigKeys(t *testing.T, dir, cachePath, feedExtra, keys string) string {
	t.Helper()
	path := filepath.Join(dir, "gateagent.toml")
	err := os.WriteFile(path, []byte(fmt.Sprintf(`version = 1
[gate]
id = "T1"
cache = %q
[feed]
url = "http://127.0.0.1:1/"
trusted_keys = ["k1:7mGXx5JmBqUQ5q0dMbzBWcAq3nW0YcG1mJ2cQ0t3eKk="]
%s
[scanner]
port = %q
[hw]
kind = "sim"
[control]
socket = %q
%s`, cachePath, feedExtra, filepath.Join(dir, "no-scanner"), filepath.Join(dir, "control.sock"), keys)), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// openCache creates a gate's cache file in dir (under the test cache key,
// no certificate yet) and returns it open, and its path.
func openCache(t *testing.T, dir string) (*cache.Cache, string) {
	t.Helper()
	path := filepath.Join(dir, "cache.db")
	c, err := cache.Open(path, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	return c, path
}

// errorLines are the log's ERROR lines.
func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

// startFailure checks a start-up that must fail: the exit status, exactly
// one error line holding each of want, and the relay never on.
func startFailure(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d:\n%s", r.code, code, r.stderr)
	}
	errs := errorLines(r.stderr)
	if len(errs) != 1 {
		t.Fatalf("%d error lines, want one:\n%s", len(errs), r.stderr)
	}
	for _, w := range want {
		if !strings.Contains(errs[0], w) {
			t.Errorf("error line lacks %q:\n%s", w, errs[0])
		}
	}
	if !strings.Contains(errs[0], "fix=") {
		t.Errorf("error line says nothing about what to do:\n%s", errs[0])
	}
	if strings.Contains(r.stdout, "relay on") {
		t.Errorf("the relay moved: %q", r.stdout)
	}
}

func TestStartWithoutCacheDirectory(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "state")
	cfg := simConfig(t, dir, filepath.Join(missing, "cache.db"), "")
	r := runGateagent(t, gateagent("run", "--config", cfg))
	startFailure(t, r, exitConfig, missing, "no such file or directory", "create "+missing)
	// The lock comes first and needs the directory: nothing was opened,
	// so the board was never touched.
	if r.stdout != "" {
		t.Errorf("the board was touched: %q", r.stdout)
	}
	checkOut := runGateagent(t, gateagent("run", "--config", cfg, "--check", "--user", me(t)))
	if checkOut.code != exitConfig || !strings.Contains(checkOut.stderr, missing) {
		t.Errorf("run --check: exit %d, want %d naming %s:\n%s", checkOut.code, exitConfig, missing, checkOut.stderr)
	}
}

// TestStartWithUnwritableCache: the cache file belongs to another user.
// As root (CI), the agent runs as nobody; as an ordinary user, the file is
// made read-only.
func TestStartWithUnwritableCache(t *testing.T) {
	dir := t.TempDir()
	c, path := openCache(t, dir)
	c.Close()
	keysDir := t.TempDir()
	cfg := simConfigKeys(t, dir, path, "", configtest.TOML(t, keysDir))
	cmd := gateagent("run", "--config", cfg)
	as := me(t)
	if os.Getuid() == 0 {
		as = "nobody"
	}
	check := gateagent("run", "--config", cfg, "--check", "--user", as)
	if os.Getuid() == 0 {
		t.Log("running as root: the agent runs as nobody (uid 65534) in a state directory of its own; the cache stays root's, mode 0600")
		self := asNobody(t, dir)
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		// Its keys are its own (this test is about the cache).
		for _, name := range []string{"", "cache.key", "fleet.key"} {
			if err := os.Chown(filepath.Join(keysDir, name), 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}
		for _, c := range []*exec.Cmd{cmd, check} {
			c.Args[argIndex(c, os.Args[0])] = self
			if c.Path == os.Args[0] {
				c.Path = self
			}
			c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		}
	} else {
		os.Chmod(path, 0o400)
	}
	r := runGateagent(t, cmd)
	startFailure(t, r, exitConfig, path, "permission denied", "chown")
	if strings.Contains(r.stdout, "relay on") {
		t.Errorf("relay moved: %q", r.stdout)
	}
	rc := runGateagent(t, check)
	if rc.code != exitConfig || !strings.Contains(rc.stderr, "permission denied") {
		t.Errorf("run --check: exit %d, want %d with permission denied:\n%s%s", rc.code, exitConfig, rc.stdout, rc.stderr)
	}
}

// asNobody copies the test binary where user nobody can run it, and opens
// dir to it (but not its files), returning the copy's path.
func asNobody(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "gateagent.test")
	src, err := os.Open(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	// Every directory up to the root must be searchable by nobody.
	for d := dir; d != "/" && d != "."; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			mode := fi.Mode().Perm()
			os.Chmod(d, mode|0o005)
			t.Cleanup(func() { os.Chmod(d, mode) })
		}
	}
	return bin
}

func argIndex(cmd *exec.Cmd, s string) int {
	for i, a := range cmd.Args {
		if a == s {
			return i
		}
	}
	panic("argument " + s + " not found")
}

// TestStartWithCacheHeldByAnotherProcess: something other than an agent
// (a technician's gateagent cache stats, say) has the cache file open for
// writing: the agent waits a second, then exits for systemd to try again.
func TestStartWithCacheHeldByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	c, path := openCache(t, dir)
	defer c.Close()
	r := runGateagent(t, gateagent("run", "--config", simConfig(t, dir, path, "")))
	startFailure(t, r, exitTempFail, path, "locked", "another process has the cache file open")
	if !strings.HasPrefix(r.stdout, "hw: relay off\n") {
		t.Errorf("board output %q: the relay must have been driven off", r.stdout)
	}
}

func TestStartWithMissingCAFile(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "station-ca.pem")
	cfg := simConfig(t, dir, filepath.Join(dir, "cache.db"), fmt.Sprintf("ca_file = %q", ca))
	r := runGateagent(t, gateagent("run", "--config", cfg))
	startFailure(t, r, exitConfig, "feed.ca_file", ca, "no such file or directory", "put the CA file at "+ca)

	rc := runGateagent(t, gateagent("run", "--config", cfg, "--check", "--user", me(t)))
	if rc.code != exitConfig || !strings.Contains(rc.stderr, "feed.ca_file: keysync: CA file "+ca+": no such file or directory") {
		t.Errorf("run --check accepted a missing CA file: exit %d\n%s%s", rc.code, rc.stdout, rc.stderr)
	}
	os.WriteFile(ca, []byte("not PEM"), 0o644)
	rc = runGateagent(t, gateagent("run", "--config", cfg, "--check", "--user", me(t)))
	if rc.code != exitConfig || !strings.Contains(rc.stderr, "holds no PEM certificate") {
		t.Errorf("run --check accepted a CA file without a certificate: exit %d\n%s%s", rc.code, rc.stdout, rc.stderr)
	}
}

// TestSecondAgentTouchesNothing: a second agent on the same config finds
// the gate's lock held before it opens the board or the scanner port, and
// exits naming the first agent's process; the simulated board's journal
// (its stdout) shows no write by it.
func TestSecondAgentTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := simConfig(t, dir, filepath.Join(dir, "cache.db"), "")
	first := gateagent("run", "--config", cfg)
	var firstLog syncbuf.Buffer
	first.Stderr = &firstLog
	out, err := first.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Process.Kill(); first.Wait() })
	// The first agent printing its board's first line means it holds
	// the lock (taken before the board).
	lines := bufio.NewScanner(out)
	if !lines.Scan() || lines.Text() != "hw: relay off" {
		t.Fatalf("first agent: %q\n%s", lines.Text(), firstLog.String())
	}

	r := runGateagent(t, gateagent("run", "--config", cfg))
	startFailure(t, r, exitTempFail, "another gateagent (pid "+strconv.Itoa(first.Process.Pid)+") runs this gate", "stop the other agent")
	if r.stdout != "" {
		t.Errorf("the second agent touched the board: %q", r.stdout)
	}
	// run --check beside the running agent says so and passes.
	rc := runGateagent(t, gateagent("run", "--config", cfg, "--check", "--user", me(t)))
	if rc.code != 0 || !regexp.MustCompile(`held by a running agent`).MatchString(rc.stdout) {
		t.Errorf("run --check beside a running agent: exit %d\n%s%s", rc.code, rc.stdout, rc.stderr)
	}
	// The first agent is undisturbed: it stops cleanly.
	first.Process.Signal(syscall.SIGTERM)
	for lines.Scan() {
		if lines.Text() == "hw: relay on" {
			t.Errorf("the relay moved")
		}
	}
	if err := first.Wait(); err != nil {
		t.Errorf("first agent after SIGTERM: %v\n%s", err, firstLog.String())
	}
}

// me is the user the tests run as: what run --check and diag check access
// as, so that an agent's user on the machine (a package installed) does
// not change what the tests see.
func me(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}
