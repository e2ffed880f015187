package diag_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/config/configtest"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/feed/feedtest"
	"gateagent/internal/kclock"
	"gateagent/internal/secret"
	"gateagent/verify"
)

// TestStandaloneFaults runs `gateagent diag --json` on a gate whose daemon
// is stopped: healthy, then with one fault at a time. Each fault must make
// its own check FAIL with a line that says what is wrong, and leave every
// other check PASS (latency is SKIP: only a running agent has figures).
func TestStandaloneFaults(t *testing.T) {
	cases := []struct {
		name  string
		fault func(*station)
		check string   // the check that must FAIL ("" for none)
		says  []string // what its line must say
		// service: the gate could not grant either; the service check
		// FAILs too, and says this.
		service string
		// also FAIL, and skip are not checked (the files not opened: the
		// records check SKIPs when either is).
		also, skip []string
	}{
		{"healthy", nil, "", nil, "", nil, nil},
		{"scanner port missing", func(st *station) { st.fields["PORT"] = "/dev/gate-scanner-gone" },
			diag.NameScanner, []string{"/dev/gate-scanner-gone", "does not open", "cable"}, "", nil, nil},
		{"relay pin missing", func(st *station) { st.fields["RELAY"] = "GPIO99" },
			diag.NameHardware, []string{"hw.relay", "GPIO99", "pinout"}, "board does not open", nil, nil},
		{"clock in 1970", func(st *station) { st.gateNow = time.Unix(0, 0) },
			diag.NameClock, []string{"1970-01-01", "CLOCK_UNTRUSTED", "set the time"}, "", nil, nil},
		{"stale cache", func(st *station) { st.srv.Clock.Advance(2 * time.Hour); st.gateNow = st.srv.Clock.Now() },
			diag.NameCache, []string{"stale", "last synced 2h0m0s ago", "network path"}, "", nil, nil},
		{"stale cache, refused", func(st *station) {
			st.srv.Clock.Advance(2 * time.Hour)
			st.gateNow = st.srv.Clock.Now()
			st.fields["REFUSE"] = "true"
		}, diag.NameCache, []string{"stale", "last synced 2h0m0s ago"}, "refuse_when_stale is set", nil, nil},
		{"never synced", func(st *station) {
			// The agent ran, but never reached the issuer.
			os.Remove(st.cache)
			c, err := cache.Open(st.cache, cachetest.Options(nil))
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}, diag.NameCache, []string{"never synced", "see the feed check"}, "waiting for the first key sync", nil, nil},
		{"cache not writable by the agent's user", func(st *station) { st.agentUser = "nobody" },
			diag.NameCache, []string{"not writable by nobody", "cannot open its cache", "chown -R nobody:nogroup"}, "cannot open its cache", nil, nil},
		{"corrupt cache file", func(st *station) { st.writeRun(); damageCertPage(st.t, st.cache) },
			diag.NameCache, []string{"damaged", "page", "start gateagent", "aside", "rebuilds"}, "", nil, []string{diag.NameRecords, diag.NameWear}},
		// A kill in the first moments of the first start leaves an empty
		// file: the agent sets it up again, so no permissions hint.
		{"empty cache file", func(st *station) { os.WriteFile(st.cache, nil, 0o600) },
			diag.NameCache, []string{"empty", "next start", "nothing to do"}, "", nil, []string{diag.NameRecords, diag.NameWear}},
		{"corrupt journal", func(st *station) {
			// Two events, then the record before them destroyed.
			j, err := cache.OpenJournal(cache.JournalPath(st.cache), cachetest.Options(nil))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := j.AppendEvent(event.Event{Time: st.gateNow, Kind: event.Alarm, Detail: "before the damage"}); err != nil {
					t.Fatal(err)
				}
			}
			j.Close()
			if err := cachetest.WreckJournalRecord(cache.JournalPath(st.cache), 1); err != nil {
				t.Fatal(err)
			}
		},
			diag.NameBacklog, []string{"journal", "damaged", "aside", "lost"}, "", nil, []string{diag.NameRecords}},
		{"issuer down", func(st *station) { st.srv.Stop() },
			diag.NameFeed, []string{"unreachable", "network"}, "", nil, nil},
		{"bad feed signature", func(st *station) {
			// The issuer's key ID with another key: every signature fails.
			st.fields["KEY"] = feedtest.Signer(t, "test-1", 2).Public().String()
		}, diag.NameFeed, []string{"signature", "trusted_keys", "issuer pubkey"}, "", nil, nil},
		// The credential holds another gate's cache key (or a new one):
		// the files do not open under it, and the agent would not start.
		{"cache key of another gate", func(st *station) {
			os.WriteFile(filepath.Join(os.Getenv("CREDENTIALS_DIRECTORY"), config.DefaultCacheKey), bytes.Repeat([]byte{7}, cache.KeyLen), 0o400)
		}, diag.NameKeys, []string{"does not open", "restore the right one", "journal aside", "hand it to the station"}, "would not start",
			[]string{diag.NameCache, diag.NameBacklog}, []string{diag.NameRecords, diag.NameWear}},
		{"cache key not loaded", func(st *station) {
			// Run outside the unit, and no sealed credential to decrypt.
			t.Setenv("CREDENTIALS_DIRECTORY", "")
			secret.CredstoreDirs = []string{t.TempDir()} // Credentials restores it
		},
			diag.NameKeys, []string{"CREDENTIALS_DIRECTORY", "LoadCredentialEncrypted="}, "would not start",
			nil, []string{diag.NameCache, diag.NameRecords, diag.NameBacklog, diag.NameWear}},
		// One certificate's record changed on the disk: the file is whole,
		// the record fails authentication, and diag names it. The run's
		// certificates are sealed together, several to a seal
		// (cache/group.go): the certificates that share the damaged one's
		// fail with it, and diag names the first few in ID order. So the
		// damaged one is the station's first in ID order ({FIRST}).
		{"damaged record", func(st *station) {
			st.writeRun()
			first := firstCert(st.certs)
			if err := cachetest.DamageRecord(st.cache, "certs", first.ID[:], 20, 0x04); err != nil {
				st.t.Fatal(err)
			}
		}, diag.NameRecords, []string{"certificate " + "{FIRST}", "failed the integrity check", "refetches them from the key feed", "replace it"}, "", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := newStation(t)
			if tc.fault != nil {
				tc.fault(st)
			}
			code, r, _ := st.report()
			if r.Mode != "standalone" || r.Gate != "DIAG-1" {
				t.Errorf("report mode %q gate %q", r.Mode, r.Gate)
			}
			names := []string{diag.NameConfig, diag.NameService, diag.NameHardware, diag.NameScanner, diag.NameClock, diag.NameKeys, diag.NameCache, diag.NameRecords, diag.NameFeed, diag.NameBacklog, diag.NameWear, diag.NameLatency, diag.NamePeers}
			if len(r.Checks) != len(names) {
				t.Fatalf("%d checks, want %d:\n%s", len(r.Checks), len(names), describe(r))
			}
			for i, c := range r.Checks {
				want := diag.Pass
				switch {
				case c.Name == tc.check, c.Name == diag.NameService && tc.service != "", slices.Contains(tc.also, c.Name):
					want = diag.Fail
				case c.Name == diag.NameLatency, c.Name == diag.NamePeers, slices.Contains(tc.skip, c.Name): // no [station] group here
					want = diag.Skip
				}
				if c.Name != names[i] {
					t.Errorf("check %d is %q, want %q", i, c.Name, names[i])
				}
				if c.Status != want {
					t.Errorf("%s is %s, want %s: %s", c.Name, c.Status, want, c.Line)
				}
				if c.Line == "" {
					t.Errorf("%s has no line", c.Name)
				}
				// A file that did not open had none of its records read:
				// the records check says so, not that they passed.
				if c.Name == diag.NameRecords && want == diag.Skip && !strings.Contains(c.Line, "not checked") {
					t.Errorf("records is SKIP without saying what was not checked: %s", c.Line)
				}
			}
			if c, _ := r.Find(diag.NameService); tc.service != "" && !strings.Contains(c.Line, tc.service) {
				t.Errorf("service line does not say %q: %s", tc.service, c.Line)
			}
			if c, ok := r.Find(tc.check); ok {
				for _, w := range tc.says {
					w = strings.ReplaceAll(w, "{FIRST}", firstCert(st.certs).ID.String())
					if !strings.Contains(c.Line, w) {
						t.Errorf("%s line does not say %q: %s", c.Name, w, c.Line)
					}
				}
			}
			wantCode := 0
			if tc.check != "" {
				wantCode = 2
			}
			if code != wantCode {
				t.Errorf("exit status %d, want %d\n%s", code, wantCode, describe(r))
			}
			if t.Failed() {
				t.Logf("report:\n%s", describe(r))
			}
		})
	}
}

// TestTextReport checks the report a technician reads: one line per
// check, then the result.
func TestTextReport(t *testing.T) {
	st := newStation(t)
	st.fields["PORT"] = "/dev/gate-scanner-gone"
	code, out, _ := st.run()
	if code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 15 || !strings.HasPrefix(lines[0], "gateagent diag: gate DIAG-1") || lines[14] != "result: FAIL" {
		t.Fatalf("report:\n%s", out)
	}
	for _, want := range []string{"PASS  config", "PASS  service", "PASS  hardware", "FAIL  scanner", "PASS  clock", "PASS  keys", "PASS  cache", "PASS  records", "PASS  feed", "PASS  backlog", "PASS  wear", "SKIP  latency", "SKIP  peers"} {
		if !strings.Contains(out, want) {
			t.Errorf("report has no line %q:\n%s", want, out)
		}
	}
}

// TestWarnings: a gate that works but needs attention exits 1.
func TestWarnings(t *testing.T) {
	st := newStation(t)
	st.pins.Set("PASSAGE", true) // someone stands in the passage
	code, r, _ := st.report()
	c, _ := r.Find(diag.NameHardware)
	if code != 1 || c.Status != diag.Warn || !strings.Contains(c.Line, "passage sensor active") {
		t.Fatalf("exit %d, hardware %s: %s", code, c.Status, c.Line)
	}
	st.pins.Set("PASSAGE", false)

	// A gate clock 5 minutes slow: codes are checked on the corrected
	// clock, but time sync is broken.
	st.gateNow = st.srv.Clock.Now().Add(-5 * time.Minute)
	st.kernel = kclock.State{MaxError: 16 * time.Second, Unsync: true}
	code, r, _ = st.report()
	c, _ = r.Find(diag.NameClock)
	if code != 1 || c.Status != diag.Warn || !strings.Contains(c.Line, "5m0s behind") || !strings.Contains(c.Line, "NTP") {
		t.Fatalf("exit %d, clock %s: %s", code, c.Status, c.Line)
	}
}

func TestConfigBroken(t *testing.T) {
	st := newStation(t)
	st.fields["RELAY"] = `GPIO1"` + "\n" + `relay_pin = "x`
	code, r, _ := st.report()
	c, _ := r.Find(diag.NameConfig)
	if code != 2 || c.Status != diag.Fail || !strings.Contains(c.Line, "relay_pin") || !strings.Contains(c.Line, "--check") {
		t.Fatalf("exit %d, config %s: %s", code, c.Status, c.Line)
	}
	for _, c := range r.Checks[1:] {
		if c.Status != diag.Skip {
			t.Errorf("%s is %s without a config", c.Name, c.Status)
		}
	}
}

// damageCertPage marks one page of certificates in a closed cache file as
// of an unknown page type, as a flipped bit in flash would: the file still
// opens, the event log still reads, the integrity check must find it. The
// certificates must be in a run (station.writeRun): a leaf of the run's
// groups, 24-byte keys (run ‖ last ID), is the page damaged.
func damageCertPage(t *testing.T, path string) {
	t.Helper()
	pages := cachetest.LeavesInUse(t, path, 24, 1)
	if len(pages) == 0 {
		t.Fatal("no page of certificates found in the cache file")
	}
	cachetest.WreckPage(t, path, pages[0])
}

// firstCert is the certificate of certs with the lowest ID.
func firstCert(certs []verify.Cert) verify.Cert {
	return slices.MinFunc(certs, func(a, b verify.Cert) int { return bytes.Compare(a.ID[:], b.ID[:]) })
}

// writeRun writes the cache's delta as a run, as the agent's maintenance
// does once a window has passed: the feed's batches reach cache.db only
// then, and a fault in the file's certificates needs them there.
func (st *station) writeRun() {
	t := st.t
	t.Helper()
	c, err := cache.Open(st.cache, cachetest.Options(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRun(st.gateNow); err != nil {
		c.Close()
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestKeysWarnings: keys in plain files, and a cache written before keys
// were sealed, are warnings that say what to do.
func TestKeysWarnings(t *testing.T) {
	st := newStation(t)
	st.fields["KEYS"] = configtest.TOML(t, t.TempDir())
	code, r, _ := st.report()
	c, _ := r.Find(diag.NameKeys)
	if code != 1 || c.Status != diag.Warn || !strings.Contains(c.Line, "in the clear on the disk") || !strings.Contains(c.Line, "systemd-creds encrypt") {
		t.Fatalf("key files: exit %d, keys %s: %s", code, c.Status, c.Line)
	}

	st = newStation(t)
	os.Remove(st.cache)
	if err := cachetest.WriteLegacy(st.cache, st.certs, 40, 1); err != nil {
		t.Fatal(err)
	}
	code, r, _ = st.report()
	k, _ := r.Find(diag.NameKeys)
	ch, _ := r.Find(diag.NameCache)
	sv, _ := r.Find(diag.NameService)
	if k.Status != diag.Warn || !strings.Contains(k.Line, "schema 2") || ch.Status != diag.Warn || !strings.Contains(ch.Line, "rebuilds the cache from the key feed") ||
		sv.Status != diag.Fail || !strings.Contains(sv.Line, "waiting for the first key sync") {
		t.Fatalf("plaintext cache: exit %d\n%s", code, describe(r))
	}
}

// TestWearStandalone: with the agent stopped, diag wear shows the cache
// file against its live certificates and says the rate needs the agent.
func TestWearStandalone(t *testing.T) {
	st := newStation(t)
	code, out, errs := st.run("wear")
	if code != 0 || !strings.HasPrefix(out, "PASS") || !strings.Contains(out, "× its live records (40 certificates × 65 B = 3 KB)") ||
		!strings.Contains(out, "the write rate needs the running agent") {
		t.Fatalf("diag wear: exit %d\n%s\n%s", code, out, errs)
	}
}
