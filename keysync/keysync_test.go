package keysync_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/feed"
	"gateagent/feed/feedtest"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/verify"
)

type gate struct {
	*keysync.Client
	cache   *cache.Cache
	journal *cache.Journal
	clock   *issuertest.Clock
}

func newGate(t *testing.T, url string, keys feed.Keyring, mod func(*keysync.Config)) *gate {
	t.Helper()
	s := cachetest.OpenStore(t)
	clk := issuertest.NewClock(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC))
	cfg := keysync.Config{URL: url, Keys: keys, Fleet: feedtest.Fleet(t), Cache: s.Cache, Journal: s.Journal, GateID: "gate-07", Now: clk.Now}
	if mod != nil {
		mod(&cfg)
	}
	cl, err := keysync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &gate{cl, s.Cache, s.Journal, clk}
}

// alarms records n alarm events in the gate's journal, their details
// "detail 0", "detail 1", ….
func (g *gate) alarms(t *testing.T, n int, detail string) {
	t.Helper()
	for i := range n {
		if _, err := g.journal.AppendEvent(event.Event{Time: g.clock.Now(), Kind: event.Alarm, Detail: fmt.Sprintf("%s %d", detail, i)}); err != nil {
			t.Fatal(err)
		}
	}
}

func (g *gate) sync(t *testing.T) keysync.Result {
	t.Helper()
	res, err := g.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// synthetic issues n certificates with IDs in random order, as real
// issuance makes them.
func synthetic(t testing.TB, s *issuertest.Server, n int, seed byte) []verify.Cert {
	t.Helper()
	certs := make([]verify.Cert, n)
	nb := s.Clock.Now().Truncate(time.Second)
	for i := range certs {
		h := sha256.Sum256([]byte{seed, byte(i), byte(i >> 8), byte(i >> 16)})
		copy(certs[i].ID[:], h[:16])
		copy(certs[i].Key[:], h[:])
		certs[i].Key[31] |= 1
		certs[i].NotBefore, certs[i].NotAfter = nb, nb.Add(24*time.Hour)
	}
	if err := s.InsertSynthetic(certs); err != nil {
		t.Fatal(err)
	}
	return certs
}

// checkHolds asserts the gate verifies a token of every cert in certs, and
// holds exactly want certificates.
func checkHolds(t *testing.T, g *gate, certs []verify.Cert, want int) {
	t.Helper()
	for _, c := range certs {
		r, ok, err := g.cache.Lookup(c.ID, verify.Entry)
		if err != nil || !ok || r.Key != c.Key || r.Revoked != c.Revoked {
			t.Fatalf("cert %s: found %v revoked %v (want %v) err %v", c.ID, ok, r.Revoked, c.Revoked, err)
		}
	}
	st, err := g.cache.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Certs != want {
		t.Fatalf("cache holds %d certificates, want %d", st.Certs, want)
	}
}

func fileSum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// refusedSync syncs once, checks that the sync left the cache file as it
// was, and returns its error for the caller to match.
func (g *gate) refusedSync(t *testing.T, what string) error {
	t.Helper()
	before := fileSum(t, g.cache.Path())
	_, err := g.Sync(context.Background())
	if fileSum(t, g.cache.Path()) != before {
		t.Fatalf("%s: the refused document changed the cache file (sync: %v)", what, err)
	}
	return err
}

// refusal is a way the test issuer's documents are spoilt (its mode) and
// the error a sync must be refused with.
type refusal struct {
	mode string
	want error
}

// refusesEach sets mode to each refusal's in turn and checks that a sync
// is refused with its error and leaves the cache file as it was; mode is
// "" again after.
func (g *gate) refusesEach(t *testing.T, mode *atomic.Value, refusals ...refusal) {
	t.Helper()
	for _, r := range refusals {
		mode.Store(r.mode)
		if err := g.refusedSync(t, r.mode); !errors.Is(err, r.want) {
			t.Fatalf("%s: %v, want %v", r.mode, err, r.want)
		}
	}
	mode.Store("")
}

func TestFullSyncThenLog(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	certs := synthetic(t, s, 45, 1) // 5 full log pages and a tail
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	res := g.sync(t)
	// Snapshot at 40 (6 pages: 5 full, the last one empty and final),
	// then the tail page (40, 45].
	if !res.Resynced || res.Cursor != 45 || res.Head != 45 {
		t.Fatalf("first sync: %+v", res)
	}
	checkHolds(t, g, certs, 45)
	// Caught up: the next sync fetches only the head.
	if res := g.sync(t); res.Documents != 0 || res.Cursor != 45 {
		t.Fatalf("idle sync: %+v", res)
	}
	more := synthetic(t, s, 20, 2)
	if res := g.sync(t); res.Resynced || res.Cursor != 65 || res.Upserts != 5+20 {
		// page 5 is (40, 48]: 3 of its changes were applied already
		t.Fatalf("incremental sync: %+v", res)
	}
	checkHolds(t, g, append(certs, more...), 65)
	if fs, _ := g.cache.Feed(); fs.Epoch != s.Epoch() || fs.KeyID != "test-1" || fs.MaxAge != 30*time.Minute {
		t.Fatalf("feed state %+v", fs)
	}
}

func TestRevocationWithinOnePoll(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	certs := synthetic(t, s, 10, 1)
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g.sync(t)
	if err := s.Revoke(certs[3].ID); err != nil {
		t.Fatal(err)
	}
	g.sync(t) // one poll
	certs[3].Revoked = true
	checkHolds(t, g, certs, 10)
	// A gate that resyncs later gets it from the snapshot.
	synthetic(t, s, 30, 2)
	g2 := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g2.sync(t)
	checkHolds(t, g2, certs, 40)
}

// tamper wraps the issuer's handler and changes what it sends.
func tamper(h http.Handler, mod func(path string, body []byte) []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &recorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		body := mod(r.URL.Path, rec.body.Bytes())
		w.Header().Del("Content-Length")
		if rec.code == 0 {
			rec.code = http.StatusOK
		}
		w.WriteHeader(rec.code)
		w.Write(body)
	})
}

type recorder struct {
	header http.Header
	body   bytes.Buffer
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

func TestRefusedDocumentsChangeNothing(t *testing.T) {
	var mode atomic.Value
	mode.Store("")
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	var page0 atomic.Value
	s.Wrap = func(h http.Handler) http.Handler {
		return tamper(h, func(path string, b []byte) []byte {
			switch m := mode.Load().(string); {
			case m == "flip" && strings.HasPrefix(path, "/v1/feed/log/"):
				b = bytes.Clone(b)
				b[len(b)/2] ^= 0x01
			case m == "replay" && path == "/v1/feed/log/0":
				page0.Store(bytes.Clone(b))
			case m == "replay" && strings.HasPrefix(path, "/v1/feed/log/"):
				if old, ok := page0.Load().([]byte); ok {
					return old // an old, genuine page instead of the one asked for
				}
			}
			return b
		})
	}
	s.Restart()
	synthetic(t, s, 4, 1)
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	mode.Store("replay")
	g.sync(t) // snapshot at 0, then log page 0 (recorded)
	mode.Store("")
	synthetic(t, s, 10, 2)
	g.sync(t) // cursor 14
	synthetic(t, s, 3, 3)

	g.refusesEach(t, &mode, refusal{"flip", feed.ErrSignature}, refusal{"replay", keysync.ErrMisdirected})

	// An issuer that signs with a key the gate does not trust.
	s.Opts.Signer = feedtest.Signer(t, "rogue", 9)
	s.Restart()
	if err := g.refusedSync(t, "a document under an unknown key"); !errors.Is(err, feed.ErrUnknownKey) {
		t.Fatalf("unknown key ID: %v", err)
	}
}

// The issuer rotates its key: a gate that trusts both keeps syncing.
func TestKeyRotation(t *testing.T) {
	old, next := feedtest.Signer(t, "2026a", 1), feedtest.Signer(t, "2026b", 2)
	s := issuertest.Start(t, issuer.Options{PageSize: 8, Signer: old})
	certs := synthetic(t, s, 5, 1)
	g := newGate(t, s.URL, feedtest.Keyring(t, old, next), nil)
	g.sync(t)
	s.Opts.Signer = next
	s.Restart()
	certs = append(certs, synthetic(t, s, 5, 2)...)
	g.sync(t)
	checkHolds(t, g, certs, 10)
	if fs, _ := g.cache.Feed(); fs.KeyID != "2026b" {
		t.Fatalf("key ID after rotation %q", fs.KeyID)
	}
}

// The issuer goes down part-way through a full sync and comes back: the
// gate resumes from its stored progress, nothing missing or doubled.
func TestIssuerRestartMidSync(t *testing.T) {
	var served atomic.Int32
	var dead atomic.Bool
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	s.Wrap = func(h http.Handler) http.Handler {
		dead.Store(false)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if dead.Load() || strings.HasPrefix(r.URL.Path, "/v1/feed/snapshot/") && served.Add(1) == 4 {
				// The issuer dies while serving the 4th page.
				dead.Store(true)
				panic(http.ErrAbortHandler)
			}
			h.ServeHTTP(w, r)
		})
	}
	s.Restart()
	certs := synthetic(t, s, 60, 1)
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	if _, err := g.Sync(context.Background()); err == nil {
		t.Fatal("sync through a dying issuer succeeded")
	}
	fs, _ := g.cache.Feed()
	if fs.Resync == nil || fs.Resync.Certs != 24 {
		t.Fatalf("progress kept after the failure: %+v", fs.Resync)
	}
	s.Stop()
	if _, err := g.Sync(context.Background()); err == nil {
		t.Fatal("sync with the issuer down succeeded")
	}
	s.Restart()
	more := synthetic(t, s, 7, 2) // issued while the gate was away
	res := g.sync(t)
	if res.Cursor != 67 {
		t.Fatalf("after restart: %+v", res)
	}
	checkHolds(t, g, append(certs, more...), 67)
	if served.Load() < 8 {
		t.Fatalf("resumed sync fetched only %d snapshot pages in all", served.Load())
	}
}

// A gate further behind than the issuer's log retention, or facing a new
// issuer epoch, resyncs from a snapshot.
func TestGoneAndNewEpochResync(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{PageSize: 8, LogRetention: time.Hour})
	certs := synthetic(t, s, 5, 1)
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g.sync(t)
	s.Clock.Advance(2 * time.Hour)
	certs = append(certs, synthetic(t, s, 30, 2)...)
	s.Clock.Advance(2 * time.Hour)
	if err := s.Revoke(certs[0].ID); err != nil {
		t.Fatal(err)
	}
	certs[0].Revoked = true
	if through, err := s.Prune(); err != nil || through != 24 {
		t.Fatalf("prune: %d %v", through, err)
	}
	res := g.sync(t)
	if !res.Resynced || res.Cursor != 36 {
		t.Fatalf("behind the retention: %+v", res)
	}
	checkHolds(t, g, certs, 35)

	// The issuer's state is lost and it starts again: a new epoch.
	s.Stop()
	os.Remove(s.Path)
	s.Restart()
	fresh := synthetic(t, s, 3, 3)
	res = g.sync(t)
	if !res.Resynced || res.Cursor != 3 {
		t.Fatalf("new epoch: %+v", res)
	}
	if fs, _ := g.cache.Feed(); fs.Epoch != s.Epoch() {
		t.Fatalf("epoch %x, want %x", fs.Epoch, s.Epoch())
	}
	checkHolds(t, g, append(certs, fresh...), 38)
}

func TestClockOffset(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g.clock.Set(s.Clock.Now().Add(-7*time.Minute - 20*time.Second)) // the gate is slow
	if _, ok := g.Offset(); ok {
		t.Fatal("offset known before any exchange")
	}
	g.sync(t)
	off, ok := g.Offset()
	if !ok || off != 7*time.Minute+20*time.Second {
		t.Fatalf("offset %v %v", off, ok)
	}
	if !g.Now().Equal(s.Clock.Now()) {
		t.Fatalf("corrected clock %v, issuer %v", g.Now(), s.Clock.Now())
	}
	// The verifier on the corrected clock accepts a token the issuer's
	// phone shows now; on the gate's own clock it would be from the future.
	c := synthetic(t, s, 1, 1)[0]
	g.sync(t)
	tok := verify.NewToken(&c.Key, c.ID, verify.StepOf(s.Clock.Now()))
	text, _ := tok.AppendText(nil)
	for _, tc := range []struct {
		clock verify.Clock
		want  verify.Reason
	}{{g, verify.OK}, {verify.ClockFunc(g.clock.Now), verify.CodeFromFuture}} {
		v, err := verify.New(verify.Config{Store: g.cache, Clock: tc.clock, Policy: verify.DefaultPolicy(verify.Entry), TrustedAfter: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			t.Fatal(err)
		}
		d, _ := v.Verify(text)
		if d.Reason != tc.want {
			t.Errorf("decision %v, want %v", d.Reason, tc.want)
		}
	}
}

func TestStalenessAlarmAndRefusal(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{MaxAge: 10 * time.Minute})
	c := synthetic(t, s, 1, 1)[0]
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), func(c *keysync.Config) { c.RefuseWhenStale = true })
	store := g.Guard(g.cache)
	if !g.Stale() {
		t.Fatal("a never-synced gate is not stale")
	}
	g.sync(t)
	if g.Stale() {
		t.Fatal("stale right after a sync")
	}
	if _, ok, err := store.Lookup(c.ID, verify.Entry); !ok || err != nil {
		t.Fatalf("fresh lookup: %v %v", ok, err)
	}
	s.Stop()
	g.clock.Advance(11 * time.Minute)
	if _, err := g.Sync(context.Background()); err == nil {
		t.Fatal("sync with the issuer down")
	}
	if !g.Stale() {
		t.Fatal("not stale past the max age")
	}
	if _, _, err := store.Lookup(c.ID, verify.Entry); !errors.Is(err, keysync.ErrStale) {
		t.Fatalf("stale lookup: %v, want ErrStale", err)
	}
	s.Restart()
	g.sync(t)
	evs, _ := g.journal.Events(0, 10)
	var alarms []string
	for _, e := range evs {
		if e.Kind == event.Alarm {
			alarms = append(alarms, e.Detail)
		}
	}
	// fresh → stale → fresh
	if len(alarms) != 2 || !strings.Contains(alarms[0], "stale") || !strings.Contains(alarms[1], "fresh") {
		t.Fatalf("alarm events %q", alarms)
	}
	st := g.Status()
	if st.Stale || st.MaxAge != 10*time.Minute {
		t.Fatalf("status %+v", st)
	}
}

// Events go up exactly once even when the connection drops after the
// issuer stored them but before the gate heard back.
func TestEventsUploadedExactlyOnce(t *testing.T) {
	var drop atomic.Bool
	s := issuertest.Start(t, issuer.Options{})
	s.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/events" && drop.Swap(false) {
				h.ServeHTTP(&recorder{header: http.Header{}}, r) // stored…
				panic(http.ErrAbortHandler)                      // …and the answer lost
			}
			h.ServeHTTP(w, r)
		})
	}
	s.Restart()
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), func(c *keysync.Config) { c.UploadBatch = 4 })
	for i := range 10 {
		if _, err := g.journal.AppendEvent(event.Event{Time: g.clock.Now(), Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, StepOffset: int64(i % 2)}); err != nil {
			t.Fatal(err)
		}
	}
	drop.Store(true)
	if n, err := g.Upload(context.Background()); err == nil {
		t.Fatalf("upload across a dropped connection reported success (%d)", n)
	}
	if evs, _ := g.journal.Events(0, 100); len(evs) != 10 {
		t.Fatalf("%d events left after a failed upload, want 10", len(evs))
	}
	s.Stop() // network down: nothing lost
	if _, err := g.Upload(context.Background()); err == nil {
		t.Fatal("upload with the issuer down reported success")
	}
	s.Restart()
	if n, err := g.Upload(context.Background()); err != nil || n != 10 {
		t.Fatalf("upload: %d %v", n, err)
	}
	if evs, _ := g.journal.Events(0, 100); len(evs) != 0 {
		t.Fatalf("%d events left after the upload", len(evs))
	}
	got, err := s.GateEvents("gate-07")
	if err != nil || len(got) != 10 {
		t.Fatalf("issuer holds %d events of the gate, want 10 (%v)", len(got), err)
	}
}

// TestBackoffRun: a gate with a fresh cache backs off from an issuer that
// does not answer, up to MaxBackoff, and polls at the interval once it
// answers again.
func TestBackoffRun(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	var waits []time.Duration
	ctx, cancel := context.WithCancel(context.Background())
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), func(c *keysync.Config) {
		c.MinBackoff, c.MaxBackoff = time.Second, 16*time.Second
		c.Sleep = func(_ context.Context, d time.Duration) error {
			waits = append(waits, d)
			switch len(waits) {
			case 8:
				s.Restart()
			case 10:
				cancel()
			}
			return ctx.Err()
		}
	})
	g.sync(t) // fresh: the gate grants meanwhile, so there is no hurry
	s.Stop()
	if err := g.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	for i, w := range waits[:8] {
		ceil := min(time.Second<<i, 16*time.Second)
		if w < time.Second || w > ceil {
			t.Errorf("wait %d after %d failures: %v, want in [1s, %v]", i, i+1, w, ceil)
		}
	}
	if waits[8] != 10*time.Second || waits[9] != 10*time.Second {
		t.Errorf("waits once the issuer is back: %v, want the 10 s interval", waits[8:])
	}
}

// Idle polls do not write the cache file every 10 s (flash wear); the
// time of the last sync is stored every few minutes.
func TestIdlePollsSpareTheFlash(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	synthetic(t, s, 3, 1)
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g.sync(t)
	before := fileSum(t, g.cache.Path())
	for range 20 { // 200 s of polls
		g.clock.Advance(10 * time.Second)
		g.sync(t)
	}
	if fileSum(t, g.cache.Path()) != before {
		t.Fatal("idle polls wrote the cache file")
	}
	g.clock.Advance(5 * time.Minute)
	g.sync(t)
	if fs, _ := g.cache.Feed(); !fs.SyncedAt.Equal(g.clock.Now()) {
		t.Fatalf("last sync stored %v, want %v", fs.SyncedAt, g.clock.Now())
	}
}

func TestProbe(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	synthetic(t, s, 3, 9)
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g.clock.Set(s.Clock.Now().Add(-90 * time.Second)) // the gate is slow
	before := fileSum(t, g.cache.Path())
	p, err := g.Probe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if p.Head != 3 || !p.OffsetOK || p.Offset != 90*time.Second || p.KeyID == "" || !p.IssuerTime.Equal(s.Clock.Now()) {
		t.Fatalf("probe %+v", p)
	}
	// A probe learns nothing and writes nothing.
	if _, ok := g.Offset(); ok {
		t.Error("the probe set the client's clock offset")
	}
	if fileSum(t, g.cache.Path()) != before {
		t.Error("the probe changed the cache file")
	}

	// Signed by a key the gate does not trust.
	other := newGate(t, s.URL, feedtest.Keyring(t, feedtest.Signer(t, "other", 7)), nil)
	if _, err := other.Probe(context.Background()); !errors.Is(err, feed.ErrUnknownKey) {
		t.Errorf("probe with another trusted key: %v, want ErrUnknownKey", err)
	}
	// Without a cache (diag on a damaged cache file).
	if p2, err := keysync.ProbeHead(context.Background(), keysync.Config{URL: s.URL, Keys: feedtest.Keyring(t, s.Opts.Signer)}); err != nil || p2.Head != 3 {
		t.Errorf("ProbeHead: %+v %v", p2, err)
	}
	// The issuer gone.
	s.Stop()
	if _, err := g.Probe(context.Background()); err == nil || keysync.Diagnose(err) != keysync.TroubleNetwork {
		t.Errorf("probe of a stopped issuer: %v, want it judged unreachable", err)
	}
}

// TestRestartedJournalLosesNoEvent: a gate's journal starts again (the
// board replaced, or the journal moved aside after a lost cache key) and
// numbers its events from 1, which the issuer already holds for the
// gate's earlier events. Those events must not be taken for duplicates
// and dropped: the issuer refuses the upload as a conflict, the gate
// renumbers them after the issuer's last and uploads them, with an alarm
// saying so. A retry of the same events stays a duplicate.
func TestRestartedJournalLosesNoEvent(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	keys := feedtest.Keyring(t, s.Opts.Signer)
	old := newGate(t, s.URL, keys, nil)
	old.alarms(t, 5, "old journal")
	if n, err := old.Upload(context.Background()); err != nil || n != 5 {
		t.Fatalf("first journal's upload: %d %v", n, err)
	}

	fresh := newGate(t, s.URL, keys, nil) // the same gate ID, a new journal
	fresh.alarms(t, 3, "new journal")
	if evs, _ := fresh.journal.Events(0, 10); len(evs) != 3 || evs[0].Seq != 1 {
		t.Fatalf("the new journal's events %+v, want 3 from seq 1", evs)
	}
	if n, err := fresh.Upload(context.Background()); err != nil || n != 4 {
		t.Fatalf("the new journal's upload: %d %v, want its 3 events and the alarm", n, err)
	}
	raw, err := s.GateEvents("gate-07")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for i, r := range raw {
		var e event.Event
		if err := json.Unmarshal(r, &e); err != nil {
			t.Fatal(err)
		}
		if e.Seq != uint64(i+1) {
			t.Errorf("the issuer's event %d has seq %d", i, e.Seq)
		}
		got = append(got, e.Detail)
	}
	want := []string{"old journal 0", "old journal 1", "old journal 2", "old journal 3", "old journal 4",
		"new journal 0", "new journal 1", "new journal 2"}
	if len(got) != 9 || !slices.Equal(got[:8], want) || !strings.Contains(got[8], "event log started again: the issuer held numbers up to 5 for this gate, so 3 events") {
		t.Fatalf("the issuer holds %q, want %q and the renumbering alarm", got, want)
	}
	// The journal goes on after the renumbered events.
	fresh.alarms(t, 1, "later")
	if evs, _ := fresh.journal.Events(0, 10); len(evs) != 1 || evs[0].Seq != 10 {
		t.Fatalf("the next event %+v, want seq 10", evs)
	}
	if n, err := fresh.Upload(context.Background()); err != nil || n != 1 {
		t.Fatalf("upload after the renumbering: %d %v", n, err)
	}

	// A retry of events the issuer holds is a duplicate, even read back
	// in another time zone.
	up := feed.EventUpload{GateID: "gate-07"}
	for _, r := range raw[:2] {
		var e event.Event
		json.Unmarshal(r, &e)
		e.Time = e.Time.In(time.FixedZone("CST", 8*3600))
		up.Events = append(up.Events, e)
	}
	ack, err := s.StoreEvents(&up)
	if err != nil || ack.Duplicates != 2 || ack.Stored != 0 {
		t.Fatalf("retry of held events: %+v %v, want 2 duplicates", ack, err)
	}
	// Another event under a held number is a conflict: nothing stored.
	up.Events = []event.Event{{Seq: 3, Time: old.clock.Now(), Kind: event.Alarm, Detail: "other"}, {Seq: 11, Time: old.clock.Now(), Kind: event.Alarm, Detail: "new"}}
	var conflict *feed.EventConflict
	if _, err := s.StoreEvents(&up); !errors.As(err, &conflict) || conflict.Seq != 3 || conflict.LastSeq != 10 {
		t.Fatalf("an upload reusing seq 3: %v, want a conflict at 3, last 10", err)
	}
	if raw, _ := s.GateEvents("gate-07"); len(raw) != 10 {
		t.Fatalf("the issuer holds %d events after a refused upload, want 10", len(raw))
	}
}

// TestImplausibleConflictRenumbersNothing: a conflict that no issuer
// could send (a last number past any gate's life, or a number the gate did
// not send) renumbers nothing, even signed with the issuer's key (a bug
// there, or a key stolen): the events stay as they are, for the next
// round. An unsigned one is refused before that.
func TestImplausibleConflictRenumbersNothing(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	var answer atomic.Pointer[feed.EventConflict]
	s.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a := answer.Load()
			if r.URL.Path != "/v1/events" || a == nil {
				h.ServeHTTP(w, r)
				return
			}
			var up feed.EventUpload
			json.NewDecoder(r.Body).Decode(&up)
			c := *a
			if c.KeyID == "" { // sign it, unless the case says otherwise
				s.Opts.Signer.SignConflict(&up, &c)
			} else {
				c.KeyID = ""
			}
			w.WriteHeader(http.StatusConflict)
			json.NewEncoder(w).Encode(&c)
		})
	}
	s.Restart()
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g.alarms(t, 3, "kept")
	for _, c := range []struct {
		answer feed.EventConflict
		want   string
	}{
		{feed.EventConflict{Code: feed.SeqReused, Seq: 2, LastSeq: 1 << 53}, "implausible"},
		{feed.EventConflict{Code: feed.SeqReused, Seq: 7, LastSeq: 9}, "implausible"}, // not sent
		{feed.EventConflict{Code: feed.SeqReused, Seq: 2, LastSeq: 1}, "implausible"}, // last before seq
		{feed.EventConflict{Code: feed.SeqReused, Seq: 2, LastSeq: 5, KeyID: "unsigned"}, "unsigned"},
		{feed.EventConflict{Code: "something_else", Seq: 2, LastSeq: 5}, "409"},
	} {
		answer.Store(&c.answer)
		if _, err := g.Upload(context.Background()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Fatalf("%+v: upload %v, want an error saying %q", c.answer, err, c.want)
		}
		if evs, _ := g.journal.Events(0, 10); len(evs) != 3 || evs[0].Seq != 1 || evs[2].Seq != 3 {
			t.Fatalf("%+v: events %+v, want 1 to 3 as they were", c.answer, evs)
		}
	}
	answer.Store(nil)
	if n, err := g.Upload(context.Background()); err != nil || n != 3 {
		t.Fatalf("upload once the issuer answers: %d %v", n, err)
	}
}

// TestForgedAckDeletesNothing: the events are deleted on the issuer's
// word only. A proxy (or a host on the station LAN) that answers the
// upload itself, unsigned, signed with a key the gate does not trust, or
// with the issuer's genuine answer to an earlier upload, makes the gate
// keep every event; the issuer's own answer then lets it go.
func TestForgedAckDeletesNothing(t *testing.T) {
	s := issuertest.Start(t, issuer.Options{})
	evil := feedtest.Signer(t, "evil", 9)
	var (
		mode    atomic.Int32 // 0 pass, 1 unsigned, 2 evil key, 3 record then fail, 4 replay
		genuine atomic.Pointer[[]byte]
	)
	s.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/v1/events" || mode.Load() == 0 {
				h.ServeHTTP(w, r)
				return
			}
			var up feed.EventUpload
			json.NewDecoder(r.Body).Decode(&up)
			ack := feed.EventAck{Stored: len(up.Events), AckedThrough: up.Events[len(up.Events)-1].Seq}
			switch mode.Load() {
			case 2:
				evil.SignAck(&up, &ack)
			case 3: // the issuer's answer, kept by the proxy, the gate told it failed
				rec := &recorder{header: http.Header{}}
				body, _ := json.Marshal(&up)
				r2 := r.Clone(r.Context())
				r2.Body = io.NopCloser(bytes.NewReader(body))
				h.ServeHTTP(rec, r2)
				b := rec.body.Bytes()
				genuine.Store(&b)
				http.Error(w, "bad gateway", http.StatusBadGateway)
				return
			case 4:
				w.Write(*genuine.Load())
				return
			}
			json.NewEncoder(w).Encode(&ack)
		})
	}
	s.Restart()
	g := newGate(t, s.URL, feedtest.Keyring(t, s.Opts.Signer), nil)
	g.alarms(t, 3, "kept")
	for m, want := range []string{1: "unsigned", 2: `key "evil"`, 3: "502", 4: "does not match this upload"} {
		if m == 0 {
			continue
		}
		mode.Store(int32(m))
		_, err := g.Upload(context.Background())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("mode %d: upload %v, want an error saying %q", m, err, want)
		}
		if m != 3 && !errors.Is(err, feed.ErrAnswer) {
			t.Errorf("mode %d: %v is not feed.ErrAnswer", m, err)
		}
		if evs, _ := g.journal.Events(0, 10); len(evs) != 3 {
			t.Fatalf("mode %d: %d events left, want all 3 kept", m, len(evs))
		}
	}
	mode.Store(0)
	if n, err := g.Upload(context.Background()); err != nil || n != 3 {
		t.Fatalf("upload to the issuer itself: %d %v", n, err)
	}
	if raw, _ := s.GateEvents("gate-07"); len(raw) != 3 {
		t.Fatalf("the issuer holds %d events, want 3", len(raw))
	}
}
