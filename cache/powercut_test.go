package cache_test

import (
	"bufio"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/internal/syncbuf"
	"gateagent/verify"
)

// The nearest this machine comes to a power cut is a SIGKILL of the process
// writing the cache: it gets no chance to finish anything. (A real cut also
// loses what the kernel had not written to disk; bbolt's fsync at each
// commit, and its two alternating meta pages, cover that part.) The writer
// is this test binary, started again with powerCutEnv set.
const (
	powerCutEnv   = "GATEAGENT_POWERCUT_FILE"
	powerCutPer   = 200     // certificates per batch
	powerCutSpace = 1 << 22 // ID space of the synthetic certificates
)

func TestMain(m *testing.M) {
	if path := os.Getenv(powerCutEnv); path != "" {
		powerCutWriter(path) // never returns
	}
	if dir := os.Getenv(rebuildEnv); dir != "" {
		rebuildWriter(dir) // never returns
	}
	if spec := os.Getenv(coldStartEnv); spec != "" {
		coldStartChild(spec) // never returns
	}
	os.Exit(m.Run())
}

// startWriter starts this test binary again as the writer that env (NAME=
// value) calls up in TestMain, under GATEAGENT_TEST_EXEC's wrapper when it
// is set (e.g. qemu-aarch64-static); it returns the writer's stdout and
// what it writes to stderr.
func startWriter(t *testing.T, env string) (*exec.Cmd, io.Reader, *syncbuf.Buffer) {
	t.Helper()
	args := []string{os.Args[0], "-test.run=^$"}
	if wrap := os.Getenv("GATEAGENT_TEST_EXEC"); wrap != "" {
		args = append([]string{wrap}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env)
	stderr := &syncbuf.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out, stderr
}

// powerCutBatch k upserts certificates [k*per, (k+1)*per) in ID order (the
// append path) and revokes the first three of batch k-1 (the update path).
func powerCutBatch(k uint64) *cache.Batch {
	b := cachetest.Batch(k*powerCutPer, (k+1)*powerCutPer, powerCutSpace)
	b.From, b.Next = k-1, k
	if k > 1 {
		for j := range uint64(3) {
			b.Revokes = append(b.Revokes, cachetest.Cert((k-1)*powerCutPer+j, powerCutSpace).ID)
		}
	}
	return b
}

// powerCutWriter applies batch after batch to the cache, each followed by
// an event in the journal beside it, and reports each on stdout once both
// are committed, until it is killed.
func powerCutWriter(path string) {
	fail := func(err error) { fmt.Fprintln(os.Stderr, "writer:", err); os.Exit(3) }
	c, err := cache.Open(path, cachetest.Options(&cache.Options{LockTimeout: 5 * time.Second}))
	if err != nil {
		fail(err)
	}
	j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(&cache.Options{LockTimeout: 5 * time.Second}))
	if err != nil {
		fail(err)
	}
	fs, err := c.Feed()
	if err != nil {
		fail(err)
	}
	for k := fs.Cursor + 1; ; k++ {
		if _, err := c.Apply(powerCutBatch(k)); err != nil {
			fail(err)
		}
		if _, err := j.AppendEvent(event.Event{
			Time: cachetest.Epoch, Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry,
			CertID: cachetest.Cert(k*powerCutPer, powerCutSpace).ID, Detail: fmt.Sprintf("batch %d", k),
		}); err != nil {
			fail(err)
		}
		fmt.Printf("applied %d\n", k)
	}
}

// TestPowerCutKeepsCacheWhole kills the writer at random instants and
// checks, after each kill, that both files are whole, that every batch is
// there entirely or not at all, that every reported commit survived, and
// that the event log has no gap and no torn entry.
func TestPowerCutKeepsCacheWhole(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("GATEAGENT_POWERCUT_SEED"); v != "" { // replay a logged run
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("GATEAGENT_POWERCUT_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (GATEAGENT_POWERCUT_SEED replays it)", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	path := filepath.Join(t.TempDir(), "cache.db")
	for round := range 6 {
		reported := runAndKill(t, path, time.Duration(r.IntN(30))*time.Millisecond)
		c, err := cache.Open(path, cachetest.Options(nil))
		if err != nil {
			t.Fatalf("round %d: reopen after the cut: %v", round, err)
		}
		if err := c.Check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		j, err := cache.OpenJournal(cache.JournalPath(path), cachetest.Options(nil))
		if err != nil {
			t.Fatalf("round %d: reopen the journal after the cut: %v", round, err)
		}
		if err := j.Check(); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		fs, err := c.Feed()
		if err != nil {
			t.Fatal(err)
		}
		if fs.Cursor < reported {
			t.Fatalf("round %d: cursor %d, but the writer reported batch %d committed", round, fs.Cursor, reported)
		}
		checkBatches(t, c, fs.Cursor)
		checkEvents(t, j, fs.Cursor, round+1)
		t.Logf("round %d: killed after batch %d (reported %d)", round, fs.Cursor, reported)
		c.Close()
		j.Close()
	}
}

// runAndKill starts the writer on path, lets it commit at least three
// batches and run extra longer, kills it, and returns the last batch it
// reported committed.
func runAndKill(t *testing.T, path string, extra time.Duration) uint64 {
	t.Helper()
	cmd, out, stderr := startWriter(t, powerCutEnv+"="+path)
	lines := make(chan uint64)
	done := make(chan struct{})
	t.Cleanup(func() { close(done); cmd.Process.Kill() }) // frees the reader if the test stops early
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if n, err := strconv.ParseUint(strings.TrimPrefix(sc.Text(), "applied "), 10, 64); err == nil {
				select {
				case lines <- n:
				case <-done:
					return
				}
			}
		}
	}()
	var last uint64
	for seen := 0; seen < 3; seen++ {
		select {
		case n, ok := <-lines:
			if !ok {
				cmd.Wait()
				t.Fatalf("writer stopped by itself: %s", stderr.String())
			}
			last = n
		case <-time.After(30 * time.Second):
			t.Fatalf("writer reported no commit in 30 s: %s", stderr.String())
		}
	}
	time.Sleep(extra) // the stimulus: the power cut comes at a random moment of the writes
	cmd.Process.Kill()
	for n := range lines { // what it reported before it died
		last = n
	}
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != -1 {
		t.Fatalf("writer ended with %v, not by the kill: %s", err, stderr.String())
	}
	return last
}

// checkBatches: every batch up to the cursor entire, the next one absent.
func checkBatches(t *testing.T, c *cache.Cache, cursor uint64) {
	t.Helper()
	for k := uint64(1); k <= cursor+1; k++ {
		for j := range uint64(powerCutPer) {
			want := cachetest.Cert(k*powerCutPer+j, powerCutSpace)
			r, ok, err := c.Lookup(want.ID, verify.Entry)
			if err != nil {
				t.Fatal(err)
			}
			if k > cursor {
				if ok {
					t.Fatalf("cursor %d, but certificate %d of batch %d is stored: half a batch", cursor, j, k)
				}
				continue
			}
			if !ok || r.Key != want.Key {
				t.Fatalf("cursor %d, but certificate %d of batch %d is missing or wrong", cursor, j, k)
			}
			// Batch k+1 revokes the first three of batch k.
			if wantRevoked := j < 3 && k+1 <= cursor; r.Revoked != wantRevoked {
				t.Fatalf("cursor %d: certificate %d of batch %d revoked=%v, want %v", cursor, j, k, r.Revoked, wantRevoked)
			}
		}
	}
}

// checkEvents: the events are numbered 1, 2, 3… with no gap, each whole,
// for batches in increasing order. Each cut may fall between a batch's
// commit and its event's, so up to one event per cut is missing.
func checkEvents(t *testing.T, j *cache.Journal, cursor uint64, cuts int) {
	t.Helper()
	evs, err := j.Events(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if n := uint64(len(evs)); n > cursor || n+uint64(cuts) < cursor {
		t.Fatalf("%d events for %d batches after %d cuts", n, cursor, cuts)
	}
	var prev uint64
	for i, e := range evs {
		var k uint64
		if _, err := fmt.Sscanf(e.Detail, "batch %d", &k); err != nil || k <= prev || k > cursor {
			t.Fatalf("event %d: detail %q after batch %d (cursor %d)", i, e.Detail, prev, cursor)
		}
		if e.Seq != uint64(i+1) || e.Kind != event.Decision || e.Reason != verify.OK ||
			e.CertID != cachetest.Cert(k*powerCutPer, powerCutSpace).ID {
			t.Fatalf("event %d read back as %+v", i, e)
		}
		prev = k
	}
}
