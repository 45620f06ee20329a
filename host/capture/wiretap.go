package capture

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"

	"github.com/tunnelwasm/tunnel/host"
)

// WireTap returns a host.Route.WireTap that draws the client leg of a route
// that terminates TLS as it crossed the wire: the TLS records the client
// sent and received, instead of the plaintext the chain sees. With the
// route's tls.Config.KeyLogWriter feeding [KeyLogWriter] of the same
// Writer, the file holds the session keys too, so Wireshark and tshark
// decrypt the client leg from the file alone:
//
//	first, last := capture.Links(w)
//	route.Chain = append(append([]host.Link{first}, plugins...), last)
//	route.WireTap = capture.WireTap(w)
//	route.TLS.KeyLogWriter = io.MultiWriter(keyLogFile, capture.KeyLogWriter(w))
//
// The target leg stays the plaintext after the plugins. The client link of
// [Links] finds the tapped connection by its ConnInfo (ID, client and
// listen addresses) and then draws nothing on the client leg itself: the
// chain's verdicts on the client's chunks go on the target leg's packets
// (see the package doc). A connection whose handshake fails never reaches
// the chain: its wire leg ends with a RST once the connection is gone.
func WireTap(w *Writer) func(*host.ConnInfo, net.Conn) net.Conn {
	return func(info *host.ConnInfo, c net.Conn) net.Conn {
		wl := &wireLeg{w: w, key: keyOf(info)}
		client, server, note := legEnds(info, LegClient, netip.AddrPort{})
		wl.l.f = newFlow(LegClient, client, server)
		isn := [2]uint32{rand.Uint32(), rand.Uint32()}
		wl.l.next = [2]uint32{isn[0] + 1, isn[1] + 1}
		w.enqueue(record{f: wl.l.f, kind: kindOpen, seq: isn[0], ack: isn[1], t: time.Now(),
			comment: note + " (" + WireComment + ")"})
		w.taps.Store(wl.key, wl)
		tc := &tapConn{Conn: c, wl: wl}
		// The engine never closes the wrapper; a connection that ends
		// before the chain opens (a failed handshake) is noticed when the
		// wrapper is collected.
		runtime.AddCleanup(tc, (*wireLeg).gone, wl)
		return tc
	}
}

// WireComment is in the comment of the SYN of a client leg drawn by
// [WireTap]: its bytes are TLS records, not the plaintext the chain saw
// (tunnel replay refuses such a leg).
const WireComment = "the TLS records as they crossed the wire"

// tapKey names a connection without holding it (a pointer key would keep a
// failed connection alive for as long as its entry).
type tapKey struct {
	id             uint64
	client, listen string
}

func keyOf(info *host.ConnInfo) tapKey {
	k := tapKey{id: info.ID}
	if info.Client != nil {
		k.client = info.Client.String()
	}
	if info.Listen != nil {
		k.listen = info.Listen.String()
	}
	return k
}

// wireLeg is the client leg of a tapped connection. Its Read and Write run
// on the pumps, outside the chain's lock, so it has a lock of its own.
type wireLeg struct {
	w   *Writer
	key tapKey

	mu      sync.Mutex
	l       legState
	chained bool // the chain's client link took it (Closed ends it)
	endS2C  bool // the chain ended the server -> client direction
	ended   bool // its FIN or RST is drawn: nothing more
}

// data draws n bytes from side `from` as they crossed the wire.
func (wl *wireLeg) data(from uint8, b []byte) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	if wl.ended {
		return
	}
	l := &wl.l
	r := record{f: l.f, kind: kindData, from: from, seq: l.next[from], ack: l.next[1-from], t: time.Now(), n: len(b)}
	if cost := recordOverhead + int64(len(b)); wl.w.reserve(cost) {
		r.buf, r.cost = wl.w.q.getBuf(b), cost
	}
	l.next[from] += uint32(len(b))
	wl.w.enqueue(r)
}

// fin draws side from's FIN (once).
func (wl *wireLeg) fin(from uint8) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	wl.finLocked(from)
}

func (wl *wireLeg) finLocked(from uint8) {
	l := &wl.l
	if wl.ended || l.fin[from] {
		return
	}
	l.fin[from] = true
	wl.w.enqueue(record{f: l.f, kind: kindFin, from: from, seq: l.next[from], ack: l.next[1-from], t: time.Now()})
	l.next[from]++
}

// end draws the end of the leg at teardown: FINs when the connection's two
// directions ended in order (orderly), or when the client had finished and
// the chain ended the other direction; else a RST from the tunnel, with
// comment. An orderly end draws the client's FIN too unless it is drawn:
// after the client's close_notify crypto/tls reads no more of the socket,
// so the FIN that follows it was never read, and the leg once ended with
// a RST that no one sent.
func (wl *wireLeg) end(orderly bool, comment string) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	if wl.ended {
		return
	}
	l := &wl.l
	if orderly || l.fin[0] && wl.endS2C {
		wl.finLocked(0) // drawn already when not orderly
		wl.finLocked(1)
		wl.ended = true
		return
	}
	wl.ended = true
	wl.w.enqueue(record{f: l.f, kind: kindRst, from: 1, seq: l.next[1], ack: l.next[0], t: time.Now(), comment: comment})
}

// gone runs when the tap's wrapper is collected: a connection the chain
// never opened (its handshake failed, or it was aborted during it) ends
// here.
func (wl *wireLeg) gone() {
	wl.w.taps.CompareAndDelete(wl.key, wl)
	wl.mu.Lock()
	chained := wl.chained
	wl.mu.Unlock()
	if !chained {
		wl.end(false, "connection ended before its plaintext reached the chain (TLS handshake failed or aborted)")
	}
}

// tapConn is the client socket as the TLS session sees it: what it reads
// (client -> tunnel) and writes (tunnel -> client) is drawn on the wire
// leg.
type tapConn struct {
	net.Conn
	wl *wireLeg
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.wl.data(0, p[:n])
	}
	if errors.Is(err, io.EOF) {
		c.wl.fin(0)
	}
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.wl.data(1, p[:n])
	}
	return n, err
}
