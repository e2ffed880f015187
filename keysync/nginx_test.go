package keysync_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gateagent/feed/feedtest"
	"gateagent/internal/eventually"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
)

// startNginx runs Debian's nginx as a caching reverse proxy in front of
// upstream (host:port) and returns its base URL. CI installs nginx and sets
// GATEAGENT_REQUIRE_NGINX=1, so that the test can never be skipped there.
func startNginx(t *testing.T, upstream string) string {
	t.Helper()
	u, _ := startNginxDir(t, upstream)
	return u
}

// startNginxDir is startNginx, and also returns nginx's directory: its
// cache of pages is in cache/ there.
func startNginxDir(t *testing.T, upstream string) (string, string) {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("GATEAGENT_REQUIRE_NGINX") != "" {
				t.Fatal("nginx not found and GATEAGENT_REQUIRE_NGINX is set: apt-get install nginx-light")
			}
			t.Skip("nginx not installed (apt-get install nginx-light); CI runs this test")
		}
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	conf := fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
  log_format cache '$request_uri $upstream_cache_status $status';
  access_log %[1]s/access.log cache;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  proxy_cache_path %[1]s/cache levels=1:2 keys_zone=feed:1m max_size=64m inactive=1d use_temp_path=off;
  server {
    listen %[2]s;
    location / {
      proxy_pass http://%[3]s;
      proxy_http_version 1.1;
      proxy_cache feed;
      proxy_cache_revalidate on;
      proxy_cache_lock on;
      add_header X-Cache-Status $upstream_cache_status always;
    }
  }
}
`, dir, addr, upstream)
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Logf("nginx error log:\n%s", b)
		}
	})
	eventually.True(t, 10*time.Second, "nginx listens on "+addr, func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return "http://" + addr + "/", dir
}

// cacheLog records the X-Cache-Status nginx gave each request of a gate.
type cacheLog struct {
	mu  sync.Mutex
	got map[string]string
	rt  http.RoundTripper
}

func (c *cacheLog) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		c.got[r.URL.Path] = resp.Header.Get("X-Cache-Status")
		c.mu.Unlock()
	}
	return resp, err
}

// A station's caching proxy serves the second gate's full sync from its
// cache: the issuer sees each page once.
func TestStationProxyCache(t *testing.T) {
	var mu sync.Mutex
	upstream := map[string]int{}
	s := issuertest.Start(t, issuer.Options{PageSize: 8})
	s.Wrap = func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			upstream[r.URL.Path]++
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	}
	s.Restart()
	certs := synthetic(t, s, 50, 1)
	proxy := startNginx(t, s.Addr)

	gateVia := func() (*gate, *cacheLog) {
		log := &cacheLog{got: map[string]string{}, rt: http.DefaultTransport}
		g := newGate(t, proxy, feedtest.Keyring(t, s.Opts.Signer), func(c *keysync.Config) {
			c.HTTP = &http.Client{Transport: log, Timeout: 10 * time.Second}
		})
		return g, log
	}
	a, first := gateVia()
	b, second := gateVia()
	for _, g := range []*gate{a, b} {
		if res := g.sync(t); res.Cursor != 50 {
			t.Fatalf("%+v", res)
		}
		checkHolds(t, g, certs, 50)
	}
	snapshots := 0
	for path, status := range second.got {
		switch {
		case strings.HasPrefix(path, "/v1/feed/snapshot/"):
			snapshots++
			if status != "HIT" {
				t.Errorf("gate B %s: %q, want HIT (gate A: %q)", path, status, first.got[path])
			}
			if upstream[path] != 1 {
				t.Errorf("%s reached the issuer %d times, want once", path, upstream[path])
			}
		case strings.HasPrefix(path, "/v1/feed/head"):
			if status == "HIT" {
				t.Errorf("the head (never cached) was a cache hit")
			}
		}
	}
	if snapshots != 6 { // 48 certificates as of change 48, 8 a page
		t.Errorf("gate B fetched %d snapshot pages, want 6: %v", snapshots, second.got)
	}
	// The last log page (48, 50] grows: the proxy revalidates it rather
	// than serve it stale. Once full it is immutable and shared.
	certs = append(certs, synthetic(t, s, 10, 2)...)
	for _, g := range []*gate{a, b} {
		if res := g.sync(t); res.Cursor != 60 || res.Resynced {
			t.Fatalf("%+v", res)
		}
		checkHolds(t, g, certs, 60)
	}
	if got := second.got["/v1/feed/log/6"]; got != "HIT" || upstream["/v1/feed/log/6"] != 3 {
		t.Errorf("full log page 6 for gate B: %q, issuer asked %d times; want HIT and 3 (the growing tail once per gate, the full page once)", got, upstream["/v1/feed/log/6"])
	}
}
