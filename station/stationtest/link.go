// Package stationtest helps test station peers: a transport whose link to
// chosen hosts can be cut and healed, for partitions where network
// namespaces cannot be made (no root), and keys in files as a gate keeps
// them.
package stationtest

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// Link is memberlist's UDP and TCP transport with a switch: traffic to and
// from a cut host is lost, as on an unplugged cable (datagrams vanish,
// connections fail).
type Link struct {
	*memberlist.NetTransport
	mu      sync.RWMutex
	cut     map[string]bool
	packets chan *memberlist.Packet
	streams chan net.Conn
	done    chan struct{}
	once    sync.Once
}

// NewLink listens on ip:port (0: any free port).
func NewLink(ip string, port int) (*Link, error) {
	// memberlist logs through a nil logger otherwise: an empty datagram
	// would panic.
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{ip}, BindPort: port, Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		return nil, err
	}
	l := &Link{NetTransport: nt, cut: map[string]bool{}, packets: make(chan *memberlist.Packet, 256),
		streams: make(chan net.Conn, 16), done: make(chan struct{})}
	go l.pump()
	return l, nil
}

// Cut loses all traffic with the hosts (IP addresses) from now on.
func (l *Link) Cut(hosts ...string) {
	l.mu.Lock()
	for _, h := range hosts {
		l.cut[h] = true
	}
	l.mu.Unlock()
}

// Heal restores the link to every host.
func (l *Link) Heal() {
	l.mu.Lock()
	clear(l.cut)
	l.mu.Unlock()
}

func (l *Link) isCut(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.cut[host]
}

func (l *Link) pump() {
	pin, sin := l.NetTransport.PacketCh(), l.NetTransport.StreamCh()
	for {
		select {
		case <-l.done:
			return
		case p := <-pin:
			if l.isCut(p.From.String()) {
				continue
			}
			select {
			case l.packets <- p:
			case <-l.done:
				return
			}
		case c := <-sin:
			if l.isCut(c.RemoteAddr().String()) {
				c.Close()
				continue
			}
			select {
			case l.streams <- c:
			case <-l.done:
				return
			}
		}
	}
}

func (l *Link) PacketCh() <-chan *memberlist.Packet { return l.packets }
func (l *Link) StreamCh() <-chan net.Conn           { return l.streams }

func (l *Link) WriteTo(b []byte, addr string) (time.Time, error) {
	if l.isCut(addr) {
		return time.Now(), nil // sent, and lost on the way
	}
	return l.NetTransport.WriteTo(b, addr)
}

func (l *Link) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return l.WriteTo(b, a.Addr)
}

var errCut = errors.New("stationtest: link cut")

func (l *Link) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if l.isCut(addr) {
		return nil, errCut
	}
	return l.NetTransport.DialTimeout(addr, timeout)
}

func (l *Link) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	return l.DialTimeout(a.Addr, timeout)
}

// Shutdown closes the transport, then stops handing over what it read
// (its listeners finish by handing over their last reads).
func (l *Link) Shutdown() error {
	err := l.NetTransport.Shutdown()
	l.once.Do(func() { close(l.done) })
	return err
}

// Key returns a new random station key.
func Key(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// KeyFile writes key as a gate keeps it (base64, mode 0600) into a new
// file in t.TempDir and returns its path.
func KeyFile(t testing.TB, key []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "station.key")
	if err := os.WriteFile(p, []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// FreeAddr returns ip:port with a port free for both TCP and UDP now, as
// a gate's station.bind needs (memberlist listens on both).
func FreeAddr(t testing.TB, ip string) string {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err == nil {
			u.Close()
			return addr
		}
	}
	t.Fatal("no free port for TCP and UDP")
	return ""
}
