package capture

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/hexdump"
)

// Dump returns a hook that prints, for people learning the layers, each
// packet of the client leg that a capture would write (the same synthetic
// packets, with the same sequence and acknowledgement numbers: the
// handshake, each chunk split at the MSS and its ACK, a FIN per direction,
// a RST on an abort; but each chunk's ACK is printed with the chunk, as a
// pure ACK, where a capture leaves it out when the peer's next packet is a
// reply that carries it) the way a raw-socket sniffer decodes it: the Ethernet
// addresses, the IPv4 or IPv6 header fields (version, header length, TTL,
// protocol, checksum, addresses), the TCP ports, flags, sequence and
// acknowledgement numbers (raw, and relative to the handshake as Wireshark
// shows them), window, then the payload in hex and ASCII:
//
//	------------------------------------------------------------
//	#1 client -> server
//	Ethernet Frame:
//		Destination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)
//		IPv4 Packet:
//			Version: 4, Header Length: 20, TTL: 64
//			Protocol: 6 (TCP), Source: 127.0.0.1, Target: 127.0.0.1
//			Total Length: 46, Identification: 3, Flags: DF, Checksum: 0x3cb5
//		TCP Segment:
//			Source Port: 40000, Destination Port: 9000
//			Sequence: 1001 (relative 1), Acknowledgment: 5001 (relative 1)
//			Flags: PSH ACK, Header Length: 20, Window: 65535, Checksum: 0x9d1a
//			Data (6 bytes):
//				00000000  68 65 6c 6c 6f 0a                                 |hello.|
//
// Put it first in the chain (nearest the client), as a capture's first
// link: it sees the client's bytes before the plugins and the bytes the
// client receives after them. It changes nothing; writes to w are
// serialised, all the packets of one chunk in one Write.
func Dump(w io.Writer) host.Hook {
	return &dumpHook{w: w, isn: func(id uint64, side int) uint32 { return initialISN(id, LegClient, side) }}
}

type dumpHook struct {
	isn func(id uint64, side int) uint32
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func (d *dumpHook) Open(info *host.ConnInfo) (host.Filter, error) {
	client, server, _ := legEnds(info, LegClient, netip.AddrPort{})
	f := &dumpFilter{d: d, id: info.ID, f: newFlow(LegClient, client, server)}
	f.isn = [2]uint32{d.isn(info.ID, 0), d.isn(info.ID, 1)}
	f.next = [2]uint32{f.isn[0] + 1, f.isn[1] + 1}
	return f, nil
}

type dumpFilter struct {
	d      *dumpHook
	id     uint64
	f      *flow
	isn    [2]uint32
	next   [2]uint32
	fin    [2]bool
	opened bool
}

func (f *dumpFilter) Opened(*host.Stream) error {
	f.opened = true
	f.print(record{f: f.f, kind: kindOpen, seq: f.isn[0], ack: f.isn[1]})
	return nil
}

func (f *dumpFilter) Data(dir host.Direction, chunk []byte, s *host.Stream) error {
	f.data(dir, chunk)
	return s.Send(dir, chunk)
}

// data prints the packets of a chunk.
func (f *dumpFilter) data(dir host.Direction, chunk []byte) {
	from := side(dir)
	f.print(record{f: f.f, kind: kindData, from: from, seq: f.next[from], ack: f.next[1-from], buf: &payload{b: chunk}, n: len(chunk)})
	f.next[from] += uint32(len(chunk))
}

func (f *dumpFilter) End(dir host.Direction, _ *host.Stream) error {
	from := side(dir)
	if f.fin[from] {
		return nil
	}
	f.fin[from] = true
	f.print(record{f: f.f, kind: kindFin, from: from, seq: f.next[from], ack: f.next[1-from]})
	f.next[from]++
	return nil
}

func (f *dumpFilter) Closed() {
	if !f.opened || f.fin[0] && f.fin[1] {
		return
	}
	// The tunnel reset the client.
	f.print(record{f: f.f, kind: kindRst, from: 1, seq: f.next[1], ack: f.next[0]})
}

// print writes r's packets, decoded, in one Write.
func (f *dumpFilter) print(r record) {
	d := f.d
	d.mu.Lock()
	defer d.mu.Unlock()
	b := d.buf[:0]
	var pkt []byte
	_ = r.each(func(from int, flags uint8, seq, ack uint32, payload []byte) error {
		pkt = r.f.appendPacket(pkt[:0], from, flags, seq, ack, payload)
		b = append(b, strings.Repeat("-", 60)...)
		b = fmt.Appendf(b, "\n#%d %s\n", f.id, hexdump.DirString(from))
		b = appendDecoded(b, pkt, f.isn)
		return nil
	})
	d.buf = b
	// A failing stdout (closed pipe) must not break the forwarding.
	_, _ = d.w.Write(b)
}

// appendDecoded appends the sniffer's view of an Ethernet frame: what the
// frame's bytes say, read back field by field. isn holds the initial
// sequence numbers of the connecting side (0) and the accepting side (1)
// for the relative numbers, told apart by the source MAC's last byte.
func appendDecoded(b, frame []byte, isn [2]uint32) []byte {
	if len(frame) < ethLen {
		return fmt.Appendf(b, "(a frame of %d bytes)\n", len(frame))
	}
	typ := binary.BigEndian.Uint16(frame[12:])
	name := map[uint16]string{0x0800: "IPv4", 0x86dd: "IPv6"}[typ]
	b = append(b, "Ethernet Frame:\n"...)
	b = fmt.Appendf(b, "\tDestination: %s, Source: %s, Protocol: 0x%04x (%s)\n", mac(frame[0:6]), mac(frame[6:12]), typ, name)
	sender := 0
	if frame[11] == 2 {
		sender = 1
	}
	ip := frame[ethLen:]
	var seg []byte
	switch {
	case typ == 0x0800 && len(ip) >= ipv4Len:
		hl := int(ip[0]&0xf) * 4
		b = append(b, "\tIPv4 Packet:\n"...)
		b = fmt.Appendf(b, "\t\tVersion: %d, Header Length: %d, TTL: %d\n", ip[0]>>4, hl, ip[8])
		b = fmt.Appendf(b, "\t\tProtocol: %d (TCP), Source: %s, Target: %s\n", ip[9], netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20])))
		fl := ""
		if ip[6]&0x40 != 0 {
			fl = "DF"
		}
		b = fmt.Appendf(b, "\t\tTotal Length: %d, Identification: %d, Flags: %s, Checksum: 0x%04x\n",
			binary.BigEndian.Uint16(ip[2:]), binary.BigEndian.Uint16(ip[4:]), fl, binary.BigEndian.Uint16(ip[10:]))
		seg = ip[min(hl, len(ip)):]
	case typ == 0x86dd && len(ip) >= ipv6Len:
		b = append(b, "\tIPv6 Packet:\n"...)
		b = fmt.Appendf(b, "\t\tVersion: %d, Payload Length: %d, Hop Limit: %d\n", ip[0]>>4, binary.BigEndian.Uint16(ip[4:]), ip[7])
		b = fmt.Appendf(b, "\t\tNext Header: %d (TCP), Source: %s, Target: %s\n", ip[6], netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40])))
		seg = ip[ipv6Len:]
	default:
		return b
	}
	if len(seg) < tcpLen {
		return b
	}
	seq, ack := binary.BigEndian.Uint32(seg[4:]), binary.BigEndian.Uint32(seg[8:])
	hl := int(seg[12]>>4) * 4
	flags := seg[13]
	b = append(b, "\tTCP Segment:\n"...)
	b = fmt.Appendf(b, "\t\tSource Port: %d, Destination Port: %d\n", binary.BigEndian.Uint16(seg[0:]), binary.BigEndian.Uint16(seg[2:]))
	b = fmt.Appendf(b, "\t\tSequence: %d (relative %d), Acknowledgment: %d", seq, seq-isn[sender], ack)
	if flags&flagACK != 0 {
		b = fmt.Appendf(b, " (relative %d)", ack-isn[1-sender])
	}
	b = fmt.Appendf(b, "\n\t\tFlags: %s, Header Length: %d, Window: %d, Checksum: 0x%04x\n", flagNames(flags), hl, binary.BigEndian.Uint16(seg[14:]), binary.BigEndian.Uint16(seg[16:]))
	if hl > tcpLen && hl <= len(seg) {
		b = append(b, "\t\tOptions:"...)
		b = appendOptions(b, seg[tcpLen:hl])
		b = append(b, '\n')
	}
	if payload := seg[min(hl, len(seg)):]; len(payload) > 0 {
		b = fmt.Appendf(b, "\t\tData (%d bytes):\n", len(payload))
		for line := range strings.Lines(string(hexdump.Hex(nil, payload))) {
			b = append(b, "\t\t\t"...)
			b = append(b, line...)
		}
	}
	return b
}

// mac formats a MAC address as the seed's sniffer does: upper case, colons.
func mac(b []byte) string {
	return strings.ToUpper(fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4], b[5]))
}

// flagNames lists the TCP flags set, in the order of their bits.
func flagNames(f uint8) string {
	var names []string
	for i, n := range []string{"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"} {
		if f&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	return strings.Join(names, " ")
}

// appendOptions appends the TCP options the SYNs carry.
func appendOptions(b, opts []byte) []byte {
	sep := " "
	for len(opts) > 0 {
		switch kind := opts[0]; {
		case kind == 0:
			return append(b, sep+"EOL"...)
		case kind == 1:
			b = append(b, sep+"NOP"...)
			opts = opts[1:]
		case len(opts) < 2 || int(opts[1]) < 2 || int(opts[1]) > len(opts):
			return fmt.Appendf(b, "%s(bad option %d)", sep, kind)
		case kind == 2 && opts[1] == 4:
			b = fmt.Appendf(b, "%sMSS %d", sep, binary.BigEndian.Uint16(opts[2:]))
			opts = opts[4:]
		case kind == 3 && opts[1] == 3:
			b = fmt.Appendf(b, "%sWindow Scale %d", sep, opts[2])
			opts = opts[3:]
		default:
			b = fmt.Appendf(b, "%skind %d", sep, kind)
			opts = opts[opts[1]:]
		}
		sep = ", "
	}
	return b
}
