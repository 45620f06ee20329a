package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/tunnelwasm/tunnel/host"
)

// Links returns the two chain links that capture a route into w: first must
// be the first link of the route's chain (nearest the client) and last the
// last one (nearest the target):
//
//	first, last := capture.Links(w)
//	route.Chain = append(append([]host.Link{first}, plugins...), last)
//
// first draws the client leg (interface 0, "client"): the client's bytes as
// it sent them and the bytes it receives. last draws the target leg
// (interface 1, "target"): the bytes the target receives, after the
// plugins, and the bytes it sends. Both see both directions, so the route
// is no longer spliced by the kernel; a route without them pays nothing.
// Neither changes a byte or ever waits for the file. On a connection that
// [WireTap] tapped, the client leg is the wire's TLS instead, and first
// draws nothing itself.
func Links(w *Writer) (first, last host.Link) {
	return host.Link{Name: "capture", Hook: &legHook{w: w, leg: LegClient}},
		host.Link{Name: "capture-target", Hook: &legHook{w: w, leg: LegTarget}}
}

type legHook struct {
	w   *Writer
	leg int
}

// connState is what both legs of one connection share. The Proxy calls the
// filters of one connection under one lock, so it needs none of its own.
type connState struct {
	w    *Writer
	info *host.ConnInfo
	legs [2]legState
	// entry is the call in progress on each direction's entry leg (the
	// client leg for client -> server, the target leg for server ->
	// client), to tell what the chain did with its chunk.
	entry [2]entryCall
	// wire is the client leg as it crossed the wire, on a connection
	// WireTap tapped: the client link then draws nothing itself.
	wire *wireLeg
	// note is the verdict on client chunks of a tapped connection that is
	// still waiting for a target leg packet to go on.
	note string
	// target is the target link's stream, set when it opens: it knows the
	// address the tunnel connected to (a host name resolved).
	target *host.Stream
}

// legState is one leg's TCP state.
type legState struct {
	f      *flow
	next   [2]uint32 // each side's next sequence number
	fin    [2]bool
	closed bool
}

// entryCall tracks one chunk while the chain handles it.
type entryCall struct {
	active   bool
	in       []byte
	buf      *payload  // the copy of in, if it was made
	reached  int       // bytes the exit leg saw meanwhile
	changed  bool      // and they differ from in
	replied  int       // bytes sent back toward the sender meanwhile
	t        time.Time // the entry record's time
	deferred []record
	// twin is the exit leg's copy of the whole chunk when the chain
	// forwarded it unchanged in one piece: it goes in the entry leg's
	// record (one record, one queue slot, one clock read for both legs)
	// unless the verdict needs it on its own.
	twin twinData
}

// twinData is where a chunk's bytes went on the other leg: that leg's flow,
// the sending side and its sequence and acknowledgement numbers.
type twinData struct {
	f        *flow
	from     uint8
	seq, ack uint32
}

// record is the data record of n bytes at t that tw describes, without
// its payload.
func (tw twinData) record(t time.Time, n int) record {
	return record{f: tw.f, kind: kindData, from: tw.from, seq: tw.seq, ack: tw.ack, t: t, n: n}
}

// Inline implements [host.InlineHook]: a capture link never waits (the
// writer drops what it cannot queue).
func (h *legHook) Inline() bool { return true }

func (h *legHook) Open(info *host.ConnInfo) (host.Filter, error) {
	var st *connState
	if h.leg == LegClient {
		st = &connState{w: h.w, info: info}
		if v, ok := h.w.taps.LoadAndDelete(keyOf(info)); ok {
			st.wire = v.(*wireLeg)
			st.wire.mu.Lock()
			st.wire.chained = true
			st.wire.mu.Unlock()
		}
		h.w.conns.Store(info, st)
	} else if v, ok := h.w.conns.LoadAndDelete(info); ok {
		st = v.(*connState)
	} else {
		st = &connState{w: h.w, info: info} // the target link alone
	}
	return &legFilter{st: st, leg: h.leg}, nil
}

type legFilter struct {
	st  *connState
	leg int
}

// entryLeg is the leg where bytes of dir come in from a socket.
func entryLeg(dir host.Direction) int {
	if dir == host.ClientToServer {
		return LegClient
	}
	return LegTarget
}

// side is the side of a leg that sends dir: 0 (the connecting side) for
// client -> server.
func side(dir host.Direction) uint8 {
	if dir == host.ClientToServer {
		return 0
	}
	return 1
}

func (f *legFilter) Opened(s *host.Stream) error {
	if f.leg == LegClient && f.st.wire == nil {
		f.st.open(LegClient)
	}
	if f.leg == LegTarget {
		f.st.target = s
	}
	return nil
}

// Dialled implements [host.DialFilter]: the target leg's handshake is
// drawn when the tunnel connected, not when its first byte crosses it (a
// speak-first server's banner, a client that waits).
func (f *legFilter) Dialled(s *host.Stream) error {
	if f.leg == LegTarget {
		f.st.target = s
		f.st.open(LegTarget)
	}
	return nil
}

func (f *legFilter) Data(dir host.Direction, chunk []byte, s *host.Stream) error {
	st := f.st
	tapped := st.wire != nil && f.leg == LegClient
	if f.leg == entryLeg(dir) {
		e := &st.entry[dir]
		if tapped {
			// The wire leg drew the ciphertext; the verdict goes on the
			// target leg.
			if e.active {
				return s.Forward(dir, chunk)
			}
			*e = entryCall{active: true, in: chunk, deferred: e.deferred[:0]}
			err := s.Forward(dir, chunk)
			e.active = false
			if v := e.verdict(dir, len(chunk)); v != "" {
				st.addNote("client chunk (plaintext): " + v)
			}
			for _, d := range e.deferred {
				st.out(d)
			}
			clear(e.deferred)
			e.in = nil
			return err
		}
		if e.active { // a filter sent back into the entry: a nested chunk
			st.emit(f.leg, st.data(f.leg, side(dir), chunk, ""))
			return s.Forward(dir, chunk)
		}
		r := st.data(f.leg, side(dir), chunk, "")
		*e = entryCall{active: true, in: chunk, buf: r.buf, t: r.t, deferred: e.deferred[:0]}
		err := s.Forward(dir, chunk)
		e.active = false
		r.comment = e.verdict(dir, len(chunk))
		if e.twin.f != nil {
			if r.comment == "" {
				r.twin, e.twin = e.twin, twinData{}
			} else {
				st.outTwin(e) // where it would have gone: before r
			}
		}
		st.out(r)
		for _, d := range e.deferred {
			st.out(d)
		}
		clear(e.deferred)
		e.in, e.buf = nil, nil
		if err == nil && s.Closing() {
			// An error (this link's or a later filter's) resets the
			// connection instead: ClosedWith draws that.
			st.closing()
		}
		return err
	}
	// The exit leg of dir.
	var shared *payload
	off := 0
	if e := &st.entry[dir]; e.active {
		switch {
		case e.changed || e.reached+len(chunk) > len(e.in):
			e.changed = true
		case len(chunk) > 0 && e.buf != nil && &chunk[0] == &e.in[e.reached]:
			// The very bytes that came in (a chain that forwards them):
			// equal, and already copied.
			shared, off = e.buf, e.reached
		case !bytes.Equal(e.in[e.reached:e.reached+len(chunk)], chunk):
			e.changed = true
		}
		e.reached += len(chunk)
	}
	if e := &st.entry[dir.Reverse()]; e.active && f.leg == entryLeg(dir.Reverse()) {
		e.replied += len(chunk)
	}
	if tapped {
		return s.Forward(dir, chunk) // drawn by the wire leg
	}
	if l := &st.legs[f.leg]; l.fin[side(dir)] {
		// After the tunnel's FIN on this side (a filter's Close, then its
		// timer sending): the engine writes it to no peer, and drawn it
		// would follow the FIN.
		return s.Forward(dir, chunk)
	}
	if shared != nil {
		if e := &st.entry[dir]; off == 0 && len(chunk) == len(e.in) && e.twin.f == nil && !st.entry[dir.Reverse()].active {
			// The whole chunk, unchanged, in one piece, outside any
			// other call: it rides on the entry leg's record.
			l := st.leg(f.leg)
			from := side(dir)
			e.twin = twinData{f: l.f, from: from, seq: l.next[from], ack: l.next[1-from]}
			l.next[from] += uint32(len(chunk))
			return s.Forward(dir, chunk)
		}
		st.emit(f.leg, st.dataShared(f.leg, side(dir), chunk, shared, off))
	} else {
		st.emit(f.leg, st.data(f.leg, side(dir), chunk, ""))
	}
	return s.Forward(dir, chunk)
}

// verdict names what the chain did with an entry chunk of n bytes.
func (e *entryCall) verdict(dir host.Direction, n int) string {
	to, back := "target", "client"
	if dir == host.ServerToClient {
		to, back = "client", "target"
	}
	var v string
	switch {
	case e.reached == n && !e.changed:
		v = ""
	case e.reached == 0:
		v = fmt.Sprintf("chain: dropped or held (none of the %d bytes reached the %s)", n, to)
	default:
		v = fmt.Sprintf("chain: replaced (%d bytes in, %d bytes reached the %s)", n, e.reached, to)
	}
	if e.replied > 0 {
		if v == "" {
			v = "chain: forwarded"
		}
		v += fmt.Sprintf("; replied %d bytes to the %s", e.replied, back)
	}
	return v
}

func (f *legFilter) End(dir host.Direction, _ *host.Stream) error {
	st := f.st
	if st.wire != nil && f.leg == LegClient {
		if dir == host.ServerToClient {
			st.wire.mu.Lock()
			st.wire.endS2C = true
			st.wire.mu.Unlock()
		}
		return nil // the wire leg draws the client's FIN as it reads it
	}
	l := st.leg(f.leg)
	from := side(dir)
	if l.fin[from] {
		return nil
	}
	l.fin[from] = true
	st.emit(f.leg, record{f: l.f, kind: kindFin, from: from, seq: l.next[from], ack: l.next[1-from], t: time.Now()})
	l.next[from]++
	return nil
}

// Closed is ClosedWith without knowing how the connection ended (a host
// that does not say).
func (f *legFilter) Closed() { f.ClosedWith(host.End{}) }

// ClosedWith draws the end of a leg that was not over (a FIN each way) when
// the connection went: a reset from the peer whose socket failed, else
// from the tunnel; after a filter's Close, the tunnel's FIN.
func (f *legFilter) ClosedWith(e host.End) {
	st := f.st
	if f.leg == LegClient {
		st.w.conns.CompareAndDelete(st.info, st)
		if st.wire != nil {
			orderly, comment := e.Err == nil && (e.Reason == "client_eof" || e.Reason == "server_eof"), ""
			if !orderly {
				comment = unfinished(e)
			}
			st.wire.end(orderly, comment)
			return
		}
	}
	if f.leg == LegTarget && st.legs[LegTarget].f == nil && (st.target == nil || !st.target.TargetAddr().IsValid()) {
		// The target was never connected (a failed dial, a filter that
		// closed or refused before the dial) and nothing was sent
		// toward it: no packet crossed this leg, so none is drawn.
		return
	}
	l := st.leg(f.leg)
	if l.closed {
		return
	}
	l.closed = true
	if l.fin[0] && l.fin[1] {
		return
	}
	if e.Reason == "filter_close" {
		// The tunnel half-closes both sides and lingers: its FIN, not
		// a reset, whatever the peer does next.
		st.tunnelFIN(f.leg)
		return
	}
	tunnel := tunnelSide(f.leg)
	from, comment := tunnel, unfinished(e)
	failed := e.ClientFailed
	if f.leg == LegTarget {
		failed = e.TargetFailed
	}
	switch {
	case failed:
		from = 1 - tunnel
		cause := e.Err
		if u := errors.Unwrap(cause); u != nil {
			cause = u // the socket's error, without the engine's words
		}
		comment = "the " + legPeer[f.leg] + " reset the connection (" + cause.Error() + ")"
	case e.ClientFailed || e.TargetFailed:
		comment = "the tunnel resets the " + legPeer[f.leg] + ": the " + legPeer[1-f.leg] + " reset the connection"
	}
	st.out(record{f: l.f, kind: kindRst, from: from, seq: l.next[from], ack: l.next[1-from], t: time.Now(), comment: comment})
}

// closing draws the tunnel's FIN on each leg (the target's once it is
// connected) when a filter after an entry link closed the connection
// during the chunk's call: the tunnel half-closes both sides once the call
// returns, after the bytes the call sent (drawn already). A close the hooks
// do not see happen (from a timer, an End) is drawn when the connection
// goes (ClosedWith).
func (st *connState) closing() {
	for n := range st.legs {
		l := &st.legs[n]
		if n == LegTarget && l.f == nil && st.target != nil && st.target.TargetAddr().IsValid() {
			st.open(n) // connected, nothing sent yet: its handshake first
		}
		if l.f != nil && !l.closed {
			st.tunnelFIN(n)
		}
	}
}

// tunnelFIN draws the tunnel's FIN after a filter's Close on leg n, unless
// it is drawn already.
func (st *connState) tunnelFIN(n int) {
	l := &st.legs[n]
	tunnel := tunnelSide(n)
	if l.fin[tunnel] {
		return
	}
	l.fin[tunnel] = true
	st.out(record{f: l.f, kind: kindFin, from: tunnel, seq: l.next[tunnel], ack: l.next[1-tunnel], t: time.Now(),
		comment: "a filter closed the connection: the tunnel ends this side with a FIN"})
	l.next[tunnel]++
}

// tunnelSide is the tunnel's side of leg n: on each leg side 0 connects
// (the client; the tunnel toward the target) and side 1 accepts (the
// tunnel; the target).
func tunnelSide(n int) uint8 {
	if n == LegTarget {
		return 0
	}
	return 1
}

// legPeer names the tunnel's peer on each leg.
var legPeer = [2]string{LegClient: "client", LegTarget: "target"}

// unfinished is the comment of the reset drawn from the tunnel when a
// connection ended before both directions did.
func unfinished(e host.End) string {
	why := "aborted, failed, or closed by a filter"
	switch e.Reason {
	case "":
	case "filter_error":
		why = "a filter or plugin failed, or aborted it"
	case "shutdown":
		why = "the tunnel shut down"
	case "idle_timeout":
		why = "idle timeout"
	case "refused":
		why = "a filter refused it"
	default:
		why = e.Reason
	}
	return "connection closed before both directions ended (" + why + ")"
}

// isnSeed keys initialISN: one per process, so that two runs' files do
// not share sequence numbers, and the same for the dump and the capture
// of one run, so that both show the same numbers for the same connection.
var isnSeed = maphash.MakeSeed()

// initialISN is the initial sequence number of side's stream on leg of
// connection id.
func initialISN(id uint64, leg, side int) uint32 {
	var b [10]byte
	binary.LittleEndian.PutUint64(b[:], id)
	b[8], b[9] = byte(leg), byte(side)
	return uint32(maphash.Bytes(isnSeed, b[:]))
}

// leg returns leg n's state, drawing its handshake first if needed.
func (st *connState) leg(n int) *legState {
	l := &st.legs[n]
	if l.f == nil {
		st.open(n)
	}
	return l
}

// open draws leg n's handshake.
func (st *connState) open(n int) {
	l := &st.legs[n]
	if l.f != nil {
		return
	}
	var dialled netip.AddrPort
	if st.target != nil {
		dialled = st.target.TargetAddr()
	}
	client, server, note := legEnds(st.info, n, dialled)
	l.f = newFlow(n, client, server)
	isn := [2]uint32{initialISN(st.info.ID, n, 0), initialISN(st.info.ID, n, 1)}
	l.next = [2]uint32{isn[0] + 1, isn[1] + 1}
	st.w.enqueue(record{f: l.f, kind: kindOpen, seq: isn[0], ack: isn[1], t: time.Now(), comment: note})
}

// legEnds returns the two ends of leg n of a connection (the connecting
// side first, both of one family) and the comment of its first SYN;
// dialled is the address the tunnel connected to, if it has.
func legEnds(info *host.ConnInfo, n int, dialled netip.AddrPort) (client, server netip.AddrPort, note string) {
	client = addrPort(info.Client)
	if n == LegClient {
		server = addrPort(info.Listen)
		note = fmt.Sprintf("conn #%d route %q: client leg, as the client sent and received it", info.ID, info.Route)
	} else {
		server, _ = netip.ParseAddrPort(info.Target)
		server = netip.AddrPortFrom(server.Addr().Unmap(), server.Port())
		switch {
		case server.IsValid():
		case dialled.IsValid():
			server = dialled // a host name, as the tunnel resolved it
		default:
			// A host name, before the target is connected (a filter
			// sending toward it from Opened): no lookup here; the name
			// goes in the comment.
			_, port, _ := net.SplitHostPort(info.Target)
			p, _ := netip.ParseAddrPort("0.0.0.0:" + port)
			server = p
			if client.Addr().Is6() {
				server = netip.AddrPortFrom(netip.IPv6Unspecified(), p.Port())
			}
		}
		note = fmt.Sprintf("conn #%d route %q: target leg (%s), as the target received and sent it, after the chain", info.ID, info.Route, info.Target)
	}
	if client.Addr().Is4() != server.Addr().Is4() {
		// One family per leg. An IPv4 client of an IPv6 target is drawn
		// at its IPv4-mapped address, which still names it; an IPv6
		// client of an IPv4 target takes the listen address, or the
		// unspecified address, of the server's family.
		if client.Addr().Is4() {
			client = netip.AddrPortFrom(netip.AddrFrom16(client.Addr().As16()), client.Port())
		} else if l := addrPort(info.Listen); l.Addr().Is4() == server.Addr().Is4() {
			client = netip.AddrPortFrom(l.Addr(), client.Port())
		} else if server.Addr().Is4() {
			client = netip.AddrPortFrom(netip.IPv4Unspecified(), client.Port())
		} else {
			client = netip.AddrPortFrom(netip.IPv6Unspecified(), client.Port())
		}
	}
	return client, server, note
}

// data makes the record of a chunk from side `from` of leg n and advances
// that side's sequence number.
// The copy is made only if the queue has room for it: a Writer that is
// behind costs the connection no copy.
func (st *connState) data(n int, from uint8, chunk []byte, comment string) record {
	l := st.leg(n)
	r := record{f: l.f, kind: kindData, from: from, seq: l.next[from], ack: l.next[1-from], t: time.Now(), n: len(chunk), comment: comment}
	if cost := recordOverhead + int64(len(chunk)); st.w.reserve(cost) {
		r.buf, r.cost = st.w.q.getBuf(chunk), cost
	}
	l.next[from] += uint32(len(chunk))
	return r
}

// dataShared is data for bytes p.b[off:off+len(chunk)] already copied (by
// the other leg): it shares them.
func (st *connState) dataShared(n int, from uint8, chunk []byte, p *payload, off int) record {
	l := st.leg(n)
	r := record{f: l.f, kind: kindData, from: from, seq: l.next[from], ack: l.next[1-from], t: time.Now(), n: len(chunk)}
	if st.w.reserve(recordOverhead) {
		p.refs.Add(1)
		r.buf, r.off, r.cost = p, off, recordOverhead
	}
	l.next[from] += uint32(len(chunk))
	return r
}

// outTwin queues e's twin as a record of its own, sharing the entry
// record's copy of the bytes: when the verdict goes on the entry record, or
// another packet of the exit leg comes first.
func (st *connState) outTwin(e *entryCall) {
	tw := e.twin
	e.twin = twinData{}
	r := tw.record(e.t, len(e.in))
	if e.buf != nil && st.w.reserve(recordOverhead) {
		e.buf.refs.Add(1)
		r.buf, r.cost = e.buf, recordOverhead
	}
	st.w.enqueue(r)
}

// emit queues r, after the pending entry chunk of its leg if one is in the
// chain right now (so that a reply follows its request in the file).
// On a tapped connection, the target leg's records of a client chunk wait
// for its verdict too, which goes on the first of them.
func (st *connState) emit(n int, r record) {
	for dir := host.ClientToServer; dir <= host.ServerToClient; dir++ {
		e := &st.entry[dir]
		if e.active && (entryLeg(dir) == n || st.wire != nil && dir == host.ClientToServer && n == LegTarget) {
			e.deferred = append(e.deferred, r)
			return
		}
	}
	st.out(r)
}

// maxNote bounds the verdicts waiting for a target leg packet.
const maxNote = 1024

// addNote keeps a verdict on a tapped connection's client chunk for the
// next target leg packet.
func (st *connState) addNote(v string) {
	switch {
	case st.note == "":
		st.note = v
	case len(st.note) < maxNote:
		st.note += "; then " + v
	case !strings.HasSuffix(st.note, "…"):
		st.note += "; …"
	}
}

// out queues r, with the verdicts waiting for a target leg packet when r
// is one.
func (st *connState) out(r record) {
	for i := range st.entry {
		if e := &st.entry[i]; e.twin.f == r.f && r.f != nil {
			st.outTwin(e) // the exit leg's packets stay in order
		}
	}
	if st.note != "" && r.f.leg == LegTarget {
		if r.comment != "" {
			r.comment = st.note + "; " + r.comment
		} else {
			r.comment = st.note
		}
		st.note = ""
	}
	st.w.enqueue(r)
}

// addrPort converts a listener's address, unmapping IPv4-in-IPv6.
func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	if a != nil {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
}
