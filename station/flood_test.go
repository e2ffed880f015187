package station_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"gateagent/internal/eventually"
	"gateagent/station"
	"gateagent/station/stationtest"
)

// TestEmptyDatagramsLoggedOnce: anyone on the station network can send
// empty UDP datagrams to a gate's port; memberlist writes a warning for
// each, which must not become a journal line each. On the node's own
// transport (not a test link), 3,000 of them give one line at once and
// one count when the node closes.
func TestEmptyDatagramsLoggedOnce(t *testing.T) {
	a := startNode(t, "E01", 0, []string{"E01", "E02"}, nil, stationtest.Key(t), func(c *station.Config) {
		c.Transport = nil
	})
	a.link.Shutdown() // startNode's link is not used
	<-a.Ready()
	u, err := net.Dial("udp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	const sent = 3000
	for range sent {
		if _, err := u.Write(nil); err != nil {
			t.Fatal(err)
		}
	}
	// Then one datagram that is not empty, which the guard drops and
	// counts: memberlist reads them in order, so once it is counted
	// every empty one was read.
	if _, err := u.Write([]byte("not sealed")); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 10*time.Second, "the last datagram read", func() bool { return a.Status().Dropped["unauthenticated"] >= 1 })
	a.Close()
	var lines []string
	for _, l := range strings.Split(a.logs.String(), "\n") {
		if strings.Contains(l, "too short") {
			lines = append(lines, l)
		}
	}
	if len(lines) < 1 || len(lines) > 3 {
		t.Fatalf("%d lines about the empty datagrams, want one and a count:\n%s", len(lines), strings.Join(lines[:min(len(lines), 10)], "\n"))
	}
	if len(lines) > 1 && !strings.Contains(lines[len(lines)-1], "repeated=") {
		t.Errorf("the last line has no count: %s", lines[len(lines)-1])
	}
}
