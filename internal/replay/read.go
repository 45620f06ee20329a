// Package replay feeds the connections of a capture through a chain of
// hooks again, without the network they were recorded on: the plugin
// author's loop of "capture once, edit the plugin, replay, compare".
package replay

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/netip"
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
}

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
// leg, as the server sent them. Retransmitted bytes are skipped. A file cut
// short in a packet gives the connections read so far and a
// *TruncatedError.
func Read(r io.Reader) ([]Conn, error) {
	ng, err := pcapgo.NewNgReader(r, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		return nil, fmt.Errorf("replay: not a pcapng file: %w", err)
	}
	streams := map[key]*stream{}
	var order []*stream
	var truncated *TruncatedError
	for n := 0; ; n++ {
		data, ci, opts, err := ng.ReadPacketDataWithOptions()
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
		intf, err := ng.Interface(ci.InterfaceIndex)
		if err != nil {
			return nil, fmt.Errorf("replay: packet %d: %w", n+1, err)
		}
		src, dst, tcp, ok := decode(data, intf.LinkType)
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
			for _, c := range opts.Comments {
				if strings.Contains(c, capture.WireComment) {
					s.wire = true
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
			s.next[dir], s.seen[dir] = seq+1, true
			continue
		}
		if !s.seen[dir] {
			s.next[dir], s.seen[dir] = seq, true
		}
		if p := tcp.Payload; len(p) > 0 {
			// Skip what was already seen (a retransmission).
			if d := int32(s.next[dir] - seq); d > 0 {
				if int(d) >= len(p) {
					p = nil
				} else {
					p = p[d:]
				}
			}
			if len(p) > 0 {
				s.next[dir] = seq + uint32(len(tcp.Payload))
				if s.open[dir] < 0 {
					s.chunks = append(s.chunks, ordered{Chunk{Dir: dir}, n})
					s.open[dir] = len(s.chunks) - 1
				}
				c := &s.chunks[s.open[dir]]
				c.Data = append(c.Data, p...)
			}
			if tcp.PSH {
				s.open[dir] = -1
			}
		}
		if tcp.FIN {
			s.fin[dir] = true
			s.open[dir] = -1
		}
	}
	for _, s := range order {
		if s.wire {
			return nil, fmt.Errorf("replay: the client leg of the connection from %s is TLS as it crossed the wire (a capture of a route with tls { key_log }): the plaintext the plugins saw is not in the file; capture that route without key_log to replay it", s.client)
		}
	}
	if truncated != nil {
		return join(ng, order), truncated
	}
	return join(ng, order), nil
}

// A TruncatedError is the error of Read, beside the connections, when the
// file ends in the middle of a packet: the packets before it were read.
type TruncatedError struct{ Packets int }

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("replay: the file ends in the middle of packet %d (cut short); the %d whole packets before it are replayed", e.Packets+1, e.Packets)
}

// join makes the Conns: host/capture's two legs as one connection, any
// other stream as it is.
func join(ng *pcapgo.NgReader, order []*stream) []Conn {
	legs := false
	if ng.NInterfaces() == 2 {
		a, _ := ng.Interface(0)
		b, _ := ng.Interface(1)
		legs = a.Name == "client" && b.Name == "target"
	}
	targets := map[netip.AddrPort][]*stream{}
	if legs {
		for _, s := range order {
			if s.iface == 1 {
				targets[s.client] = append(targets[s.client], s)
			}
		}
	}
	var conns []Conn
	for _, s := range order {
		if legs && s.iface == 1 {
			continue
		}
		c := Conn{Client: s.client, Server: s.server, Ended: s.fin}
		all := s.chunks
		if legs {
			if ts := targets[s.client]; len(ts) > 0 {
				t := ts[0]
				targets[s.client] = ts[1:]
				c.Server = t.server
				c.Ended[host.ServerToClient] = t.fin[host.ServerToClient]
				all = nil
				for _, ch := range s.chunks {
					if ch.Dir == host.ClientToServer {
						all = append(all, ch)
					}
				}
				for _, ch := range t.chunks {
					if ch.Dir == host.ServerToClient {
						all = append(all, ch)
					}
				}
				slices.SortStableFunc(all, func(a, b ordered) int { return cmp.Compare(a.at, b.at) })
			}
		}
		for _, ch := range all {
			c.Chunks = append(c.Chunks, ch.Chunk)
		}
		conns = append(conns, c)
	}
	return conns
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
