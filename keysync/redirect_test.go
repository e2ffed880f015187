package keysync_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"gateagent/event"
	"gateagent/feed/feedtest"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/verify"
)

// TestRedirectElsewhereRefused: an issuer address that answers with a
// redirect to another host is not followed, neither for the feed nor for
// the event upload (whose body, the gate's record of who passed, must not
// reach a host the gate was not configured with); the events stay in the
// journal, the trouble says what to fix. A redirect within the issuer's
// own host (a proxy moving a path) is followed.
func TestRedirectElsewhereRefused(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		http.Error(w, "not the issuer", http.StatusNotFound)
	}))
	defer other.Close()
	var away atomic.Bool
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	s.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if away.Load() {
				http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusTemporaryRedirect)
				return
			}
			if rest, ok := strings.CutPrefix(r.URL.Path, "/moved/"); ok { // the same host, another path
				http.Redirect(w, r, "/"+rest+"?"+r.URL.RawQuery, http.StatusPermanentRedirect)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	s.Restart()
	certs := synthetic(t, s, 5, 1)
	g := newGate(t, s.URL+"/moved/", feedtest.Keyring(t, s.Opts.Signer), nil)
	g.sync(t)
	checkHolds(t, g, certs, 5)
	ev := event.Event{Time: g.clock.Now(), Kind: event.Decision, Reason: verify.OK, Direction: verify.Entry, CertID: certs[0].ID}
	if _, err := g.journal.AppendEvent(ev); err != nil {
		t.Fatal(err)
	}

	away.Store(true)
	_, err := g.Sync(context.Background())
	if !errors.Is(err, keysync.ErrRedirect) || keysync.Diagnose(err) != keysync.TroubleRedirect || !strings.Contains(err.Error(), other.URL) {
		t.Errorf("sync redirected away: %v (trouble %v), want ErrRedirect naming %s", err, keysync.Diagnose(err), other.URL)
	}
	if _, err := g.Upload(context.Background()); !errors.Is(err, keysync.ErrRedirect) {
		t.Errorf("upload redirected away: %v, want ErrRedirect", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the other host was asked %d times", n)
	}
	if b, err := g.journal.Backlog(); err != nil || b.Events != 1 {
		t.Fatalf("backlog after a refused upload: %+v %v, want the event kept", b, err)
	}

	away.Store(false)
	if n, err := g.Upload(context.Background()); err != nil || n != 1 {
		t.Fatalf("upload through the same host's redirect: %d %v", n, err)
	}
}
