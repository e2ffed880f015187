package agent_test

// The gate's health tells the truth: /healthz, /status and diag say the
// gate is out of service whenever it cannot grant (its event log cannot be
// written, it never synced, its cache is stale and refused), and it comes
// back by itself, within seconds, when the cause goes.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"gateagent/config"
	"gateagent/control"
	"gateagent/diag"
	"gateagent/gate"
	"gateagent/internal/eventually"
	"gateagent/internal/kclock"
	"gateagent/metrics"
	"gateagent/verify"
)

// withSocket adds a control socket in a temp dir to o's config changes.
func withSocket(t *testing.T, o stationOpts) (stationOpts, string) {
	sock := filepath.Join(t.TempDir(), "control.sock")
	mod := o.mod
	o.mod = func(c *config.Config) {
		c.Control.Socket = sock
		if mod != nil {
			mod(c)
		}
	}
	return o, sock
}

// waitSocket waits until the agent's control socket answers.
func waitSocket(t *testing.T, sock string) {
	t.Helper()
	eventually.True(t, 10*time.Second, "the agent's control socket answers", func() bool {
		return control.NewClient(sock).Alive(context.Background())
	})
}

// get asks the running agent over its control socket.
func get(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	resp, err := control.NewClient(sock).Do(context.Background(), http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitHealth waits until /healthz answers code, and fails after within.
func waitHealth(t *testing.T, sock string, code int, within time.Duration) string {
	t.Helper()
	var c int
	var body string
	if !eventually.Within(within, func() bool {
		c, body = get(t, sock, "/healthz")
		return c == code
	}) {
		t.Fatalf("/healthz still %d %q after %v, want %d", c, body, within, code)
	}
	return body
}

// serviceCheck runs `gateagent diag --json` against the running agent and
// returns its service and cache checks.
func serviceCheck(t *testing.T, sock string) (service, cacheCheck diag.Check) {
	t.Helper()
	_, out, errs := runDiag(t, sock, "--json")
	var r diag.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("no report (%v): %s %s", err, out, errs)
	}
	service, _ = r.Find(diag.NameService)
	cacheCheck, _ = r.Find(diag.NameCache)
	return service, cacheCheck
}

// next waits for the next Granted or Denied outcome, skipping others.
func (st *station) next() gate.Outcome {
	st.t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case o := <-st.outcomes:
			if o.Kind == gate.Granted || o.Kind == gate.Denied {
				return o
			}
		case <-timeout:
			st.t.Fatal("no decision within 10 s")
		}
	}
}

// smallFS mounts a 1 MiB tmpfs for the test and unmounts it in cleanup,
// also when the test fails. It needs root (CI runs as root).
func smallFS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a disk that fills up needs a small tmpfs, which needs root (CI runs as root); the gate's TestRecordFault* tests cover the logic with a failing event log")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, "size=1m,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v): the gate's TestRecordFault* tests cover the logic with a failing event log", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount the test's tmpfs %s: %v", dir, err)
		}
	})
	t.Logf("the cache is on a 1 MiB tmpfs at %s", dir)
	return dir
}

// fill writes a file until the file system holding dir is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{64 << 10, 4 << 10, 512} {
		buf := make([]byte, n)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return path
}

// TestDiskFullIsUnhealthyAndRecovers: the disk holding the cache fills up.
// The first valid code that cannot be recorded is refused, and from that
// moment /healthz, /status and diag say the gate is out of service and
// why; once space is freed the gate is healthy again without a restart
// (and with nobody scanning), and the next valid code is granted.
func TestDiskFullIsUnhealthyAndRecovers(t *testing.T) {
	dir := smallFS(t)
	// Segments of the journal's log of 8 records: a grant fills one
	// within a few scans, and the next must be made on the full disk.
	// The cache's delta (beside cache.db) preallocates its segments too:
	// the default's megabytes cannot fit the 1 MiB disk, so it gets 64 KiB
	// ones.
	o, sock := withSocket(t, stationOpts{noStart: true, journalSegment: 8 * 4096, deltaSegment: 16 * 4096, mod: func(c *config.Config) {
		c.Gate.Cache = filepath.Join(dir, "cache.db")
		c.Timing.PassTimeout = 100 * time.Millisecond
	}})
	st := newStation(t, o)
	// The issuer takes no upload, so that the event log must grow (an
	// upload's acknowledgement gives segments back for reuse).
	var noUploads atomic.Bool
	st.srv.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/events" && noUploads.Load() {
				http.Error(w, "not now", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	st.srv.Restart()
	st.start(nil, nil)
	waitSocket(t, sock)
	c := st.issue()
	waitHealth(t, sock, http.StatusOK, 10*time.Second)
	noUploads.Store(true)
	filler := fill(t, dir)

	// Valid codes, each left to lapse, until one cannot be recorded.
	grants := 0
	var refused gate.Outcome
	for refused.Kind == 0 {
		if grants > 1000 {
			t.Fatal("1000 grants recorded on a full disk")
		}
		st.write(st.token(c.ID, time.Now()) + "\r")
		switch o := st.next(); o.Kind {
		case gate.Granted:
			grants++
			st.want(gate.Lapsed)
		default:
			refused = o
		}
	}
	refusedAt := time.Now()
	if refused.Decision.Reason != verify.Undecided || refused.Decision.CertID != c.ID || !errors.Is(refused.Err, syscall.ENOSPC) {
		t.Fatalf("refusal %+v (%v), want the valid code refused for want of space", refused.Decision, refused.Err)
	}
	if got := strings.Count(levels(st.relayOuts()), "U"); got != grants {
		t.Fatalf("relay unlocked %d times for %d recorded grants: the unrecorded one moved it", got, grants)
	}
	t.Logf("%d grants were recorded on the full disk before one could not be", grants)

	body := waitHealth(t, sock, http.StatusServiceUnavailable, time.Second)
	if d := time.Since(refusedAt); d > time.Second {
		t.Errorf("/healthz unhealthy %v after the refused grant, want within 1 s", d)
	} else {
		t.Logf("/healthz unhealthy %v after the refused grant", d.Round(time.Microsecond))
	}
	if !strings.Contains(body, "not_recording") || !strings.Contains(body, "no space left on device") || !strings.Contains(body, "run gateagent diag") {
		t.Errorf("/healthz body %q", body)
	}
	var status metrics.Status
	if _, b := get(t, sock, "/status"); json.Unmarshal([]byte(b), &status) != nil || status.Healthy || len(status.Problems) == 0 || status.Gate.RecordFault == "" {
		t.Errorf("/status while the disk is full: healthy %v, problems %+v", status.Healthy, status.Problems)
	}
	service, cacheCheck := serviceCheck(t, sock)
	if service.Status != diag.Fail || !strings.Contains(service.Line, "grants cannot be recorded") || !strings.Contains(service.Line, "the disk is full: free space on "+dir) {
		t.Errorf("diag service: %s %s", service.Status, service.Line)
	}
	if cacheCheck.Status != diag.Fail || !strings.Contains(cacheCheck.Line, "the event log cannot be written") {
		t.Errorf("diag cache: %s %s", cacheCheck.Status, cacheCheck.Line)
	}
	if code, _, _ := runDiag(t, sock); code != 2 {
		t.Errorf("diag exit %d while the disk is full, want 2", code)
	}

	// Space freed: nobody scans, and the gate recovers by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	waitHealth(t, sock, http.StatusOK, 3*gate.RecordProbe)
	t.Logf("/healthz ok %v after the space was freed, with nobody scanning", time.Since(freed).Round(time.Millisecond))
	if service, _ := serviceCheck(t, sock); service.Status != diag.Pass {
		t.Errorf("diag service after the space was freed: %s %s", service.Status, service.Line)
	}
	st.write(st.token(c.ID, time.Now()) + "\r")
	if o := st.next(); o.Kind != gate.Granted {
		t.Fatalf("after the space was freed: %v %v (%v), want granted", o.Kind, o.Decision.Reason, o.Err)
	}
	var outage bool
	evs, _ := st.ag.Journal().Events(0, 100000)
	for _, e := range evs {
		outage = outage || strings.Contains(e.Detail, "event log could not be written")
	}
	if !outage {
		t.Error("the outage is not in the event log")
	}
	// "gate in service" is logged by the readiness watch, up to a second
	// after the state it reports (watchReadiness): wait for the lines.
	for _, line := range []string{"the event log cannot be written", "gate out of service", "the event log can be written again", "gate in service"} {
		if !st.logged(line) {
			t.Errorf("the log lacks %q", line)
		}
	}
}

// TestNeverSyncedIsNotInService: a gate that has never reached its issuer
// knows no certificate: it runs, but is unhealthy and says it waits for
// its first key sync; "gate in service" comes with that sync.
func TestNeverSyncedIsNotInService(t *testing.T) {
	o, sock := withSocket(t, stationOpts{noStart: true})
	st := newStation(t, o)
	st.srv.Stop()
	st.start(nil, nil)
	waitSocket(t, sock)
	body := waitHealth(t, sock, http.StatusServiceUnavailable, time.Second)
	if !strings.Contains(body, "never_synced: waiting for the first key sync") {
		t.Errorf("/healthz: %q", body)
	}
	if service, _ := serviceCheck(t, sock); service.Status != diag.Fail || !strings.Contains(service.Line, "waiting for the first key sync") {
		t.Errorf("diag service: %s %s", service.Status, service.Line)
	}
	// The first verdict is logged once the scanner's port has been tried,
	// which may come after the control socket answers.
	if !st.logged("waiting for the first key sync") ||
		strings.Contains(st.logs.String(), "gate in service") {
		t.Fatalf("log before the first sync:\n%s", st.logs.String())
	}

	st.srv.Restart()
	waitHealth(t, sock, http.StatusOK, 10*time.Second)
	// The agent looks every second.
	if !st.logged("gate in service") {
		t.Fatalf("no \"gate in service\" within 5 s of the first sync:\n%s", st.logs.String())
	}
	logs := st.logs.String()
	if strings.Index(logs, "waiting for the first key sync") > strings.Index(logs, "gate in service") {
		t.Error("\"gate in service\" came before the wait for the first sync")
	}
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
}

// TestStaleOutageRecoversWithinSeconds: with refuse_when_stale, the issuer
// goes away until the cache is stale and the feed's backoff has grown;
// when it comes back the gate grants again within 10 s.
func TestStaleOutageRecoversWithinSeconds(t *testing.T) {
	// The gate's clock is moved on half an hour when the issuer goes: its
	// cache turns stale at once, and the test need not wait the feed's
	// max age. Codes are checked on the issuer's clock (the offset the
	// gate learns), so they stay valid.
	var ahead atomic.Int64
	o, sock := withSocket(t, stationOpts{
		now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) },
		mod: func(c *config.Config) {
			c.Feed.RefuseWhenStale = true
			c.Timing.PassTimeout = 100 * time.Millisecond
		}})
	st := newStation(t, o)
	waitSocket(t, sock)
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
	st.want(gate.Lapsed)

	st.srv.Stop()
	ahead.Store(int64(31 * time.Minute))
	body := waitHealth(t, sock, http.StatusServiceUnavailable, time.Second)
	if !strings.Contains(body, "stale:") {
		t.Errorf("/healthz of a stale gate that refuses: %q", body)
	}
	// The outage lasts: rounds fail, the cache stale and refused.
	if !eventually.Within(30*time.Second, func() bool { f := st.ag.Feed().Status(); return f.Failures >= 3 && f.Refusing }) {
		t.Fatalf("not three failed rounds of a refusing gate within 30 s: %+v", st.ag.Feed().Status())
	}
	if !st.logged("every code is refused (refuse_when_stale)") {
		t.Errorf("no stale alarm in the log:\n%s", st.logs.String())
	}

	st.srv.Restart()
	back := time.Now()
	if !eventually.Within(10*time.Second, func() bool { return !st.ag.Feed().Status().Refusing }) {
		t.Fatalf("still refusing 10 s after the issuer came back: %+v", st.ag.Feed().Status())
	}
	st.write(st.token(c.ID, time.Now()) + "\r")
	if o := st.next(); o.Kind != gate.Granted {
		t.Fatalf("the first code once the cache is fresh: %v %v (%v), want granted", o.Kind, o.Decision.Reason, o.Err)
	}
	t.Logf("granted again %v after the issuer came back", time.Since(back).Round(time.Millisecond))
	if !st.logged("key cache fresh again") {
		t.Error("no line that the cache is fresh again")
	}
}

// TestDiagClockBlamesTheIssuer: the issuer's clock runs 2 h fast. The
// gate, whose own clock is synchronised, follows it and refuses a
// passenger's code as stale: diag clock, through the running agent, blames
// the issuer, counts the refusal and says the offset is applied. With the
// gate's clock not synchronised it blames the gate.
func TestDiagClockBlamesTheIssuer(t *testing.T) {
	var synced atomic.Bool
	synced.Store(true)
	o, sock := withSocket(t, stationOpts{clockState: func() (kclock.State, error) {
		if synced.Load() {
			return kclock.State{Synced: true, MaxError: 30 * time.Millisecond}, nil
		}
		return kclock.State{Unsync: true, MaxError: 16 * time.Second}, nil
	}})
	st := newStation(t, o)
	waitSocket(t, sock)
	st.shift.Store(int64(2 * time.Hour))
	eventually.True(t, 10*time.Second, "the gate learns the issuer's 2 h offset", func() bool {
		off, ok := st.ag.Feed().Offset()
		return ok && off >= 2*time.Hour-time.Minute
	})
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r") // the phone keeps real time
	if o := st.want(gate.Denied); o.Decision.Reason != verify.CodeStale {
		t.Fatalf("denied as %v, want CODE_STALE", o.Decision.Reason)
	}

	code, out, errs := runDiag(t, sock, "clock")
	if code != 2 {
		t.Errorf("diag clock: exit %d, want 2\n%s%s", code, out, errs)
	}
	for _, want := range []string{"FAIL  clock", "the issuer's clock is wrong", "2h0m0s ahead of the gate's",
		"the offset learnt from the feed is applied", "1 code refused as CODE_STALE and 0 as CODE_FROM_FUTURE in the last hour (counted by the agent)",
		"fix the issuer's clock"} {
		if !strings.Contains(out, want) {
			t.Errorf("diag clock does not say %q:\n%s", want, out)
		}
	}
	synced.Store(false)
	code, out, _ = runDiag(t, sock, "clock")
	if code != 1 || !strings.Contains(out, "not synchronised") || !strings.Contains(out, "check NTP") || strings.Contains(out, "issuer's clock is wrong") {
		t.Errorf("diag clock with the gate unsynchronised: exit %d\n%s", code, out)
	}
}

// TestScannerUnpluggedIsNotInService: the scanner's port vanishes (socat
// killed, as a USB scanner unplugged): no code can be read, so /healthz
// says 503 scanner_absent, diag's service check fails naming the scanner,
// and the log says the gate is out of service.
// socat back, the agent reopens the port and is in service again without
// a restart, and grants.
func TestScannerUnpluggedIsNotInService(t *testing.T) {
	o, sock := withSocket(t, stationOpts{})
	st := newStation(t, o)
	waitSocket(t, sock)
	waitHealth(t, sock, http.StatusOK, 10*time.Second)

	st.tty.Kill(t)
	body := waitHealth(t, sock, http.StatusServiceUnavailable, 5*time.Second)
	if !strings.Contains(body, "scanner_absent: the scanner is not connected") {
		t.Errorf("/healthz without the scanner: %q", body)
	}
	if service, _ := serviceCheck(t, sock); service.Status != diag.Fail || !strings.Contains(service.Line, "the scanner is not connected") {
		t.Errorf("diag service: %s %s", service.Status, service.Line)
	}
	if !eventually.Within(3*time.Second, func() bool {
		return strings.Contains(st.logs.String(), "gate out of service") && strings.Contains(st.logs.String(), "the scanner is not connected")
	}) {
		t.Errorf("the log does not say the gate is out of service:\n%s", st.logs.String())
	}

	st.tty.Restart(t)
	st.peer = st.tty.OpenPeer(t)
	waitHealth(t, sock, http.StatusOK, 10*time.Second)
	st.waitConnected()
	c := st.issue()
	st.write(st.token(c.ID, time.Now()) + "\r")
	st.want(gate.Granted)
}

// TestClockDisputedByPassengers: the issuer's signed clock runs 2 h fast
// and the gate follows it (it is the clock the gate can authenticate), so
// passengers whose phones keep real time are refused as CODE_STALE. After
// gate.ClockDispute passengers in a row, /healthz says 503
// clock_disputed and diag's service check fails, pointing at the clock
// check; once the issuer's clock is right again the next passenger is
// granted and the gate is in service.
func TestClockDisputedByPassengers(t *testing.T) {
	o, sock := withSocket(t, stationOpts{})
	st := newStation(t, o)
	waitSocket(t, sock)
	waitHealth(t, sock, http.StatusOK, 10*time.Second)
	var certs []verify.CertID
	for range gate.ClockDispute + 1 {
		certs = append(certs, st.issue().ID)
	}
	st.shift.Store(int64(2 * time.Hour))
	eventually.True(t, 10*time.Second, "the gate learns the issuer's 2 h offset", func() bool {
		off, ok := st.ag.Feed().Offset()
		return ok && off >= 2*time.Hour-time.Minute
	})
	for i, id := range certs[:gate.ClockDispute] {
		if i > 0 {
			if c, body := get(t, sock, "/healthz"); c != http.StatusOK {
				t.Fatalf("/healthz after %d passengers refused for the clock: %d %q, want 200", i, c, body)
			}
		}
		st.write(st.token(id, time.Now()) + "\r") // the phone keeps real time
		if o := st.want(gate.Denied); o.Decision.Reason != verify.CodeStale {
			t.Fatalf("passenger %d denied as %v, want CODE_STALE", i, o.Decision.Reason)
		}
	}
	body := waitHealth(t, sock, http.StatusServiceUnavailable, 5*time.Second)
	if !strings.Contains(body, "clock_disputed") || !strings.Contains(body, "disagrees with the passengers' phones") {
		t.Errorf("/healthz: %q", body)
	}
	if service, _ := serviceCheck(t, sock); service.Status != diag.Fail || !strings.Contains(service.Line, "see the clock check") {
		t.Errorf("diag service: %s %s", service.Status, service.Line)
	}

	st.shift.Store(0)
	eventually.True(t, 10*time.Second, "the gate learns the issuer's clock is right again", func() bool {
		off, ok := st.ag.Feed().Offset()
		return ok && off < time.Minute && off > -time.Minute
	})
	st.write(st.token(certs[gate.ClockDispute], time.Now()) + "\r")
	if o := st.want(gate.Granted); o.Decision.Reason != verify.OK {
		t.Fatalf("a passenger once the clock is right: %v", o.Decision.Reason)
	}
	waitHealth(t, sock, http.StatusOK, 5*time.Second)
}
