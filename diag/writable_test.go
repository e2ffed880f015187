package diag_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gateagent/diag"
)

// TestCacheDirectoryNotWritable: the agent's user owns the cache file but
// may not write its directory: the agent runs (the service check passes),
// but could not make a new file, so the cache check warns with what to do.
func TestCacheDirectoryNotWritable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving the cache file to another user needs root (CI runs as root); TestStandaloneFaults covers an unwritable cache as any user")
	}
	st := newStation(t)
	st.agentUser = "nobody"
	for _, d := range []string{st.dir, filepath.Dir(st.dir)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(st.cache, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	code, r, _ := st.report()
	cache, _ := r.Find(diag.NameCache)
	service, _ := r.Find(diag.NameService)
	if code != 1 || cache.Status != diag.Warn || service.Status != diag.Pass {
		t.Fatalf("exit %d:\n%s", code, describe(r))
	}
	for _, want := range []string{st.dir + " is not writable by nobody", "could not make a new one", "chown -R nobody:nogroup " + st.dir} {
		if !strings.Contains(cache.Line, want) {
			t.Errorf("cache line does not say %q: %s", want, cache.Line)
		}
	}
	// The file itself taken away: the agent cannot start.
	if err := os.Chown(st.cache, 0, 0); err != nil {
		t.Fatal(err)
	}
	code, r, _ = st.report()
	cache, _ = r.Find(diag.NameCache)
	service, _ = r.Find(diag.NameService)
	if code != 2 || cache.Status != diag.Fail || service.Status != diag.Fail || !strings.Contains(cache.Line, "cannot open its cache") ||
		!strings.Contains(service.Line, "cache.db is not writable by nobody") {
		t.Fatalf("exit %d:\n%s", code, describe(r))
	}
}
