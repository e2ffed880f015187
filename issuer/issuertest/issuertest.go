// Package issuertest runs a real reference issuer on loopback for tests:
// a bbolt state file in the test's temp dir, a real HTTP server, and a
// clock the test moves.
package issuertest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"gateagent/feed/feedtest"
	"gateagent/internal/eventually"
	"gateagent/issuer"
)

// Clock is a clock a test sets and advances.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Server is an issuer served on loopback.
type Server struct {
	*issuer.Issuer
	Path  string
	Addr  string // host:port, kept across Restart
	URL   string
	Clock *Clock
	Opts  issuer.Options
	srv   *httptest.Server
	t     testing.TB
	// Wrap, when set before Start, wraps the issuer's handler (a
	// tampering proxy, a connection dropper…).
	Wrap func(http.Handler) http.Handler
}

// Start opens an issuer on a new state file and serves it.
func Start(t testing.TB, o issuer.Options) *Server {
	t.Helper()
	s := &Server{Path: filepath.Join(t.TempDir(), "issuer.db"), t: t}
	if o.Signer == nil {
		o.Signer = feedtest.Signer(t, "test-1", 1)
	}
	if o.Fleet == nil {
		// feedtest.Fleet() holds its private part.
		o.Fleet = feedtest.Publics(feedtest.FleetKey(t, feedtest.DefaultFleetSeed))
	}
	if o.Now == nil {
		s.Clock = NewClock(time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC))
		o.Now = s.Clock.Now
	}
	s.Opts = o
	s.open()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) open() {
	s.t.Helper()
	is, err := issuer.Open(s.Path, s.Opts)
	if err != nil {
		s.t.Fatal(err)
	}
	s.Issuer = is
	var h http.Handler = is.Handler()
	if s.Wrap != nil {
		h = s.Wrap(h)
	}
	srv := httptest.NewUnstartedServer(h)
	if s.Addr != "" {
		var l net.Listener
		// The old port may linger a moment.
		if !eventually.Within(time.Second, func() bool { l, err = net.Listen("tcp", s.Addr); return err == nil }) {
			s.t.Fatal(err)
		}
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.Start()
	s.srv = srv
	s.Addr = srv.Listener.Addr().String()
	s.URL = srv.URL + "/"
}

// Stop closes the server and the state file (the issuer going down).
func (s *Server) Stop() {
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.srv = nil
	}
	if s.Issuer != nil {
		s.Issuer.Close()
		s.Issuer = nil
	}
}

// Restart brings the issuer back on the same address and state file.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.open()
}
