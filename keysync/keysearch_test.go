package keysync_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/event"
	"gateagent/feed"
	"gateagent/feed/feedtest"
	"gateagent/internal/eventually"
	"gateagent/issuer"
	"gateagent/issuer/issuertest"
	"gateagent/keysync"
	"gateagent/verify"
)

// keySearch finds certificate keys in bytes: each key raw, in hex (both
// cases) and in base64 (standard and URL alphabets, at each of the three
// alignments a key can have inside a longer base64 text). Patterns are
// indexed by their first 8 bytes, so a file is read once whatever the
// number of keys.
type keySearch struct {
	index map[uint64][]pattern
}

type pattern struct {
	key  int // index of the key
	form string
	text []byte
}

func newKeySearch(keys []verify.Key) *keySearch {
	s := &keySearch{index: map[uint64][]pattern{}}
	add := func(i int, form string, text []byte) {
		h := binary.LittleEndian.Uint64(text)
		s.index[h] = append(s.index[h], pattern{i, form, text})
	}
	for i, k := range keys {
		add(i, "raw", bytes.Clone(k[:]))
		add(i, "hex", []byte(hex.EncodeToString(k[:])))
		add(i, "HEX", []byte(strings.ToUpper(hex.EncodeToString(k[:]))))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding} {
			for skip := range 3 {
				// Whole 3-byte groups of the key from byte skip: the same
				// characters whatever precedes the key.
				part := k[skip:]
				part = part[:len(part)/3*3]
				add(i, "base64", []byte(enc.EncodeToString(part)))
			}
		}
	}
	return s
}

// find returns, for each key found in data, one form it was found in.
func (s *keySearch) find(data []byte, found map[int]string) {
	for i := 0; i+8 <= len(data); i++ {
		for _, p := range s.index[binary.LittleEndian.Uint64(data[i:])] {
			if bytes.HasPrefix(data[i:], p.text) {
				found[p.key] = p.form
			}
		}
	}
}

// findIn searches every regular file under dirs.
func (s *keySearch) findIn(t *testing.T, dirs ...string) (found map[int]string, files, size int) {
	t.Helper()
	found = map[int]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			files++
			size += len(b)
			s.find(b, found)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found, files, size
}

// The search itself finds a key in each form, wherever it lies.
func TestKeySearchFindsEveryForm(t *testing.T) {
	keys := make([]verify.Key, 6)
	for i := range keys {
		keys[i] = verify.Key(sha256.Sum256([]byte{byte(i)}))
	}
	s := newKeySearch(keys)
	blob := []byte("header ")
	blob = append(blob, keys[0][:]...)
	blob = append(blob, " "+hex.EncodeToString(keys[1][:])+" "+strings.ToUpper(hex.EncodeToString(keys[2][:]))...)
	for pad := range 3 { // a key inside a longer base64 text, at each alignment
		b := append(make([]byte, pad), keys[3+pad][:]...)
		blob = append(blob, (" {\"k\":\"" + base64.URLEncoding.EncodeToString(append(b, 9, 9)) + "\"}")...)
	}
	found := map[int]string{}
	s.find(blob, found)
	for i := range keys {
		if _, ok := found[i]; !ok {
			t.Errorf("key %d not found in %q", i, blob)
		}
	}
	found = map[int]string{}
	s.find(bytes.Repeat([]byte("no key here "), 1000), found)
	if len(found) != 0 {
		t.Errorf("found %v in bytes without a key", found)
	}
}

// TestNoKeyOnAnyDisk: after a full sync of 10,000 certificates through a
// station's caching proxy (Debian's nginx), no certificate key is on the
// proxy's disk (its cache directory, where every page stays for a year),
// in the gate's cache file, or anywhere in the gate's state directory,
// raw, hex or base64: the pages hold them sealed to the fleet, the cache
// sealed under the cache key. The same search over a deliberately
// unsealed control run (the same certificates served in format 1 through
// the same kind of proxy, and a cache of schema 2) finds them all.
func TestNoKeyOnAnyDisk(t *testing.T) {
	const n = 10_000
	s := issuertest.Start(t, issuer.Options{PageSize: 1000})
	certs := synthetic(t, s, n, 7)
	keys := make([]verify.Key, n)
	for i, c := range certs {
		keys[i] = c.Key
	}
	search := newKeySearch(keys)

	// Sealed: a gate syncs through the proxy into its state directory,
	// and works a little (a grant's events, a passage).
	proxy, proxyDir := startNginxDir(t, s.Addr)
	state := t.TempDir()
	c, err := cache.Open(filepath.Join(state, "cache.db"), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	j, err := cache.OpenJournal(cache.JournalPath(c.Path()), cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	pages := &cacheLog{got: map[string]string{}, rt: http.DefaultTransport}
	cl, err := keysync.New(keysync.Config{URL: proxy, Keys: feedtest.Keyring(t, s.Opts.Signer), Fleet: feedtest.Fleet(t),
		Cache: c, Journal: j, GateID: "SEARCH-1", Now: s.Clock.Now, HTTP: &http.Client{Transport: pages, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.Sync(context.Background())
	if err != nil || res.Cursor != n || res.Upserts != n {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	store := &cache.Store{Cache: c, Journal: j}
	for _, cert := range certs[:50] {
		if r, ok, err := store.Lookup(cert.ID, verify.Entry); err != nil || !ok || r.Key != cert.Key {
			t.Fatalf("cert %s after the sync: %v %v", cert.ID, ok, err)
		}
	}
	if _, err := j.RecordPassage(certs[0].ID, verify.Entry, event.Event{Time: s.Clock.Now(), Kind: event.Passage, Direction: verify.Entry, CertID: certs[0].ID}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	j.Close()
	snapshots := 0
	for p := range pages.got {
		if strings.HasPrefix(p, "/v1/feed/snapshot/") {
			snapshots++
		}
	}
	cached(t, filepath.Join(proxyDir, "cache"), snapshots)
	found, files, size := search.findIn(t, proxyDir, state)
	if files < 10 || size < n*feed.UpsertLen {
		t.Fatalf("searched %d files, %d bytes: the proxy's cache and the gate's files should hold at least the %d pages' bytes", files, size, n/1000)
	}
	if len(found) > 0 {
		for i, form := range found {
			t.Errorf("cert %s: its key is on a disk (%s)", certs[i].ID, form)
			break
		}
		t.Fatalf("%d of %d keys found on the proxy's and the gate's disks", len(found), n)
	}
	t.Logf("sealed: %d files, %d bytes searched (proxy cache and gate state): no key", files, size)

	// Control: format 1 pages through a proxy, a cache of schema 2.
	s.Wrap = func(h http.Handler) http.Handler {
		return tamper(h, func(path string, b []byte) []byte {
			if !strings.HasPrefix(path, "/v1/feed/snapshot/") {
				return b
			}
			d, err := feed.Open(b, feedtest.Keyring(t, s.Opts.Signer), feedtest.Fleet(t))
			if err != nil {
				t.Errorf("control: %s: %v", path, err)
				return b
			}
			return feedtest.SignV1(s.Opts.Signer, d)
		})
	}
	s.Restart()
	proxy2, proxyDir2 := startNginxDir(t, s.Addr)
	after := verify.CertID{}
	for pages := 0; ; pages++ {
		if pages == snapshots {
			t.Fatalf("control: more pages than the sealed run's %d", snapshots)
		}
		resp, err := http.Get(proxy2 + "v1/feed/snapshot/" + strconv.Itoa(n) + "/" + after.String())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(body, []byte("GAF1")) {
			t.Fatalf("control page %d: %s %q", pages, resp.Status, body[:min(len(body), 40)])
		}
		if _, err := feed.Open(body, feedtest.Keyring(t, s.Opts.Signer), feedtest.Fleet(t)); !errors.Is(err, feed.ErrVersion) {
			t.Fatalf("control page %d: a gate says %v, want ErrVersion", pages, err)
		}
		// The page's last ID, read from format 1's layout: the next
		// page follows it.
		k := int(body[6])
		nUp := int(binary.BigEndian.Uint32(body[7+k+80:]))
		if nUp == 0 || body[5]&1 != 0 {
			break
		}
		last := 7 + k + 88 + (nUp-1)*(verify.CertIDLen+verify.KeyLen+17)
		after = verify.CertID(body[last : last+verify.CertIDLen])
	}
	state2 := t.TempDir()
	if err := cachetest.WriteLegacy(filepath.Join(state2, "cache.db"), certs, n, 1); err != nil {
		t.Fatal(err)
	}
	cached(t, filepath.Join(proxyDir2, "cache"), snapshots)
	foundProxy, _, _ := search.findIn(t, proxyDir2)
	foundState, _, _ := search.findIn(t, state2)
	if len(foundProxy) != n || len(foundState) != n {
		t.Fatalf("control: %d keys found on the proxy's disk and %d in the unsealed cache, want all %d in each: the search does not see keys", len(foundProxy), len(foundState), n)
	}
}

// cached waits until nginx's cache directory holds want pages: it stores a
// page as it answers, finishing the file just after.
func cached(t *testing.T, dir string, want int) {
	t.Helper()
	var n int
	if !eventually.Within(10*time.Second, func() bool {
		n = 0
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return nil
		})
		return n >= want
	}) {
		t.Fatalf("nginx's cache holds %d pages, want %d", n, want)
	}
}
