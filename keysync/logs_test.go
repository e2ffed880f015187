package keysync_test

import (
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"gateagent/internal/syncbuf"
	"gateagent/keysync"
)

var repeatedRE = regexp.MustCompile(`repeated=(\d+)`)

// TestOutageLogged: ten minutes of an issuer that does not answer, while
// the gate retries every few seconds, log the failure once and then one
// count a minute, not a line per round; the first round that succeeds
// writes the last count and says the feed is reachable again, after how
// long and how many failed rounds.
func TestOutageLogged(t *testing.T) {
	f := startFlaky(t, 0)
	synctest.Test(t, func(t *testing.T) {
		var logs syncbuf.Buffer
		cl := outage(t, f, &logs)
		f.down.Store(false)
		fakeUntil(t, time.Minute, "the first sync once the issuer came back", func() bool { return !cl.Status().FreshAt.IsZero() })
		rounds := int(f.heads.Load()) - 1 // the last one succeeded
		var failed []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "key feed round failed") {
				failed = append(failed, l)
			}
		}
		if len(failed) < 2 || len(failed) > 12 {
			t.Fatalf("%d rounds failed in 10 minutes, logged in %d lines, want about one a minute:\n%s", rounds, len(failed), logs.String())
		}
		counted := 1
		for _, l := range failed[1:] {
			m := repeatedRE.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("a failed round logged again without its count: %s", l)
			}
			n, _ := strconv.Atoi(m[1])
			counted += n
		}
		if counted != rounds {
			t.Errorf("the log counts %d failed rounds, the issuer saw %d", counted, rounds)
		}
		if !strings.Contains(failed[0], "trouble=other") || !strings.Contains(failed[0], "fix=") {
			t.Errorf("the failure says neither its kind nor what to do: %s", failed[0])
		}
		back := regexp.MustCompile(`msg="key feed reachable again after (\S+)" .*failed_rounds=(\d+)`).FindStringSubmatch(logs.String())
		if back == nil {
			t.Fatalf("no line that the feed is reachable again:\n%s", logs.String())
		}
		if d, err := time.ParseDuration(back[1]); err != nil || d < 10*time.Minute || d > 11*time.Minute {
			t.Errorf("reachable again after %s, want the 10 minutes of the outage", back[1])
		}
		if back[2] != strconv.Itoa(rounds) {
			t.Errorf("failed_rounds=%s, want %d", back[2], rounds)
		}
		if i, j := strings.LastIndex(logs.String(), "key feed round failed"), strings.Index(logs.String(), "reachable again"); i > j {
			t.Errorf("a failed round logged after the recovery:\n%s", logs.String())
		}
	})
}

func TestTroubleNames(t *testing.T) {
	for tr, want := range map[keysync.Trouble]string{keysync.TroubleOther: "other", keysync.TroubleTLSTrust: "tls_trust",
		keysync.TroubleNetwork: "network", keysync.Trouble(200): "other"} {
		if got := tr.String(); got != want {
			t.Errorf("Trouble(%d) = %q, want %q", tr, got, want)
		}
	}
	if keysync.Diagnose(nil) != keysync.TroubleOther {
		t.Error("Diagnose(nil)")
	}
}
