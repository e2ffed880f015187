// Package control is the agent's control socket: a Unix socket, mode 0660
// (root and the agent's group), that serves HTTP to `gateagent diag` and
// to local monitoring. The file's permissions are the access control, as
// with other daemons' sockets; each request's peer (uid, pid) is known to
// the handlers for the audit log.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// Listen makes the control socket at path, mode 0660. A socket file left
// by an agent that died is replaced; a live one (another agent answers on
// it) or a file that is not a socket is an error.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control: %s exists and is not a socket: remove it or set control.socket elsewhere", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control: another gateagent answers on %s: stop it first", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: removing the stale socket: %w", err)
		}
	}
	// The socket is made with the umask's permissions and then narrowed;
	// its directory (RuntimeDirectory, mode 0750) keeps others out
	// meanwhile.
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control: %w (does its directory exist? systemd's RuntimeDirectory=gateagent makes /run/gateagent)", err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return l, nil
}

// Serve serves h on l until ctx ends, then closes it, giving requests
// under way a second to finish (a sensor stream is cut).
func Serve(ctx context.Context, l net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second, // request bodies are a token at most
		IdleTimeout:       time.Minute,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
	}()
	err := srv.Serve(l)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Peer is who is on the other end of a control connection.
type Peer struct {
	UID, GID, PID int
	Known         bool
}

func (p Peer) String() string {
	if !p.Known {
		return "unknown"
	}
	return fmt.Sprintf("uid %d pid %d", p.UID, p.PID)
}

type peerKey struct{}

// PeerOf returns the peer of the request's connection.
func PeerOf(r *http.Request) Peer {
	p, _ := r.Context().Value(peerKey{}).(Peer)
	return p
}

// Client talks to a running agent over its control socket.
type Client struct {
	Path string
	hc   *http.Client
}

// NewClient returns a client of the socket at path.
func NewClient(path string) *Client {
	d := net.Dialer{Timeout: 2 * time.Second}
	// One connection per request, closed after it: a local socket costs
	// nothing to dial, and a client (diag, a test polling /healthz) then
	// leaves no idle connection holding a descriptor in the agent.
	return &Client{Path: path, hc: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}}
}

// Alive reports whether an agent answers on the socket.
func (c *Client) Alive(ctx context.Context) bool { return c.Ping(ctx) == nil }

// Ping asks the agent for its health and returns why it could not reach
// it: errors.Is(err, fs.ErrPermission) when the caller may not use the
// socket, fs.ErrNotExist or a refused connection when no agent listens.
// Any answer, healthy or not, is nil.
func (c *Client) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	resp, err := c.Do(ctx, http.MethodGet, "/healthz", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// Do sends one request; the caller closes the body. Any status is an
// answer; only a failure to reach the agent is an error.
func (c *Client) Do(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://gateagent"+path, body)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", c.Path, err)
	}
	return resp, nil
}
