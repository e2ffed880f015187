package station

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// guard is the door of the station's transport: every datagram and every
// stream a host sends this gate is checked to be sealed (AES-GCM) with one
// of the station's keys for this group's label before memberlist sees it.
// What fails is dropped, counted, and remembered by its source address,
// for diag's "key mismatch" (a station gate with another key) and its
// list of foreign senders. memberlist checks the same again, since it
// decrypts what the guard lets through: the guard adds the count and the
// early drop, not the security.
//
// memberlist's format (security.go, label.go, net.go): a datagram is
// [label header] version(1) nonce(12) ciphertext+tag, sealed with the
// label as additional data; a stream begins [label header]
// encryptMsg(1) length(4) version(1) nonce(12) ciphertext+tag, sealed with
// the type, length and label as additional data.
type guard struct {
	memberlist.NodeAwareTransport
	label   string
	aeads   []cipher.AEAD
	timeout time.Duration
	drops   *dropLog
	// contact is when the guard last let something through: a word from
	// a peer, whatever it was (Unix ns).
	contact *atomic.Int64

	packets chan *memberlist.Packet
	streams chan net.Conn
	busy    chan struct{} // one token per stream being checked
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// The memberlist message types the guard reads (memberlist's net.go).
const (
	encryptMsg = 10
	nonceSize  = 12
	// maxStream bounds a stream's first message: a full state is about
	// 7 MB at MaxEntries; memberlist's own limit is 20 MB.
	maxStream = 16 << 20
	// maxChecks bounds the streams checked at once: a host that opens
	// connections and trickles bytes ties up no more than this.
	maxChecks = 32
)

func newGuard(inner memberlist.NodeAwareTransport, label string, keys [][]byte, timeout time.Duration, drops *dropLog, contact *atomic.Int64) (*guard, error) {
	g := &guard{NodeAwareTransport: inner, label: label, timeout: timeout, drops: drops, contact: contact,
		packets: make(chan *memberlist.Packet, 256), streams: make(chan net.Conn, 16),
		busy: make(chan struct{}, maxChecks), done: make(chan struct{})}
	for _, k := range keys {
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		a, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		g.aeads = append(g.aeads, a)
	}
	g.wg.Add(2)
	go g.pumpPackets()
	go g.pumpStreams()
	return g, nil
}

func (g *guard) PacketCh() <-chan *memberlist.Packet { return g.packets }
func (g *guard) StreamCh() <-chan net.Conn           { return g.streams }

// Shutdown stops the transport under the guard, then the guard's pumps.
// In that order: the transport's listeners finish by handing over what
// they read, so the pumps (and memberlist behind them) keep reading until
// it returns.
func (g *guard) Shutdown() error {
	err := g.NodeAwareTransport.Shutdown()
	g.once.Do(func() { close(g.done) })
	g.wg.Wait()
	return err
}

func (g *guard) pumpPackets() {
	defer g.wg.Done()
	in := g.NodeAwareTransport.PacketCh()
	scratch := make([]byte, 0, 64<<10)
	for {
		select {
		case <-g.done:
			return
		case p := <-in:
			if !g.sealedPacket(p.Buf, &scratch) {
				g.drops.add(dropUnauthenticated, p.From)
				continue
			}
			g.contact.Store(time.Now().UnixNano())
			select {
			case g.packets <- p:
			case <-g.done:
				return
			}
		}
	}
}

// sealedPacket reports whether buf is a datagram sealed for this group
// with a station key.
func (g *guard) sealedPacket(buf []byte, scratch *[]byte) bool {
	body, label, err := memberlist.RemoveLabelHeaderFromPacket(buf)
	if err != nil || label != g.label {
		return false
	}
	return g.open(body, []byte(label), scratch)
}

// open reports whether sealed (version, nonce, ciphertext and tag)
// authenticates under one of the keys with the additional data ad.
func (g *guard) open(sealed, ad []byte, scratch *[]byte) bool {
	if len(sealed) < 1+nonceSize+16 || sealed[0] > 1 {
		return false
	}
	nonce, ct := sealed[1:1+nonceSize], sealed[1+nonceSize:]
	for _, a := range g.aeads {
		if _, err := a.Open((*scratch)[:0], nonce, ct, ad); err == nil {
			return true
		}
	}
	return false
}

func (g *guard) pumpStreams() {
	defer g.wg.Done()
	in := g.NodeAwareTransport.StreamCh()
	for {
		select {
		case <-g.done:
			return
		case c := <-in:
			select {
			case g.busy <- struct{}{}:
			default:
				g.drops.add(dropBusy, c.RemoteAddr())
				c.Close()
				continue
			}
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				defer func() { <-g.busy }()
				if rc := g.checkStream(c); rc != nil {
					select {
					case g.streams <- rc:
					case <-g.done:
						rc.Close()
					}
				}
			}()
		}
	}
}

// checkStream reads a stream's first message and checks its seal. It
// returns a connection that replays what it read, then the rest, or nil
// (the stream is closed and counted).
func (g *guard) checkStream(c net.Conn) net.Conn {
	from := c.RemoteAddr()
	fail := func() net.Conn {
		g.drops.add(dropUnauthenticated, from)
		c.Close()
		return nil
	}
	c.SetDeadline(time.Now().Add(g.timeout))
	lc, label, err := memberlist.RemoveLabelHeaderFromStream(c)
	if err != nil || label != g.label {
		return fail()
	}
	var head [5]byte
	if _, err := io.ReadFull(lc, head[:]); err != nil || head[0] != encryptMsg {
		return fail()
	}
	n := binary.BigEndian.Uint32(head[1:])
	if n > maxStream {
		return fail()
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(lc, body); err != nil {
		return fail()
	}
	ad := append(head[:], label...)
	scratch := make([]byte, 0, n)
	if !g.open(body, ad, &scratch) {
		return fail()
	}
	g.contact.Store(time.Now().UnixNano())
	c.SetDeadline(time.Time{})
	var replay bytes.Buffer
	if hdr, err := memberlist.AddLabelHeaderToPacket(nil, label); err == nil {
		replay.Write(hdr)
	}
	replay.Write(head[:])
	replay.Write(body)
	return &replayConn{Conn: lc, r: io.MultiReader(&replay, lc)}
}

// replayConn is a connection whose first bytes were read by the guard and
// are read again from r.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// dropLog counts what was dropped, by reason, and remembers the sources of
// unauthenticated traffic.
type dropLog struct {
	mu      sync.Mutex
	counts  [numDrops]uint64
	sources map[string]*Source
	now     func() time.Time
}

// maxSources bounds the senders remembered.
const maxSources = 64

// Source is a host whose traffic the gate could not authenticate.
type Source struct {
	Addr    string    `json:"addr"`
	Packets uint64    `json:"packets"`
	Last    time.Time `json:"last"`
	// Gate names the group's gate last seen at that address, and Seed
	// says the address is one of the seeds: a station gate whose key (or
	// group) differs from this one's.
	Gate string `json:"gate,omitempty"`
	Seed bool   `json:"seed,omitempty"`
}

func newDropLog(now func() time.Time) *dropLog {
	return &dropLog{sources: map[string]*Source{}, now: now}
}

func (d *dropLog) add(r dropReason, from net.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.counts[r]++
	if r != dropUnauthenticated || from == nil {
		return
	}
	host := from.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	s := d.sources[host]
	if s == nil {
		if len(d.sources) >= maxSources {
			var oldest string
			for k, v := range d.sources {
				if oldest == "" || v.Last.Before(d.sources[oldest].Last) {
					oldest = k
				}
			}
			delete(d.sources, oldest)
		}
		s = &Source{Addr: host}
		d.sources[host] = s
	}
	s.Packets++
	s.Last = d.now()
}

func (d *dropLog) count(r dropReason) {
	d.mu.Lock()
	d.counts[r]++
	d.mu.Unlock()
}

func (d *dropLog) read() ([numDrops]uint64, []Source) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Source, 0, len(d.sources))
	for _, s := range d.sources {
		out = append(out, *s)
	}
	return d.counts, out
}
