package station

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gateagent/verify"
)

func TestMessageRoundTrip(t *testing.T) {
	for _, m := range []message{
		{kind: kindHold, dir: verify.Entry, gate: "GZN-E07", cert: cert(1), at: t0, t: t0 + int64(hold), sent: t0 + 1000},
		{kind: kindRelease, dir: verify.Exit, gate: "X", cert: cert(2), at: t0, t: t0 + 1},
		{kind: kindPassed, dir: verify.Entry, gate: string(bytes.Repeat([]byte("g"), MaxGateID)), cert: cert(3), at: 1, t: -1},
	} {
		b := m.encode()
		if len(b) > MaxMessage {
			t.Fatalf("%d bytes, more than MaxMessage", len(b))
		}
		got, err := decodeMessage(b)
		if err != nil || got != m {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", m, got, err)
		}
	}
}

func TestDecodeMessageRefuses(t *testing.T) {
	good := (&message{kind: kindHold, dir: verify.Entry, gate: "E01", cert: cert(1), at: t0, t: t0}).encode()
	mod := func(f func([]byte) []byte) []byte { return f(slices.Clone(good)) }
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short":         good[:len(good)-1],
		"long":          append(slices.Clone(good), 0),
		"version":       mod(func(b []byte) []byte { b[0] = 2; return b }),
		"state version": mod(func(b []byte) []byte { b[0] = stateVersion; return b }),
		"kind 0":        mod(func(b []byte) []byte { b[1] = 0; return b }),
		"kind 4":        mod(func(b []byte) []byte { b[1] = 4; return b }),
		"direction":     mod(func(b []byte) []byte { b[2] = 3; return b }),
		"gate length":   mod(func(b []byte) []byte { b[3] = 4; return b }),
		"empty gate":    append([]byte{1, 1, 1, 0}, make([]byte, 40)...),
		"space in gate": mod(func(b []byte) []byte { b[5] = ' '; return b }),
		"quote in gate": mod(func(b []byte) []byte { b[5] = '"'; return b }),
		"non-ASCII":     mod(func(b []byte) []byte { b[5] = 0xc3; return b }),
	} {
		if m, err := decodeMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %+v, %v; want ErrMalformed", name, m, err)
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	s := newTestState("E01")
	s.local(kindHold, cert(1), verify.Entry, t0, t0+int64(hold), nil)
	s.local(kindPassed, cert(1), verify.Entry, t0+sec, 0, nil)
	s.merge(holdOf("E02", cert(2), t0), t0, nil)
	g := holdOf("E03", cert(3), t0)
	g.dir, g.released = verify.Exit, g.until
	s.merge(g, t0, nil)
	gates, grants := s.snapshot()
	got, err := decodeState(encodeState(gates, grants))
	if err != nil {
		t.Fatal(err)
	}
	for i := range grants {
		grants[i].mine = false // not on the wire
	}
	if !slices.Equal(got, grants) {
		t.Fatalf("decode(encode) = %+v, want %+v", got, grants)
	}
	empty, err := decodeState(encodeState(nil, nil))
	if err != nil || len(empty) != 0 {
		t.Fatalf("empty state: %v, %v", empty, err)
	}
}

func TestDecodeStateRefuses(t *testing.T) {
	good := encodeState([]string{"E01", "E02"}, []grant{holdOf("E02", cert(1), t0)})
	mod := func(f func([]byte) []byte) []byte { return f(slices.Clone(good)) }
	for name, b := range map[string][]byte{
		"empty":            nil,
		"message version":  mod(func(b []byte) []byte { b[0] = msgVersion; return b }),
		"too many gates":   {stateVersion, MaxGates + 1},
		"cut in gates":     good[:5],
		"cut before count": good[:2+4+4],
		"count too large":  mod(func(b []byte) []byte { b[2+4+4] = 0xff; return b }),
		"entry cut":        good[:len(good)-1],
		"entry extra":      append(slices.Clone(good), 0),
		"gate index":       mod(func(b []byte) []byte { b[2+4+4+4] = 2; return b }),
		"direction":        mod(func(b []byte) []byte { b[2+4+4+4+1] = 0; return b }),
		"bad gate ID":      mod(func(b []byte) []byte { b[3] = ' '; return b }),
	} {
		if g, err := decodeState(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %+v, %v; want ErrMalformed", name, g, err)
		}
	}
}

// FuzzDecode feeds the peer decoders arbitrary bytes, as a host that holds
// the key could: no panic, bounded allocation, and what decodes encodes
// back to the same.
func FuzzDecode(f *testing.F) {
	f.Add((&message{kind: kindHold, dir: verify.Entry, gate: "E01", cert: cert(1), at: t0, t: t0}).encode())
	f.Add((&message{kind: kindPassed, dir: verify.Exit, gate: "GZN-X9", cert: cert(2), at: 1, t: 2}).encode())
	f.Add(encodeState([]string{"E01", "E02"}, []grant{holdOf("E02", cert(1), t0), holdOf("E01", cert(2), t0)}))
	f.Add(encodeState(nil, nil))
	f.Add([]byte{stateVersion, 1, 1, 'A', 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMessage(b); err == nil {
			if !bytes.Equal(m.encode(), b) {
				t.Fatalf("message %x decodes to %+v, which encodes to %x", b, m, m.encode())
			}
			s := newTestState("E02")
			s.merge(fromMessage(&m), t0, nil)
			s.seen(m.cert, m.dir, t0)
		}
		grants, err := decodeState(b)
		if err != nil {
			return
		}
		gates := []string{}
		for _, g := range grants {
			if !slices.Contains(gates, g.gate) {
				gates = append(gates, g.gate)
			}
		}
		again, err := decodeState(encodeState(gates, grants))
		if err != nil || !slices.Equal(again, grants) {
			t.Fatalf("state re-encoded: %v", err)
		}
		s := newState("E02", gates, window, 2*time.Minute, 30*time.Second, 100)
		for _, g := range grants {
			s.merge(g, t0, nil)
			s.seen(g.cert, g.dir, t0)
		}
		s.prune(t0)
	})
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // whatever the umask
			t.Fatal(err)
		}
		return p
	}
	k32 := "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=" // 32 bytes
	k16 := "AAECAwQFBgcICQoLDA0ODw=="
	primary := write("station.key", k32+"\n", 0o600)
	old := write("station.key.old", k16, 0o400)
	keys, err := LoadKeys([]string{primary, old})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 16 {
		t.Fatalf("keys of %d and %d bytes", len(keys[0]), len(keys[1]))
	}
	for _, c := range []struct {
		name  string
		paths []string
		want  error
	}{
		{"group-readable", []string{write("g.key", k32, 0o640)}, ErrKeyMode},
		{"world-readable", []string{write("w.key", k32, 0o604)}, ErrKeyMode},
		{"not base64", []string{write("b.key", "not a key!", 0o600)}, ErrKeyFormat},
		{"wrong size", []string{write("s.key", "AAAA", 0o600)}, ErrKeyFormat},
		{"twice", []string{primary, primary}, ErrKeyFormat},
		{"a directory", []string{dir}, ErrKeyFormat},
		{"missing", []string{filepath.Join(dir, "none")}, os.ErrNotExist},
		{"none", nil, ErrConfig},
	} {
		_, err := LoadKeys(c.paths)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		var kf *KeyFileError
		if c.want != ErrConfig && (!errors.As(err, &kf) || kf.Path == "") {
			t.Errorf("%s: %v is not a *KeyFileError naming the file", c.name, err)
		}
	}
}

// TestLogsQuietAfterClose: memberlist's timers may log after its
// Shutdown; nothing reaches the caller's logger once Close has returned.
func TestLogsQuietAfterClose(t *testing.T) {
	var b strings.Builder
	h := &closingHandler{inner: slog.NewTextHandler(&b, nil)}
	h.init()
	log := slog.New(h).With("part", "memberlist")
	log.Info("before")
	h.close()
	log.Warn("after")
	slog.New(h).Error("after, from the root")
	if got := b.String(); !strings.Contains(got, "before") || strings.Contains(got, "after") {
		t.Fatalf("log %q", got)
	}
}
