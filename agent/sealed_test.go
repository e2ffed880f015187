package agent_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gateagent/cache"
	"gateagent/cache/cachetest"
	"gateagent/config"
	"gateagent/diag"
	"gateagent/event"
	"gateagent/gate"
	"gateagent/internal/eventually"
	"gateagent/issuer"
	"gateagent/verify"
)

// One byte of each field of a certificate record, of a revoked
// certificate's record and of a passage, changed on the disk with the
// agent stopped (a failing SD card). Started again with its issuer out of
// reach, the gate grants none of those codes: each is refused as
// undecided (the passage's certificate as PASSBACK, its record replaced
// by the latest passage it can have been), an alarm names each record,
// and diag's records check FAILs naming them. Once the issuer answers,
// the records are refetched at once and the codes of the valid
// certificates are granted again; the revoked one stays REVOKED.
func TestDamagedRecordsNeverGranted(t *testing.T) {
	const window = 3 * time.Second
	st, sock := diagStation(t, func(c *config.Config) {
		c.Verify.PassbackWindow = window
		c.Timing.PassTimeout = 200 * time.Millisecond // a grant nobody walks through locks again soon
		c.Timing.Deny = time.Millisecond
	})

	// A certificate record: flags(1) | not_before(8) | not_after(8) |
	// nonce(12) | sealed key(32) | tag(16), the offsets of schema 3 that
	// cachetest.DamageRecord maps onto the same field of the group that
	// holds the certificate in its run (cache/group.go). Certificates are
	// sealed several to a seal, so each damage fails the certificates
	// that share it: the few of this test share a group, and each field's
	// damage detected on its own is cache.TestRecordDamageIsNeverUsed's
	// to show.
	const head, nonce = 17, 12
	fields := []struct {
		name string
		at   int
		x    byte
	}{
		{"not_before", 1 + 7, 0x01},
		{"not_after", 9 + 6, 0x80},
		{"nonce", head + 2, 0x10},
		{"sealed key", head + nonce + 9, 0x01},
		{"tag", cachetest.SealedRecordBytes - 3, 0x40},
	}
	certs := make([]issuer.Certificate, len(fields))
	for i := range fields {
		certs[i] = st.issue()
	}
	revoked := st.issue()
	if err := st.srv.Revoke(revoked.ID); err != nil {
		t.Fatal(err)
	}
	st.waitCache(revoked.ID, func(r verify.Record, ok bool) bool { return ok && r.Revoked })
	passer := st.issue()
	st.write(phone(t, passer) + "\r")
	st.want(gate.Granted)
	st.walkThrough()
	st.stop()

	// The damage, with the agent stopped. Feed batches reach cache.db
	// only when the cache's delta is written as a run (schema 4), so the
	// certificates are written as one first, as the agent's maintenance
	// does once a window has passed.
	path := st.cfg.Gate.Cache
	writeRun(t, path)
	for i, f := range fields {
		if err := cachetest.DamageRecord(path, "certs", certs[i].ID[:], f.at, f.x); err != nil {
			t.Fatal(err)
		}
	}
	// The revocation flag cleared: the issue's tester's byte.
	if err := cachetest.DamageRecord(path, "certs", revoked.ID[:], 0, 0x01); err != nil { // flags: revoked
		t.Fatal(err)
	}
	pk := append(passer.ID[:], byte(verify.Entry))
	if err := cachetest.DamageJournalRecord(cache.JournalPath(path), "passback", pk, 3, 0x02); err != nil {
		t.Fatal(err)
	}
	if kind, err := cache.CheckFile(path); err != nil || kind != "cache" {
		t.Fatalf("the damaged cache is not whole page by page (%v): the test would prove nothing", err)
	}

	// Started again, the issuer out of reach: nothing can be healed.
	st.srv.Stop()
	relayBefore := len(st.relayOuts())
	restarted := time.Now()
	st.start(nil, nil)
	for i := range fields {
		st.write(phone(t, certs[i]) + "\r")
		if o := st.want(gate.Denied); o.Decision.Reason != verify.Undecided || !errors.Is(o.Err, cache.ErrAuth) {
			t.Fatalf("%s damaged: %v (%v), want undecided on an AuthError", fields[i].name, o.Decision.Reason, o.Err)
		}
	}
	st.write(phone(t, revoked) + "\r")
	if o := st.want(gate.Denied); o.Decision.Reason != verify.Undecided {
		t.Fatalf("revoked certificate, flag cleared: %v, want undecided", o.Decision.Reason)
	}
	st.write(phone(t, passer) + "\r")
	if o := st.want(gate.Denied); o.Decision.Reason != verify.Passback && o.Decision.Reason != verify.Undecided {
		t.Fatalf("damaged passage: %v, want PASSBACK or undecided", o.Decision.Reason)
	}
	if got := levels(st.relayOuts()[relayBefore:]); strings.Contains(got, "U") {
		t.Fatalf("the relay was unlocked: %s", got)
	}

	// Each record is named by an alarm (in the journal: the issuer is
	// down) and in the log.
	named := func(what string) bool {
		evs, err := st.ag.Journal().Events(0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Kind == event.Alarm && strings.Contains(e.Detail, what) && strings.Contains(e.Detail, "integrity check") {
				return true
			}
		}
		return false
	}
	for _, c := range append(append([]issuer.Certificate{}, certs...), revoked) {
		if !named("certificate " + c.ID.String()) {
			t.Errorf("no alarm names certificate %s", c.ID)
		}
		if !strings.Contains(st.logs.String(), `record="certificate `+c.ID.String()+`"`) {
			t.Errorf("the log does not name certificate %s", c.ID)
		}
	}
	if !named("passage of " + passer.ID.String() + " (entry)") {
		t.Error("no alarm names the damaged passage")
	}

	// diag, through the running agent: the records check FAILs naming them.
	code, out, _ := runDiag(t, sock, "--json")
	var r diag.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("diag: %v: %s", err, out)
	}
	rc, _ := r.Find(diag.NameRecords)
	// Three named and 3 or 4 more: the six damaged certificates (the
	// damaged passage was replaced at its discovery), and the passer's
	// when it shares their seal. The run's certificates are sealed
	// together, several to a seal (cache/group.go), and the test's 7
	// share a group.
	more := -1
	if _, after, ok := strings.Cut(rc.Line, " and "); ok {
		fmt.Sscanf(after, "%d more failed the integrity check", &more)
	}
	if code != 2 || rc.Status != diag.Fail || more < 3 || more > 4 || !strings.Contains(rc.Line, "certificate ") {
		t.Fatalf("diag: exit %d, records %s: %s", code, rc.Status, rc.Line)
	}
	facts, _ := json.Marshal(rc.Facts)
	for _, c := range append(append([]issuer.Certificate{}, certs...), revoked) {
		if !strings.Contains(string(facts), c.ID.String()) {
			t.Errorf("diag's records do not list certificate %s: %s", c.ID, facts)
		}
	}

	// The issuer is back: the records are refetched (the feed retries
	// quickly while records wait) and the codes granted again.
	st.srv.Restart()
	healed := time.Now()
	for _, c := range append(append([]issuer.Certificate{}, certs...), revoked) {
		var err error
		if !eventually.Within(20*time.Second-time.Since(healed), func() bool {
			var ok bool
			_, ok, err = st.ag.Cache().Lookup(c.ID, verify.Entry)
			return err == nil && ok || err != nil && !errors.Is(err, cache.ErrAuth)
		}) {
			t.Fatalf("certificate %s not healed within 20 s of the issuer's return:\n%s", c.ID, st.logs.String())
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("healed %v after the issuer's return", time.Since(healed).Round(time.Millisecond))
	if r, _, _ := st.ag.Cache().Lookup(revoked.ID, verify.Entry); !r.Revoked {
		t.Fatal("the revoked certificate came back unrevoked")
	}
	for i := range fields {
		st.write(phone(t, certs[i]) + "\r")
		if o := st.want(gate.Granted); o.Decision.CertID != certs[i].ID {
			t.Fatalf("after the heal: granted %v, want %v", o.Decision.CertID, certs[i].ID)
		}
		st.want(gate.Lapsed) // nobody walks through: the pass timeout locks it
	}
	st.write(phone(t, revoked) + "\r")
	if o := st.want(gate.Denied); o.Decision.Reason != verify.Revoked {
		t.Fatalf("the revoked certificate after the heal: %v, want REVOKED", o.Decision.Reason)
	}
	// The passage was replaced by one at the moment of the damage's
	// discovery: refused for one window from then, then granted.
	at, ok, err := st.ag.Journal().LastPass(&passer.ID, verify.Entry)
	if err != nil || !ok || at.Before(restarted) {
		t.Fatalf("the damaged passage: last pass %v (%v, %v), want one replaced at its discovery, after the restart at %v", at, ok, err, restarted)
	}
	if at.Add(window).Sub(st.ag.Feed().Now()) > window/4 {
		st.write(phone(t, passer) + "\r")
		if o := st.want(gate.Denied); o.Decision.Reason != verify.Passback {
			t.Fatalf("the passer inside the window of the repair: %v, want PASSBACK", o.Decision.Reason)
		}
	}
	time.Sleep(at.Add(window).Sub(st.ag.Feed().Now()) + 50*time.Millisecond) // the stimulus: that window passes
	st.write(phone(t, passer) + "\r")
	st.want(gate.Granted)
	st.want(gate.Lapsed)
	code, out, _ = runDiag(t, sock, "--json")
	json.Unmarshal([]byte(out), &r)
	rc, _ = r.Find(diag.NameRecords)
	if rc.Status != diag.Warn || !strings.Contains(rc.Line, "healed in the last hour") {
		t.Fatalf("diag after the heal: exit %d, records %s: %s", code, rc.Status, rc.Line)
	}
}

// phone makes the code c's phone shows now, from the key the issuer gave
// it: the issuer need not answer.
func phone(t *testing.T, c issuer.Certificate) string {
	t.Helper()
	key, err := verify.ParseKey(c.Key)
	if err != nil {
		t.Fatal(err)
	}
	return verify.NewToken(&key, c.ID, verify.StepOf(time.Now())).String()
}

// TestPlaintextCacheRebuilt: the first start of this release on a gate
// whose cache an older release wrote (schema 2, keys in plaintext) does
// not use it: the gate refuses codes until a new cache, filled from the
// feed beside it, replaces it; then it grants, and no key is left in the
// clear in the state directory.
func TestPlaintextCacheRebuilt(t *testing.T) {
	st := newStation(t, stationOpts{noStart: true, mod: func(c *config.Config) { c.Timing.Deny = time.Millisecond }})
	certs := make([]verify.Cert, 500)
	nb := time.Now().Truncate(time.Second).Add(-time.Hour)
	for i := range certs {
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8), 'p'})
		copy(certs[i].ID[:], h[:16])
		copy(certs[i].Key[:], h[:])
		certs[i].NotBefore, certs[i].NotAfter = nb, nb.Add(24*time.Hour)
	}
	if err := st.srv.InsertSynthetic(certs); err != nil {
		t.Fatal(err)
	}
	path := st.cfg.Gate.Cache
	if err := cachetest.WriteLegacy(path, certs, 500, 1); err != nil {
		t.Fatal(err)
	}
	st.start(nil, nil)
	c := certs[17]
	if !eventually.Within(20*time.Second, func() bool {
		st.write(verify.NewToken(&c.Key, c.ID, verify.StepOf(time.Now())).String() + "\r")
		o := st.next()
		// Refused until the rebuild holds the certificate: undecided
		// before its snapshot ends, unknown while the log that follows an
		// empty snapshot is applied.
		if o.Kind != gate.Granted && !(o.Decision.Reason == verify.Undecided && errors.Is(o.Err, cache.ErrNotSynced)) && o.Decision.Reason != verify.UnknownCert {
			t.Fatalf("before the rebuild's full sync: %v (%v), want undecided, not synced (or unknown)", o.Decision.Reason, o.Err)
		}
		return o.Kind == gate.Granted
	}) {
		t.Fatalf("not granted within 20 s:\n%s", st.logs.String())
	}
	if !st.logged("written by an older release") {
		t.Errorf("the log does not say why the cache is rebuilt:\n%s", st.logs.String())
	}
	if st.ag.Cache().Path() != path || st.ag.Cache().Rebuilding() != "" {
		t.Fatalf("after the full sync the cache is %s, rebuilding %q", st.ag.Cache().Path(), st.ag.Cache().Rebuilding())
	}
	st.stop()
	if _, err := os.Stat(cache.RebuildPath(path)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the rebuild file is still there: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(path), e.Name()))
		for _, cert := range certs {
			if bytes.Contains(b, cert.Key[:]) {
				t.Fatalf("%s holds cert %s's key in the clear", e.Name(), cert.ID)
			}
		}
	}
}
