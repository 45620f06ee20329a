// Package replay feeds the connections of a capture through a chain of
// hooks again, without the network they were recorded on: the plugin
// author's loop of "capture once, edit the plugin, replay, compare".
package replay

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
)

// Chunk is one recorded chunk: the bytes one side sent at once (the TCP
// segments up to one with PSH).
type Chunk struct {
	Dir  host.Direction
	Data []byte
}

// Conn is one recorded connection: its endpoints and its chunks, both
// directions in the order they were captured.
type Conn struct {
	Client, Server netip.AddrPort
	Chunks         []Chunk
	// Ended says which directions were half-closed (a FIN) in the capture.
	Ended [2]bool
	// AfterEnd says, for each direction that Ended, how many of Chunks
	// were captured after its FIN (0: it came last): the replay
	// half-closes it where it was recorded, so that a server that answers
	// only at the client's FIN (the half-close exchanges) is replayed in
	// its order.
	AfterEnd [2]int
	// Reset is set when the recording has a RST for the connection: who
	// sent it, toward whom, and the packet's comment if it has one.
	Reset string
	// Gaps are the bytes of the connection missing from the recording
	// (packets a capture dropped when its disk fell behind, or a sniffer
	// missed), in the order found. The chunk after a gap starts anew: its
	// bytes are replayed as if they followed the ones before the gap.
	Gaps []Gap
}

// A Gap is a run of bytes of one direction missing from the recording.
type Gap struct {
	Dir host.Direction
	// Offset is how many bytes of the direction came before the gap.
	Offset int64
	// Bytes is how many are missing.
	Bytes int
}

// String says how many bytes of which direction are missing, and where.
func (g Gap) String() string {
	return fmt.Sprintf("%d bytes %s missing from the recording at offset %d", g.Bytes, g.Dir, g.Offset)
}

// MaxHeld is how many bytes of one direction of a connection Read holds
// while it waits for a segment that is missing (one recorded out of
// order): when more came after the hole, the missing bytes are taken for
// lost, reported as a Gap, and a segment that arrives later still is
// skipped as a retransmission.
const MaxHeld = 4 << 20

// stream is one TCP connection of one interface, as read.
type stream struct {
	iface  int
	client netip.AddrPort // the SYN's sender, or the first sender
	server netip.AddrPort
	next   [2]uint32 // next expected sequence number per direction
	seen   [2]bool
	chunks []ordered
	open   [2]int // index in chunks of the chunk being built per direction, -1 none
	wire   bool   // a TLS client leg as it crossed the wire (capture.WireTap)
	fin    [2]bool
	finAt  [2]int // the packet number of each direction's FIN
	tag    string // `conn #N route "r"` of host/capture's first SYN comment
	rst    [2]bool
	note   string       // the RST's comment
	pend   [2][]segment // segments ahead of next, by sequence number
	held   [2]int       // their bytes
	off    [2]int64     // bytes taken per direction
	gaps   []Gap
	// lastAt is the at of the direction's last chunk: a chunk of held
	// bytes, released by a later packet that filled the hole before them,
	// is placed after the bytes it follows, not at its own first packet.
	lastAt [2]int
}

// segment is one TCP segment with data or a FIN.
type segment struct {
	seq      uint32
	data     []byte
	psh, fin bool
	at       int
}

type ordered struct {
	Chunk
	at int // packet number of its first segment
}

type key struct {
	iface int
	a, b  netip.AddrPort
}

// Read returns the TCP connections of a pcapng file, in the order they
// started. In a file written by package host/capture (interfaces "client"
// and "target"), each connection's two legs are joined: the client's bytes
// from the client leg, as it sent them, and the server's from the target
// leg, as the server sent them. Segments are put back in sequence order
// (holding at most MaxHeld bytes per direction ahead of a missing one);
// retransmitted bytes are skipped; bytes missing from the file are
// reported in Conn.Gaps. A file cut short in a packet gives the
// connections read so far and a *TruncatedError. A classic pcap file
// (tcpdump's default) is read too, as one interface without comments.
func Read(r io.Reader) ([]Conn, error) {
	src, err := packets(r)
	if err != nil {
		return nil, err
	}
	streams := map[key]*stream{}
	var order []*stream
	var truncated *TruncatedError
	for n := 0; ; n++ {
		data, ci, p, err := src.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			// Cut short (a full disk, a copy in progress): what was
			// whole is replayed, as tshark reads it.
			truncated = &TruncatedError{Packets: n}
			break
		}
		if err != nil {
			return nil, fmt.Errorf("replay: packet %d: %w", n+1, err)
		}
		src, dst, tcp, ok := decode(data, p.link)
		if !ok {
			continue
		}
		k := key{ci.InterfaceIndex, src, dst}
		if cmpAddrPort(src, dst) > 0 {
			k.a, k.b = dst, src
		}
		s := streams[k]
		if s == nil || tcp.SYN && !tcp.ACK && s.seen != [2]bool{} {
			if !tcp.SYN && len(tcp.Payload) == 0 {
				continue // a stray ACK or RST of a connection not seen starting
			}
			s = &stream{iface: ci.InterfaceIndex, client: src, server: dst, open: [2]int{-1, -1}}
			for _, c := range p.comments {
				if strings.Contains(c, capture.WireComment) {
					s.wire = true
				}
				if m := legTag.FindString(c); m != "" && tcp.SYN {
					s.tag = m
				}
			}
			switch {
			case tcp.SYN && tcp.ACK: // the SYN was missed: the SYN-ACK's sender is the server
				s.client, s.server = dst, src
			case !tcp.SYN && ephemeral(dst.Port()) && !ephemeral(src.Port()):
				// Begun before the file (a capture rotated while it was
				// open): no handshake says who connected, and the first
				// to speak may be the server. The client is the side
				// whose port the kernel picked.
				s.client, s.server = dst, src
			}
			streams[k] = s
			order = append(order, s)
		}
		dir := host.ClientToServer
		if src != s.client {
			dir = host.ServerToClient
		}
		seq := tcp.Seq
		if tcp.SYN {
			if !s.seen[dir] { // a duplicate SYN (a retransmission) moves nothing
				s.next[dir], s.seen[dir] = seq+1, true
			}
			continue
		}
		if tcp.RST {
			s.rst[dir] = true
			if len(p.comments) > 0 && s.note == "" {
				s.note = strings.Join(p.comments, "; ")
			}
			continue
		}
		if !s.seen[dir] {
			s.next[dir], s.seen[dir] = seq, true
		}
		if len(tcp.Payload) > 0 || tcp.FIN {
			s.add(dir, segment{seq: seq, data: tcp.Payload, psh: tcp.PSH, fin: tcp.FIN, at: n})
		}
	}
	for _, s := range order {
		for d := range s.pend {
			for len(s.pend[d]) > 0 {
				s.skipGap(host.Direction(d)) // never filled
			}
		}
	}
	for _, s := range order {
		if s.wire {
			return nil, fmt.Errorf("replay: the client leg of the connection from %s is TLS as it crossed the wire (a capture of a route with tls { key_log }): the plaintext the plugins saw is not in the file; capture that route without key_log to replay it", s.client)
		}
	}
	if truncated != nil {
		return join(src.legs(), order), truncated
	}
	return join(src.legs(), order), nil
}

// legTag matches the start of the comment of host/capture's first SYN of
// a leg, which names the connection: both legs of one connection have it.
var legTag = regexp.MustCompile(`^conn #[0-9]+ route "(?:[^"\\]|\\.)*"`)

// add takes a segment of direction dir: in sequence, it is appended, with
// the held ones it lets follow; ahead of the sequence (one before it is
// missing), it is held until the hole is filled, or taken for lost.
func (s *stream) add(dir host.Direction, g segment) {
	if int32(g.seq-s.next[dir]) > 0 {
		g.data = bytes.Clone(g.data) // the reader's buffer is not ours to keep
		i, _ := slices.BinarySearchFunc(s.pend[dir], g, func(a, b segment) int {
			return cmp.Compare(int32(a.seq-s.next[dir]), int32(b.seq-s.next[dir]))
		})
		s.pend[dir] = slices.Insert(s.pend[dir], i, g)
		s.held[dir] += len(g.data)
		for s.held[dir] > MaxHeld {
			s.skipGap(dir)
		}
		return
	}
	s.take(dir, g)
	s.drain(dir)
}

// take appends the part of g not yet seen (the rest is a retransmission).
func (s *stream) take(dir host.Direction, g segment) {
	p := g.data
	if d := int32(s.next[dir] - g.seq); d > 0 {
		if int(d) >= len(p) {
			p = nil
		} else {
			p = p[d:]
		}
	}
	if len(p) > 0 {
		s.next[dir] = g.seq + uint32(len(g.data))
		s.off[dir] += int64(len(p))
		if s.open[dir] < 0 {
			s.lastAt[dir] = max(s.lastAt[dir], g.at)
			s.chunks = append(s.chunks, ordered{Chunk{Dir: dir}, s.lastAt[dir]})
			s.open[dir] = len(s.chunks) - 1
		}
		c := &s.chunks[s.open[dir]]
		c.Data = append(c.Data, p...)
	}
	if g.psh && len(g.data) > 0 || g.fin {
		s.open[dir] = -1
	}
	if g.fin && !s.fin[dir] {
		s.fin[dir], s.finAt[dir] = true, g.at
	}
}

// drain takes the held segments that now follow.
func (s *stream) drain(dir host.Direction) {
	for len(s.pend[dir]) > 0 && int32(s.pend[dir][0].seq-s.next[dir]) <= 0 {
		g := s.pend[dir][0]
		s.pend[dir] = s.pend[dir][1:]
		s.held[dir] -= len(g.data)
		s.take(dir, g)
	}
}

// skipGap takes the bytes before the first held segment for lost: it
// records the gap and takes what follows, as a new chunk.
func (s *stream) skipGap(dir host.Direction) {
	g := s.pend[dir][0]
	s.gaps = append(s.gaps, Gap{Dir: dir, Offset: s.off[dir], Bytes: int(g.seq - s.next[dir])})
	s.open[dir] = -1
	s.next[dir] = g.seq
	s.drain(dir)
}

// A TruncatedError is the error of Read, beside the connections, when the
// file ends in the middle of a packet: the packets before it were read.
type TruncatedError struct{ Packets int }

// Error says where the file was cut and what is replayed of it.
func (e *TruncatedError) Error() string {
	return fmt.Sprintf("replay: the file ends in the middle of packet %d (cut short); the %d whole packets before it are replayed", e.Packets+1, e.Packets)
}

// join makes the Conns: host/capture's two legs as one connection, any
// other stream as it is.
func join(legs bool, order []*stream) []Conn {
	var pair pairer
	if legs {
		pair = newPairer(order)
	}
	var conns []Conn
	for _, s := range order {
		if legs && s.iface == 1 {
			continue
		}
		c := Conn{Client: s.client, Server: s.server, Ended: s.fin, Gaps: s.gaps}
		finAt := s.finAt
		all := s.chunks
		var t *stream
		if legs {
			t = pair.target(s)
		}
		if t != nil {
			c.Server = t.server
			c.Ended[host.ServerToClient] = t.fin[host.ServerToClient]
			finAt[host.ServerToClient] = t.finAt[host.ServerToClient]
			// The client's bytes from the client leg, the server's from
			// the target leg, with the gaps of those.
			c.Gaps, all = nil, nil
			for dir, leg := range [2]*stream{s, t} {
				for _, g := range leg.gaps {
					if g.Dir == host.Direction(dir) {
						c.Gaps = append(c.Gaps, g)
					}
				}
				for _, ch := range leg.chunks {
					if ch.Dir == host.Direction(dir) {
						all = append(all, ch)
					}
				}
			}
		}
		// In capture order, the two directions interleaved by their first
		// packets: bytes held behind a hole until the end of the file are
		// put back where they were captured.
		slices.SortStableFunc(all, func(a, b ordered) int { return cmp.Compare(a.at, b.at) })
		c.Reset = resetOf(s, t, legs)
		for _, ch := range all {
			c.Chunks = append(c.Chunks, ch.Chunk)
		}
		for d := range c.AfterEnd {
			for _, ch := range all {
				if c.Ended[d] && ch.at > finAt[d] {
					c.AfterEnd[d]++
				}
			}
		}
		conns = append(conns, c)
	}
	return conns
}

// resetOf says who reset the connection of stream s (and its target leg
// t, if any), "" when no RST was recorded.
func resetOf(s, t *stream, legs bool) string {
	var who []string
	note := s.note
	if legs {
		// host/capture draws the tunnel's RSTs: to the client on the
		// client leg, to the target on the target leg.
		if s.rst[host.ServerToClient] {
			who = append(who, "the tunnel reset the client")
		}
		if s.rst[host.ClientToServer] {
			who = append(who, fmt.Sprintf("the client %s reset the tunnel", s.client))
		}
		if t != nil {
			if t.rst[host.ClientToServer] {
				who = append(who, "the tunnel reset the target")
			}
			if t.rst[host.ServerToClient] {
				who = append(who, fmt.Sprintf("the target %s reset the tunnel", t.server))
			}
			if note == "" {
				note = t.note
			}
		}
	} else {
		if s.rst[host.ClientToServer] {
			who = append(who, fmt.Sprintf("the client %s reset the connection", s.client))
		}
		if s.rst[host.ServerToClient] {
			who = append(who, fmt.Sprintf("the server %s reset the connection", s.server))
		}
	}
	if len(who) == 0 {
		return ""
	}
	r := strings.Join(who, "; ")
	if note != "" {
		r += fmt.Sprintf(" (%q)", note)
	}
	return r
}

// pairer finds the target leg of each client leg of a host/capture file.
type pairer struct {
	byTag  map[string][]*stream
	byPort map[uint16][]*stream
	used   map[*stream]bool
}

func newPairer(order []*stream) pairer {
	p := pairer{byTag: map[string][]*stream{}, byPort: map[uint16][]*stream{}, used: map[*stream]bool{}}
	for _, s := range order {
		if s.iface != 1 {
			continue
		}
		if s.tag != "" {
			p.byTag[s.tag] = append(p.byTag[s.tag], s)
		}
		p.byPort[s.client.Port()] = append(p.byPort[s.client.Port()], s)
	}
	return p
}

// target returns the target leg of client leg s, nil if none is found.
// The legs' first SYNs name the connection; without them (a connection
// begun before the file) the target leg is the first one from the
// client's address and port (both legs share them), or, when the client
// and the target are of different IP families, from the client's port on
// the unspecified address or the listen address of the target's family,
// which host/capture draws instead.
func (p pairer) target(s *stream) *stream {
	if s.tag != "" {
		for _, t := range p.byTag[s.tag] {
			if !p.used[t] {
				p.used[t] = true
				return t
			}
		}
	}
	for _, t := range p.byPort[s.client.Port()] {
		if p.used[t] || t.tag != "" && s.tag != "" && t.tag != s.tag {
			continue
		}
		a := t.client.Addr()
		mixed := a.Is4() != s.client.Addr().Is4() && (a.IsUnspecified() || a == s.server.Addr())
		if a == s.client.Addr() || mixed {
			p.used[t] = true
			return t
		}
	}
	return nil
}

// ephemeral reports whether port is in the range kernels pick client ports
// from (Linux 32768-60999, Windows and the BSDs 49152-65535).
func ephemeral(port uint16) bool { return port >= 32768 }

func cmpAddrPort(a, b netip.AddrPort) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Port(), b.Port())
}

// decode returns a packet's TCP endpoints and header.
func decode(data []byte, lt layers.LinkType) (src, dst netip.AddrPort, tcp *layers.TCP, ok bool) {
	var first gopacket.Decoder = lt
	if lt == layers.LinkTypeRaw || lt == 101 { // raw IP
		if len(data) > 0 && data[0]>>4 == 6 {
			first = layers.LayerTypeIPv6
		} else {
			first = layers.LayerTypeIPv4
		}
	}
	p := gopacket.NewPacket(data, first, gopacket.NoCopy)
	t, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if t == nil {
		return src, dst, nil, false
	}
	var sa, da netip.Addr
	switch ip := p.NetworkLayer().(type) {
	case *layers.IPv4:
		sa, _ = netip.AddrFromSlice(ip.SrcIP.To4())
		da, _ = netip.AddrFromSlice(ip.DstIP.To4())
	case *layers.IPv6:
		sa, _ = netip.AddrFromSlice(ip.SrcIP)
		da, _ = netip.AddrFromSlice(ip.DstIP)
	default:
		return src, dst, nil, false
	}
	return netip.AddrPortFrom(sa, uint16(t.SrcPort)), netip.AddrPortFrom(da, uint16(t.DstPort)), t, true
}

// packetInfo is what Read needs of a packet besides its bytes and capture
// info: its interface's link type and its comments.
type packetInfo struct {
	link     layers.LinkType
	comments []string
}

// source reads a capture file's packets.
type source struct {
	next func() ([]byte, gopacket.CaptureInfo, packetInfo, error)
	// legs reports whether the file is host/capture's: two interfaces,
	// "client" and "target", whose connections join in pairs.
	legs func() bool
}

// packets returns the source of r's packets, pcapng or classic pcap by
// the file's first bytes.
func packets(r io.Reader) (*source, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch string(magic) {
	case "\xa1\xb2\xc3\xd4", "\xd4\xc3\xb2\xa1", "\xa1\xb2\x3c\x4d", "\x4d\x3c\xb2\xa1":
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("replay: a pcap file, but: %w", err)
		}
		p := packetInfo{link: pr.LinkType()}
		return &source{
			next: func() ([]byte, gopacket.CaptureInfo, packetInfo, error) {
				data, ci, err := pr.ReadPacketData()
				return data, ci, p, err
			},
			legs: func() bool { return false },
		}, nil
	}
	ng, err := pcapgo.NewNgReader(br, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		if string(magic) == "\x0a\x0d\x0d\x0a" { // a section header's type
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return nil, errors.New("replay: a pcapng file cut short in its first blocks (section header, interfaces)")
			}
			return nil, fmt.Errorf("replay: a pcapng file, but: %w", err)
		}
		return nil, fmt.Errorf("replay: not a pcapng or pcap file: %w", err)
	}
	return &source{
		next: func() ([]byte, gopacket.CaptureInfo, packetInfo, error) {
			data, ci, opts, err := ng.ReadPacketDataWithOptions()
			if err != nil {
				return nil, ci, packetInfo{}, err
			}
			intf, err := ng.Interface(ci.InterfaceIndex)
			if err != nil {
				return nil, ci, packetInfo{}, err
			}
			return data, ci, packetInfo{link: intf.LinkType, comments: opts.Comments}, nil
		},
		legs: func() bool {
			if ng.NInterfaces() != 2 {
				return false
			}
			a, _ := ng.Interface(0)
			b, _ := ng.Interface(1)
			return a.Name == "client" && b.Name == "target"
		},
	}, nil
}
