//go:build linux

package sdnotify

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"
)

// systemd may name an abstract socket ("@/org/freedesktop/systemd1/notify"
// in user managers and containers); the '@' stands for the leading NUL.
func TestAbstractSocket(t *testing.T) {
	t.Parallel()
	name := fmt.Sprintf("@gateagent-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := mustFromEnv(t, env("NOTIFY_SOCKET", name))
	if err := n.Ready("gate in service"); err != nil {
		t.Fatal(err)
	}
	if got := queued(t, conn); len(got) != 1 || got[0] != "READY=1\nSTATUS=gate in service" {
		t.Errorf("got %q", got)
	}
	if _, err := os.Stat(name); !os.IsNotExist(err) {
		t.Errorf("an abstract socket left a file %q behind (stat: %v)", name, err)
	}
}
