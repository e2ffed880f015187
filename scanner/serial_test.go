package scanner_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gateagent/gate"
	"gateagent/internal/eventually"
	"gateagent/internal/syncbuf"

	"gateagent/scanner"
	"gateagent/scanner/scannertest"
	"gateagent/verify"
)

// run is a Serial running in the background.
type run struct {
	t      *testing.T
	s      *scanner.Serial
	out    chan gate.Scan
	cancel context.CancelFunc
	done   chan error
	logs   *syncbuf.Buffer
}

// fast is the reconnection backoff of the tests.
func fast(c scanner.Config) scanner.Config {
	c.MinBackoff, c.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	return c
}

func startRun(t *testing.T, cfg scanner.Config, now func() time.Time) *run {
	t.Helper()
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := scanner.NewSerial(cfg, scanner.Options{Logger: log, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	r := &run{t: t, s: s, out: make(chan gate.Scan), logs: logs}
	r.cancel, r.done = background(t, logs, func(ctx context.Context) error { return s.Run(ctx, r.out) })
	return r
}

// background runs fn (a scanner's Run) until the test ends; the test's
// cleanup then ends fn's context and checks that fn returns within 5 s of
// that and that no scanned text (TR1:) reached logs. A test that takes
// fn's error from done puts it back for the cleanup.
func background(t *testing.T, logs *syncbuf.Buffer, fn func(context.Context) error) (context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5 s of its context's end")
		}
		if strings.Contains(logs.String(), "TR1:") {
			t.Errorf("a scanned text appears in the log:\n%s", logs.String())
		}
	})
	return cancel, done
}

func (r *run) waitConnected() {
	r.t.Helper()
	eventually.True(r.t, 5*time.Second, "scanner connected", func() bool { return r.s.Stats().Connected })
}

// next returns the next scan, failing the test after timeout.
func (r *run) next(timeout time.Duration) gate.Scan {
	r.t.Helper()
	select {
	case s := <-r.out:
		return s
	case err := <-r.done:
		r.t.Fatalf("Run returned %v while a scan was awaited", err)
	case <-time.After(timeout):
		r.t.Fatalf("no scan within %v (stats %+v)", timeout, r.s.Stats())
	}
	return gate.Scan{}
}

func write(t *testing.T, f *os.File, s string) {
	t.Helper()
	if _, err := f.WriteString(s); err != nil {
		t.Fatalf("write to the peer: %v", err)
	}
}

func TestSerialDeliversExactText(t *testing.T) {
	for _, baud := range []int{9600, 115200} {
		t.Run(fmt.Sprint(baud), func(t *testing.T) {
			tty := scannertest.Start(t)
			peer := tty.OpenPeer(t)
			r := startRun(t, fast(scanner.Config{Port: tty.Dev, Baud: baud}), nil)
			r.waitConnected()
			before := time.Now()
			write(t, peer, "TR1:6BFAN3T9C4 QX:Z$%*+-./  \r")
			s := r.next(3 * time.Second)
			if got, want := string(s.Text), "TR1:6BFAN3T9C4 QX:Z$%*+-./  "; got != want {
				t.Fatalf("scan %q, want %q (only the terminator stripped)", got, want)
			}
			if s.Source != tty.Dev {
				t.Errorf("source %q, want %q", s.Source, tty.Dev)
			}
			if s.At.Before(before) || s.At.After(time.Now()) {
				t.Errorf("scan at %v, outside the write (%v) and its receipt", s.At, before)
			}
			write(t, peer, "TR1:SECOND\rTR1:THIRD\r")
			if got := string(r.next(3 * time.Second).Text); got != "TR1:SECOND" {
				t.Fatalf("second scan %q", got)
			}
			if got := string(r.next(3 * time.Second).Text); got != "TR1:THIRD" {
				t.Fatalf("third scan %q", got)
			}
			st := r.s.Stats()
			if !st.Connected || st.Lines != 3 || st.Reconnects != 0 || st.LastScan.IsZero() {
				t.Errorf("stats %+v, want connected, 3 lines", st)
			}
		})
	}
}

func TestSerialRepeatWindow(t *testing.T) {
	var offset atomic.Int64
	base := time.Date(2025, 3, 1, 8, 0, 0, 0, time.UTC)
	now := func() time.Time { return base.Add(time.Duration(offset.Load())) }
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	r := startRun(t, fast(scanner.Config{Port: tty.Dev, RepeatWindow: 2 * time.Second}), now)
	r.waitConnected()

	write(t, peer, "TR1:HELD\r")
	if s := r.next(3 * time.Second); string(s.Text) != "TR1:HELD" || !s.At.Equal(base) {
		t.Fatalf("first read: %q at %v", s.Text, s.At)
	}
	// The code stays in view: the scanner repeats it every 1.5 s, each
	// within 2 s of the last read, so none gets through.
	for i := 1; i <= 3; i++ {
		offset.Store(int64(time.Duration(i) * 1500 * time.Millisecond))
		write(t, peer, "TR1:HELD\r")
		eventually.True(t, 3*time.Second, "repeat suppressed", func() bool { return r.s.Stats().Suppressed == uint64(i) })
	}
	// Another code is not affected.
	write(t, peer, "TR1:OTHER\r")
	if s := r.next(3 * time.Second); string(s.Text) != "TR1:OTHER" {
		t.Fatalf("other code: %q", s.Text)
	}
	// Nothing else came through: the counters say what was delivered.
	if st := r.s.Stats(); st.Lines != 2 || st.Suppressed != 3 {
		t.Fatalf("stats %+v, want 2 lines (the first read and the other code), 3 suppressed", st)
	}
	// After a pause longer than the window it is a new scan.
	offset.Store(int64(4500*time.Millisecond + 2*time.Second))
	write(t, peer, "TR1:HELD\r")
	if s := r.next(3 * time.Second); string(s.Text) != "TR1:HELD" {
		t.Fatalf("after the window: %q", s.Text)
	}
	if st := r.s.Stats(); st.Lines != 3 || st.Suppressed != 3 {
		t.Fatalf("stats %+v, want 3 lines, 3 suppressed", st)
	}
}

// TestSerialSurvivesGarbage: random bytes, a 1 MB line without a
// terminator and NULs do not stop the scanner; the valid line after them
// arrives intact.
func TestSerialSurvivesGarbage(t *testing.T) {
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	r := startRun(t, fast(scanner.Config{Port: tty.Dev, Baud: 115200}), nil)
	r.waitConnected()

	rng := rand.New(rand.NewPCG(7, 7))
	var junk bytes.Buffer
	for range 10000 {
		n := rng.IntN(81)
		for range n {
			junk.WriteByte(byte(rng.UintN(256)))
		}
		junk.WriteByte('\r')
	}
	// What the scanner should deliver of it: the non-empty pieces between
	// CRs and LFs (the default terminator, auto, ends a line at either;
	// junk ends with a CR, so the last piece of the split is empty).
	var wantJunk int
	for _, p := range bytes.FieldsFunc(junk.Bytes(), func(r rune) bool { return r == '\r' || r == '\n' }) {
		if len(p) > 0 {
			wantJunk++
		}
	}

	const nulLine = "\x00\x00TR1:\x00NUL\x00 "
	const valid = "TR1:VALID AFTER GARBAGE "
	writeErr := make(chan error, 1)
	go func() {
		var all bytes.Buffer
		all.Write(junk.Bytes())
		all.WriteString(strings.Repeat("A", 1<<20)) // 1 MB without a terminator…
		all.WriteString("\x00\x00\r")               // …ended at last, with NULs: dropped
		all.WriteString(nulLine + "\r")
		all.WriteString(valid + "\r")
		_, err := peer.Write(all.Bytes())
		writeErr <- err
	}()

	var junkScans int
	var sawNul bool
	deadline := time.After(15 * time.Second)
	for done := false; !done; {
		select {
		case s := <-r.out:
			switch string(s.Text) {
			case valid:
				done = true
			case nulLine:
				sawNul = true
			default:
				junkScans++
			}
		case err := <-r.done:
			t.Fatalf("Run returned %v during the garbage", err)
		case <-deadline:
			t.Fatalf("the valid line did not arrive within 15 s (stats %+v, %d junk scans)", r.s.Stats(), junkScans)
		}
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	if !sawNul {
		t.Error("the line with NULs was not delivered intact")
	}
	if junkScans != wantJunk {
		t.Errorf("%d junk scans, want %d", junkScans, wantJunk)
	}
	st := r.s.Stats()
	if st.Overlong != 1 || !st.Connected || st.Reconnects != 0 {
		t.Errorf("stats %+v, want 1 over-long line, still connected", st)
	}
	// Not one of the lines reads as a code: all are rejected lines.
	if st.Codes != 0 || st.Rejected != uint64(wantJunk+2) || st.Lines != st.Rejected {
		t.Errorf("stats %+v: want 0 codes and %d rejected lines", st, wantJunk+2)
	}
	if !strings.Contains(r.logs.String(), fmt.Sprintf("length=%d", 1<<20+2)) {
		t.Errorf("the over-long line's length is not in the log:\n%.2000s", r.logs.String())
	}
}

func TestSerialReconnects(t *testing.T) {
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	r := startRun(t, fast(scanner.Config{Port: tty.Dev}), nil)
	r.waitConnected()
	write(t, peer, "TR1:BEFORE\r")
	if s := r.next(3 * time.Second); string(s.Text) != "TR1:BEFORE" {
		t.Fatalf("scan %q", s.Text)
	}

	tty.Kill(t) // the scanner is unplugged
	eventually.True(t, 5*time.Second, "scanner disconnected", func() bool { return !r.s.Stats().Connected })
	if st := r.s.Stats(); st.LastError == "" {
		t.Errorf("no LastError after the loss: %+v", st)
	}
	failed := r.s.Stats().OpenFailures
	eventually.True(t, 5*time.Second, "a few failed reopens", func() bool { return r.s.Stats().OpenFailures >= failed+3 })
	if st := r.s.Stats(); st.Connected || st.Reconnects != 0 {
		t.Fatalf("stats %+v while the port is gone", st)
	}

	tty.Restart(t) // plugged in again
	peer = tty.OpenPeer(t)
	eventually.True(t, 5*time.Second, "scanner reconnected", func() bool {
		st := r.s.Stats()
		return st.Connected && st.Reconnects == 1
	})
	if st := r.s.Stats(); st.LastError != "" {
		t.Errorf("LastError %q after the reconnection, want it cleared", st.LastError)
	}
	write(t, peer, "TR1:AFTER\r")
	if s := r.next(3 * time.Second); string(s.Text) != "TR1:AFTER" {
		t.Fatalf("scan after the reconnection: %q", s.Text)
	}
	logs := r.logs.String()
	for _, want := range []string{"scanner port lost", "scanner port open"} {
		if strings.Count(logs, want) < 1 {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
	if n := strings.Count(logs, "scanner port open"); n != 2 {
		t.Errorf("%d \"scanner port open\" in the log, want 2", n)
	}
	if !strings.Contains(logs, "level=WARN msg=\"scanner port lost\"") {
		t.Errorf("the loss is not a warning:\n%s", logs)
	}
}

func TestSerialPortMissingAtStart(t *testing.T) {
	tty := scannertest.Start(t)
	tty.Kill(t) // not plugged in yet
	r := startRun(t, fast(scanner.Config{Port: tty.Dev}), nil)
	eventually.True(t, 5*time.Second, "open failure reported", func() bool { return r.s.Stats().LastError != "" })
	st := r.s.Stats()
	if st.Connected || !strings.Contains(st.LastError, tty.Dev) || !strings.Contains(st.LastError, "scanner.port") {
		t.Fatalf("stats %+v, want disconnected and an error naming the port and the setting", st)
	}
	eventually.True(t, 5*time.Second, "a few failed opens", func() bool { return r.s.Stats().OpenFailures >= 3 })
	tty.Restart(t)
	peer := tty.OpenPeer(t)
	r.waitConnected()
	write(t, peer, "TR1:LATE\r")
	if s := r.next(3 * time.Second); string(s.Text) != "TR1:LATE" {
		t.Fatalf("scan %q", s.Text)
	}
	if st := r.s.Stats(); st.Reconnects != 0 {
		t.Errorf("reconnects %d after a first open, want 0", st.Reconnects)
	}
	// The repeated failures were one warning, then their count (written
	// when the port opened), not one line each.
	var lines []string
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(l, "scanner port not available") || strings.Contains(l, "scanner port open") {
			lines = append(lines, l)
		}
	}
	failures := r.s.Stats().OpenFailures
	if len(lines) != 3 || strings.Contains(lines[0], "repeated=") ||
		!strings.Contains(lines[1], fmt.Sprintf("repeated=%d over=1m0s", failures-1)) || !strings.Contains(lines[2], "scanner port open") {
		t.Errorf("log of %d failed opens:\n%s\nwant the first, the count of the %d others, then the open", failures, strings.Join(lines, "\n"), failures-1)
	}
}

// readers counts the goroutines blocked in the serial library's Read.
func readers() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return bytes.Count(buf, []byte("go.bug.st/serial.(*unixPort).Read"))
}

func TestSerialStopsPromptly(t *testing.T) {
	for _, blocked := range []bool{false, true} {
		name := "reading"
		if blocked {
			name = "sending"
		}
		t.Run(name, func(t *testing.T) {
			tty := scannertest.Start(t)
			peer := tty.OpenPeer(t)
			r := startRun(t, fast(scanner.Config{Port: tty.Dev}), nil)
			r.waitConnected()
			eventually.True(t, 3*time.Second, "Read pending", func() bool { return readers() == 1 })
			if blocked { // a scan nobody takes: Run waits to send it
				write(t, peer, "TR1:UNTAKEN\r")
				eventually.True(t, 3*time.Second, "line read", func() bool { return readers() == 0 })
			}
			start := time.Now()
			r.cancel()
			select {
			case err := <-r.done:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Run returned %v, want context.Canceled", err)
				}
				r.done <- err // for the cleanup
			case <-time.After(time.Second):
				t.Fatal("Run did not return within 1 s of the cancellation")
			}
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("Run took %v to return", d)
			}
			if r.s.Stats().Connected {
				t.Error("still connected after Run returned")
			}
			eventually.True(t, time.Second, "no goroutine left in Read", func() bool { return readers() == 0 })
			// The port is closed: it can be opened again at once.
			if err := scanner.Probe(scanner.Config{Port: tty.Dev}); err != nil {
				t.Fatalf("Probe after Run: %v", err)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gate-scanner")
	err := scanner.Probe(scanner.Config{Port: missing})
	if err == nil {
		t.Fatal("Probe of a missing port succeeded")
	}
	if !strings.Contains(err.Error(), missing) || !strings.Contains(err.Error(), "scanner.port") || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Probe error %q: want it to name the port and the setting, and wrap fs.ErrNotExist", err)
	}
	notTTY := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notTTY, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := scanner.Probe(scanner.Config{Port: notTTY}); err == nil || !strings.Contains(err.Error(), "not a serial port") {
		t.Errorf("Probe of a regular file: %v, want \"not a serial port\"", err)
	}
	if err := scanner.Probe(scanner.Config{Port: missing, Parity: "mark"}); err == nil || !strings.Contains(err.Error(), "parity") {
		t.Errorf("Probe of a bad config: %v", err)
	}
	tty := scannertest.Start(t)
	if err := scanner.Probe(scanner.Config{Port: tty.Dev, Baud: 115200, Parity: "even", DataBits: 7, StopBits: 2}); err != nil {
		t.Errorf("Probe of a live port: %v", err)
	}
}

// TestSerialNeverLogsText runs scans, a repeat, an over-long line and a
// loss through a debug-level log and looks for the texts in it.
func TestSerialNeverLogsText(t *testing.T) {
	secrets := []string{"SECRET-CODE-1 ", "PASSENGER0042", "LONGSECRET"}
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	r := startRun(t, fast(scanner.Config{Port: tty.Dev, MaxLine: 16, RepeatWindow: time.Minute}), nil)
	r.waitConnected()
	write(t, peer, secrets[0]+"\r"+secrets[0]+"\r"+secrets[2]+strings.Repeat("x", 20)+"\r"+secrets[1]+"\r")
	for _, want := range []string{secrets[0], secrets[1]} {
		if s := r.next(3 * time.Second); string(s.Text) != want {
			t.Fatalf("scan %q, want %q", s.Text, want)
		}
	}
	sent := r.s.Stats().Bytes
	write(t, peer, secrets[1]) // unterminated when the port goes
	eventually.True(t, 5*time.Second, "the unterminated text read", func() bool { return r.s.Stats().Bytes >= sent+uint64(len(secrets[1])) })
	tty.Kill(t)
	eventually.True(t, 5*time.Second, "disconnected", func() bool { return !r.s.Stats().Connected })
	st := r.s.Stats()
	if st.Lines != 2 || st.Suppressed != 1 || st.Overlong != 1 {
		t.Fatalf("stats %+v, want 2 lines, 1 suppressed, 1 over-long", st)
	}
	logs := r.logs.String()
	for _, s := range secrets {
		if strings.Contains(logs, strings.TrimSpace(s)) {
			t.Errorf("scan text %q in the log:\n%s", s, logs)
		}
		if strings.Contains(st.LastError, strings.TrimSpace(s)) {
			t.Errorf("scan text %q in LastError %q", s, st.LastError)
		}
	}
	for _, want := range []string{"length=14", "length=30", "scanner repeat suppressed", "scanner line too long"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
}

func TestSerialRunMisuse(t *testing.T) {
	s, err := scanner.NewSerial(scanner.Config{Port: filepath.Join(t.TempDir(), "none")}, scanner.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), nil); err == nil {
		t.Error("Run with a nil channel accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, make(chan gate.Scan)) }()
	eventually.True(t, 3*time.Second, "first open attempt", func() bool { return s.Stats().LastError != "" })
	if err := s.Run(ctx, make(chan gate.Scan)); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second concurrent Run: %v", err)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run returned %v", err)
	}
}

// TestSerialBegan: a scan's Began is when the read that brought its first
// byte returned: a line sent in two halves 150 ms apart began at least
// 100 ms before it was complete, and a line that starts in the read that
// ends the one before began with that read. Began is never after At.
func TestSerialBegan(t *testing.T) {
	const pause = 150 * time.Millisecond
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	r := startRun(t, fast(scanner.Config{Port: tty.Dev}), nil)
	r.waitConnected()
	check := func(s gate.Scan) {
		t.Helper()
		if s.Began.IsZero() || s.Began.After(s.At) {
			t.Errorf("scan %q began at %v, completed at %v: want a Began no later than At", s.Text, s.Began, s.At)
		}
	}

	before := time.Now()
	write(t, peer, "TR1:FIRST HA")
	time.Sleep(pause) // the stimulus: a slow scanner, half a line at a time
	write(t, peer, "LF\r")
	s := r.next(3 * time.Second)
	if string(s.Text) != "TR1:FIRST HALF" {
		t.Fatalf("scan %q", s.Text)
	}
	check(s)
	if s.Began.Before(before) {
		t.Errorf("began at %v, before the first half was written (%v)", s.Began, before)
	}
	if d := s.At.Sub(s.Began); d < 100*time.Millisecond {
		t.Errorf("At − Began = %v for a line sent in halves %v apart, want at least 100ms", d, pause)
	}

	// One write: a whole line and the start of the next; the rest later.
	write(t, peer, "TR1:WHOLE\rTR1:NEX")
	whole := r.next(3 * time.Second)
	if string(whole.Text) != "TR1:WHOLE" {
		t.Fatalf("scan %q", whole.Text)
	}
	check(whole)
	time.Sleep(pause) // the stimulus: the rest of the line comes later
	write(t, peer, "T\r")
	next := r.next(3 * time.Second)
	if string(next.Text) != "TR1:NEXT" {
		t.Fatalf("scan %q", next.Text)
	}
	check(next)
	if d := next.At.Sub(next.Began); d < 100*time.Millisecond {
		t.Errorf("At − Began = %v for a line begun in the read that ended the one before, %v before its end; want at least 100ms", d, pause)
	}
	if next.Began.Before(whole.Began) {
		t.Errorf("the second line began at %v, before the first (%v)", next.Began, whole.Began)
	}

	// Several lines in one write: each no later than its At.
	write(t, peer, "TR1:A\rTR1:B\rTR1:C\r")
	for _, want := range []string{"TR1:A", "TR1:B", "TR1:C"} {
		s := r.next(3 * time.Second)
		if string(s.Text) != want {
			t.Fatalf("scan %q, want %q", s.Text, want)
		}
		check(s)
	}
}

// codes returns n TR1 codes (what a passenger's phone shows).
func codes(n int) []string {
	var out []string
	for i := range n {
		key := verify.Key{byte(i)}
		out = append(out, verify.NewToken(&key, verify.CertID{byte(i), 7}, 29000000+uint32(i)).String())
	}
	return out
}

// TestSerialTerminators: on a real pty, with the default terminator
// (auto), a scanner that ends its codes with CR, LF or CRLF delivers each
// code exactly, never an empty one nor one that starts with the LF of a
// CRLF; Stats says which terminator it sends, and counts codes, not
// rejected lines.
func TestSerialTerminators(t *testing.T) {
	for _, tc := range []struct{ name, end string }{{"cr", "\r"}, {"lf", "\n"}, {"crlf", "\r\n"}} {
		t.Run(tc.name, func(t *testing.T) {
			tty := scannertest.Start(t)
			peer := tty.OpenPeer(t)
			r := startRun(t, fast(scanner.Config{Port: tty.Dev}), nil)
			r.waitConnected()
			want := codes(5)
			for i, c := range want {
				if i == 2 {
					write(t, peer, c+tc.end[:1])      // the terminator split over two writes
					time.Sleep(20 * time.Millisecond) // the stimulus: a scanner sending its ending late
					write(t, peer, tc.end[1:])
					continue
				}
				write(t, peer, c+tc.end)
			}
			for i, w := range want {
				if got := string(r.next(3 * time.Second).Text); got != w {
					t.Fatalf("code %d: %q, want %q", i, got, w)
				}
			}
			// Every byte read (the barrier), and no more scans than codes:
			// no empty line, no stray LF.
			sent := uint64(0)
			for _, c := range want {
				sent += uint64(len(c) + len(tc.end))
			}
			eventually.True(t, 5*time.Second, "every byte read", func() bool { return r.s.Stats().Bytes == sent })
			select {
			case extra := <-r.out:
				t.Fatalf("an extra scan %q", extra.Text)
			default:
			}
			st := r.s.Stats()
			if st.Endings.Sent() != tc.name || st.Endings.Total() != 5 {
				t.Errorf("endings %+v (%q), want 5 %s", st.Endings, st.Endings.Sent(), tc.name)
			}
			if st.Codes != 5 || st.Rejected != 0 || st.Lines != 5 {
				t.Errorf("stats %+v, want 5 codes and no rejected line", st)
			}
		})
	}
}

// TestSerialTerminatorMismatch: a scanner that sends CRLF to a gate set to
// "cr" (the fragile set-up auto replaces) has every code after the first
// start with an LF, so they are rejected; Stats shows that the scanner
// sends CRLF, which diag compares with the setting.
func TestSerialTerminatorMismatch(t *testing.T) {
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	r := startRun(t, fast(scanner.Config{Port: tty.Dev, Terminator: scanner.CR}), nil)
	r.waitConnected()
	want := codes(3)
	for _, c := range want {
		write(t, peer, c+"\r\n")
	}
	if got := string(r.next(3 * time.Second).Text); got != want[0] {
		t.Fatalf("first code %q", got)
	}
	for _, w := range want[1:] {
		if got := string(r.next(3 * time.Second).Text); got != "\n"+w {
			t.Fatalf("code %q, want it after the LF of the CRLF before it", got)
		}
	}
	st := r.s.Stats()
	if st.Codes != 1 || st.Rejected != 2 {
		t.Errorf("stats %+v, want 1 code and 2 rejected lines", st)
	}
	if st.Endings.Sent() != "crlf" || scanner.CR.Ends(st.Endings) || !scanner.Auto.Ends(st.Endings) {
		t.Errorf("endings %+v: want crlf, which cr does not end and auto does", st.Endings)
	}
}

// TestSerialHighDescriptor: a process holding more than 1,024 files opens
// the scanner's port on a descriptor go.bug.st/serial's select cannot
// hold, and its Read panics. The scanner reports it as an error and goes
// on reconnecting; nothing crashes, and once descriptors are free again
// the next scan is read.
func TestSerialHighDescriptor(t *testing.T) {
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	var held []*os.File
	release := func() {
		for _, f := range held {
			f.Close()
		}
		held = nil
	}
	t.Cleanup(release)
	for len(held) < 1100 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Skipf("cannot hold 1,100 files open (%v): the limit on descriptors is too low here", err)
		}
		held = append(held, f)
	}
	r := startRun(t, fast(scanner.Config{Port: tty.Dev}), nil)
	eventually.True(t, 5*time.Second, "the read on a high descriptor reported", func() bool {
		return strings.Contains(r.s.Stats().LastError, "above 1023")
	})
	release()
	r.waitConnected()
	write(t, peer, "TR1:AFTER\r")
	if s := r.next(5 * time.Second); string(s.Text) != "TR1:AFTER" {
		t.Fatalf("scan %q after the descriptors were freed", s.Text)
	}
}

// marks counts the arrival marks a Serial takes (Options.Arriving).
type marks struct{ taken, ended, held atomic.Int64 }

func (m *marks) arriving() func() {
	m.taken.Add(1)
	m.held.Add(1)
	return func() {
		m.ended.Add(1)
		m.held.Add(-1)
	}
}

// TestSerialMarksArrival: a frame's first bytes take the arrival mark
// (the key cache's writes held back while a code comes in), the scan
// carries it to the gate, and every frame ends its mark exactly once:
// handed on and released, dropped as a repeat, cut short, or never ended.
func TestSerialMarksArrival(t *testing.T) {
	tty := scannertest.Start(t)
	peer := tty.OpenPeer(t)
	m := &marks{}
	cfg := fast(scanner.Config{Port: tty.Dev, RepeatWindow: time.Hour})
	s, err := scanner.NewSerial(cfg, scanner.Options{Arriving: m.arriving})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan gate.Scan)
	cancel, done := background(t, &syncbuf.Buffer{}, func(ctx context.Context) error { return s.Run(ctx, out) })
	eventually.True(t, 5*time.Second, "scanner connected", func() bool { return s.Stats().Connected })
	next := func() gate.Scan {
		t.Helper()
		select {
		case sc := <-out:
			return sc
		case <-time.After(3 * time.Second):
			t.Fatalf("no scan within 3 s (stats %+v)", s.Stats())
		}
		return gate.Scan{}
	}
	held := func(want int64, what string) {
		t.Helper()
		eventually.True(t, 3*time.Second, what, func() bool { return m.held.Load() == want })
	}

	code := codes(3)
	write(t, peer, code[0][:20])
	held(1, "half a code holds the mark")
	write(t, peer, code[0][20:]+"\r")
	sc := next()
	if sc.Release == nil {
		t.Fatal("the scan carries no Release for the mark its first bytes took")
	}
	if m.held.Load() != 1 {
		t.Fatalf("%d marks held while the gate has the scan, want 1", m.held.Load())
	}
	sc.Release()
	if m.held.Load() != 0 || m.taken.Load() != 1 {
		t.Fatalf("after Release: %d held, %d taken; want 0 and 1", m.held.Load(), m.taken.Load())
	}
	sc.Release() // a second call is harmless
	if m.ended.Load() != 1 {
		t.Fatalf("a second Release ended the mark again (%d ends)", m.ended.Load())
	}

	// The repeat is dropped: its mark ends with it, nothing is handed on.
	write(t, peer, code[0]+"\r")
	held(0, "a repeat's mark ends when it is dropped")
	eventually.True(t, 3*time.Second, "the repeat suppressed", func() bool { return s.Stats().Suppressed == 1 })

	// Two codes in one read: each scan carries its own mark.
	write(t, peer, code[1]+"\r"+code[2]+"\r")
	a, b := next(), next()
	if a.Release == nil || b.Release == nil {
		t.Fatal("a code that came in the read of the one before carries no Release")
	}
	held(2, "both codes of one read marked until the gate releases them")
	a.Release()
	b.Release()
	held(0, "both released")

	// Bare terminators are no frame; a line that never ends lets go
	// after ArrivalHold.
	write(t, peer, "\r\n\r")
	held(0, "terminators alone hold nothing")
	write(t, peer, "TR1:NEVER ENDS")
	held(1, "an unended line holds the mark")
	held(0, "an unended line's mark lapses after ArrivalHold")

	// Its end, after the lapse, is marked again for its handing on.
	write(t, peer, "\r")
	if late := next(); late.Release == nil || m.held.Load() != 1 {
		t.Fatalf("a line ended after ArrivalHold handed on with Release %v, %d marks held; want a mark of its own", late.Release != nil, m.held.Load())
	} else {
		late.Release()
	}

	// A code that the gate never takes: its mark ends with Run.
	write(t, peer, codes(4)[3]+"\r")
	held(1, "a code waiting for the gate holds its mark")
	cancel()
	select {
	case err := <-done:
		done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return")
	}
	held(0, "the code never taken released as Run ends")
	if m.taken.Load() != m.ended.Load() {
		t.Errorf("%d marks taken, %d ended", m.taken.Load(), m.ended.Load())
	}
}
