package keysync_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/feed/feedtest"
	"gateagent/internal/syncbuf"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
)

// flakyIssuer is a real issuer on loopback whose feed can be taken down
// (503) and brought back without restarting its server, and which counts
// the heads it is asked for: one per feed round. The server runs outside
// the test's synctest bubble, so the bubble's clock is the gate's alone.
type flakyIssuer struct {
	*issuertest.Server
	down  atomic.Bool
	heads atomic.Int64
}

func startFlaky(t *testing.T, maxAge time.Duration) *flakyIssuer {
	f := &flakyIssuer{Server: issuertest.Start(t, issuer.Options{MaxAge: maxAge})}
	f.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/v1/feed/head") {
				f.heads.Add(1)
			}
			if f.down.Load() {
				http.Error(w, "down for the test", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	f.Restart()
	synthetic(t, f.Server, 3, 7)
	return f
}

// bubbleGate is a feed client made inside a synctest bubble: time.Now is
// the bubble's, and its HTTP client keeps no idle connection (an idle
// connection's reader would never let the bubble's clock move).
func bubbleGate(t *testing.T, f *flakyIssuer, logs *syncbuf.Buffer, mod func(*keysync.Config)) (*keysync.Client, *cache.Journal) {
	t.Helper()
	s := cachetest.OpenStore(t)
	cfg := keysync.Config{URL: f.URL, Keys: feedtest.Keyring(t, f.Opts.Signer), Fleet: feedtest.Fleet(t), Cache: s.Cache, Journal: s.Journal, GateID: "gate-07",
		HTTP:   &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	if mod != nil {
		mod(&cfg)
	}
	cl, err := keysync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, s.Journal
}

// runBubbleGate starts a gate made by bubbleGate in the bubble, stopped
// when the test ends.
func runBubbleGate(t *testing.T, f *flakyIssuer, logs *syncbuf.Buffer, mod func(*keysync.Config)) (*keysync.Client, *cache.Journal) {
	t.Helper()
	cl, j := bubbleGate(t, f, logs, mod)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return cl, j
}

// outage runs a gate that has never synced, in the bubble, through ten
// minutes of its issuer down; the issuer is still down when it returns.
func outage(t *testing.T, f *flakyIssuer, logs *syncbuf.Buffer) *keysync.Client {
	t.Helper()
	f.down.Store(true)
	cl, _ := runBubbleGate(t, f, logs, nil)
	time.Sleep(10 * time.Minute) // fake time: the bubble's ten minutes
	synctest.Wait()
	return cl
}

// fakeUntil moves the bubble's clock a tenth of a second at a time until
// cond holds, and returns how long that took on it; it fails the test
// naming what it waited for when cond has not held within limit.
func fakeUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond) // fake time: the bubble's clock
		synctest.Wait()
	}
	return time.Since(start)
}

func alarms(t *testing.T, c *cache.Journal) []event.Event {
	t.Helper()
	evs, err := c.Events(0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for _, e := range evs {
		if e.Kind == event.Alarm {
			out = append(out, e)
		}
	}
	return out
}

// TestStaleAlarmFromTimer: the stale alarm (event and log line) comes at
// the moment the cache passes the feed's maximum age, from a timer, with
// no feed round in between (the next is an hour away).
func TestStaleAlarmFromTimer(t *testing.T) {
	f := startFlaky(t, time.Minute)
	synctest.Test(t, func(t *testing.T) {
		var logs syncbuf.Buffer
		cl, c := runBubbleGate(t, f, &logs, func(c *keysync.Config) { c.Interval = time.Hour })

		synctest.Wait() // the first round is done
		st := cl.Status()
		if st.FreshAt.IsZero() || st.Stale || f.heads.Load() != 1 {
			t.Fatalf("after the first round: %+v, %d heads", st, f.heads.Load())
		}
		staleAt := st.FreshAt.Add(time.Minute)
		time.Sleep(time.Until(staleAt) - time.Millisecond)
		synctest.Wait()
		if a := alarms(t, c); len(a) != 0 || strings.Contains(logs.String(), "stale") {
			t.Fatalf("alarm before the max age passed: %+v", a)
		}
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		a := alarms(t, c)
		if len(a) != 1 || !strings.Contains(a[0].Detail, "key cache stale") {
			t.Fatalf("alarm events %+v, want the stale alarm", a)
		}
		if d := a[0].Time.Sub(staleAt); d < 0 || d > 5*time.Millisecond {
			t.Errorf("alarm at %v, %v after the max age passed", a[0].Time, d)
		}
		if !strings.Contains(logs.String(), "level=ERROR msg=\"key cache stale") {
			t.Errorf("no error line for the stale cache:\n%s", logs.String())
		}
		if n := f.heads.Load(); n != 1 {
			t.Errorf("%d feed rounds, want the first only: the alarm must not wait for a round", n)
		}
	})
}

// TestRecoversWithinSecondsOfTheIssuer: with refuse_when_stale, a gate
// whose issuer has been down for half an hour (its backoff grown to many
// minutes) retries as soon as the cache turns stale, then every few
// seconds, and is fresh again within StaleRetry of the issuer's return.
func TestRecoversWithinSecondsOfTheIssuer(t *testing.T) {
	const maxAge = 30 * time.Minute
	f := startFlaky(t, maxAge)
	synctest.Test(t, func(t *testing.T) {
		var logs syncbuf.Buffer
		cl, _ := runBubbleGate(t, f, &logs, func(c *keysync.Config) {
			c.RefuseWhenStale = true
			c.MaxBackoff = time.Hour // so that only the fix can make it quick
		})
		synctest.Wait()
		staleAt := cl.Status().FreshAt.Add(maxAge)
		f.down.Store(true)

		time.Sleep(time.Until(staleAt) - time.Second)
		synctest.Wait()
		if cl.Status().Stale {
			t.Fatal("stale before the max age")
		}
		if cl.Status().Failures < 5 {
			t.Fatalf("%d failures in half an hour: the backoff did not grow as the test needs", cl.Status().Failures)
		}
		before := f.heads.Load()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		st := cl.Status()
		if !st.Stale || !st.Refusing {
			t.Fatalf("past the max age: %+v", st)
		}
		if f.heads.Load() == before {
			t.Fatal("no round when the cache turned stale: the backoff was waited out")
		}
		before = f.heads.Load()
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := f.heads.Load() - before; n < 12 || n > 25 {
			t.Errorf("%d rounds in the minute the gate refused everyone, want one every 2.5-5 s", n)
		}

		f.down.Store(false)
		if d := fakeUntil(t, time.Minute, "fresh after the issuer came back", func() bool { return !cl.Stale() }); d > 5*time.Second {
			t.Errorf("fresh %v after the issuer came back, want within 5 s", d)
		}
		if !strings.Contains(logs.String(), "key cache fresh again") {
			t.Errorf("no line that the cache is fresh again:\n%s", logs.String())
		}
	})
}

// TestNeverSyncedRetriesQuickly: a gate that has never synced knows no
// certificate, so it cannot grant: it retries every few seconds, not on
// the growing backoff.
func TestNeverSyncedRetriesQuickly(t *testing.T) {
	f := startFlaky(t, 0)
	synctest.Test(t, func(t *testing.T) {
		var logs syncbuf.Buffer
		cl := outage(t, f, &logs)
		if n := f.heads.Load(); n < 120 || n > 241 {
			t.Errorf("%d rounds in 10 minutes, want one every 2.5-5 s", n)
		}
		f.down.Store(false)
		if d := fakeUntil(t, time.Minute, "the first sync once the issuer came", func() bool { return !cl.Status().FreshAt.IsZero() }); d > 5*time.Second {
			t.Errorf("first sync %v after the issuer came, want within 5 s", d)
		}
	})
}
