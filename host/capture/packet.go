package capture

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"time"
)

// TCP flags.
const (
	flagFIN = 0x01
	flagSYN = 0x02
	flagRST = 0x04
	flagPSH = 0x08
	flagACK = 0x10
)

const (
	ethLen  = 14
	ipv4Len = 20
	ipv6Len = 40
	tcpLen  = 20
	// synOptions: MSS (4 bytes), NOP, window scale 7 (3 bytes).
	synOptLen = 8
	// wscale is the window scale the SYNs announce, so that the constant
	// window field (65535 << 7, 8 MiB) never makes Wireshark report a full
	// window.
	wscale = 7
)

// flow is one leg of one connection drawn as a TCP connection: the two
// endpoints (0: the side that connected, 1: the side that accepted) and
// their Ethernet addresses. Its addresses are set when it is made and never
// change; ipID is the writer goroutine's.
type flow struct {
	leg  int
	addr [2]netip.AddrPort
	mac  [2][6]byte
	mss  int
	ipID [2]uint16

	// The writer goroutine's, when a key log is expected (keylog.go):
	// whether the connecting side's first data was seen, and the records
	// held until the keys of the TLS session it started are written.
	started bool
	holding bool
	random  [32]byte
	since   time.Time
	held    []record

	// The writer goroutine's: the ACK the last data record left owed, and
	// whether f is in the Writer's list of flows that owe one.
	owe   owedAck
	owing bool
	// The file (Writer.files when it started) f last wrote to: a flow
	// first seen in a file gets a synthetic handshake there.
	file int64
}

// newFlow draws a leg between a and b. Both must be of one family.
func newFlow(leg int, a, b netip.AddrPort) *flow {
	f := &flow{leg: leg, addr: [2]netip.AddrPort{a, b}}
	// Locally administered unicast addresses: 02:00:00:00:<leg>:<side>.
	f.mac[0] = [6]byte{0x02, 0, 0, 0, byte(leg), 1}
	f.mac[1] = [6]byte{0x02, 0, 0, 0, byte(leg), 2}
	f.mss = 1500 - ipv4Len - tcpLen
	if a.Addr().Is6() {
		f.mss = 1500 - ipv6Len - tcpLen
	}
	return f
}

// segments is the number of data packets n payload bytes make.
func (f *flow) segments(n int) int {
	if n == 0 {
		return 0
	}
	return (n + f.mss - 1) / f.mss
}

// appendPacket appends one Ethernet frame from side `from` of f with the
// given TCP flags, sequence and acknowledgement numbers and payload, with
// correct IP and TCP checksums.
func (f *flow) appendPacket(dst []byte, from int, flags uint8, seq, ack uint32, payload []byte) []byte {
	src, dstAddr := f.addr[from], f.addr[1-from]
	v6 := src.Addr().Is6()
	optLen := 0
	if flags&flagSYN != 0 {
		optLen = synOptLen
	}
	tcpTotal := tcpLen + optLen + len(payload)

	// Ethernet.
	dst = append(dst, f.mac[1-from][:]...)
	dst = append(dst, f.mac[from][:]...)
	if v6 {
		dst = binary.BigEndian.AppendUint16(dst, 0x86dd)
	} else {
		dst = binary.BigEndian.AppendUint16(dst, 0x0800)
	}
	// IP.
	ipStart := len(dst)
	if v6 {
		dst = binary.BigEndian.AppendUint32(dst, 6<<28)
		dst = binary.BigEndian.AppendUint16(dst, uint16(tcpTotal))
		dst = append(dst, 6, 64) // next header TCP, hop limit
		s16, d16 := src.Addr().As16(), dstAddr.Addr().As16()
		dst = append(dst, s16[:]...)
		dst = append(dst, d16[:]...)
	} else {
		f.ipID[from]++
		dst = append(dst, 0x45, 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(ipv4Len+tcpTotal))
		dst = binary.BigEndian.AppendUint16(dst, f.ipID[from])
		dst = binary.BigEndian.AppendUint16(dst, 0x4000) // don't fragment
		dst = append(dst, 64, 6, 0, 0)                   // TTL, TCP, checksum
		s4, d4 := src.Addr().As4(), dstAddr.Addr().As4()
		dst = append(dst, s4[:]...)
		dst = append(dst, d4[:]...)
		binary.BigEndian.PutUint16(dst[ipStart+10:], ^fold(sum(0, dst[ipStart:])))
	}
	// TCP.
	tcpStart := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, src.Port())
	dst = binary.BigEndian.AppendUint16(dst, dstAddr.Port())
	dst = binary.BigEndian.AppendUint32(dst, seq)
	dst = binary.BigEndian.AppendUint32(dst, ack)
	dst = append(dst, byte((tcpLen+optLen)/4)<<4, flags)
	dst = binary.BigEndian.AppendUint16(dst, 0xffff) // window
	dst = append(dst, 0, 0, 0, 0)                    // checksum, urgent pointer
	if optLen > 0 {
		dst = append(dst, 2, 4)
		dst = binary.BigEndian.AppendUint16(dst, uint16(f.mss))
		dst = append(dst, 1, 3, 3, wscale)
	}
	dst = append(dst, payload...)

	// The pseudo-header, then the segment.
	var s uint32
	if v6 {
		s = sum(s, dst[ipStart+8:ipStart+40])
		s += uint32(tcpTotal) + 6
	} else {
		s = sum(s, dst[ipStart+12:ipStart+20])
		s += uint32(tcpTotal) + 6
	}
	s = sum(s, dst[tcpStart:])
	binary.BigEndian.PutUint16(dst[tcpStart+16:], ^fold(s))
	return dst
}

// sum adds b to the one's complement sum s as big-endian 16-bit words (an
// odd last byte is padded with zero) and returns it folded to 16 bits. It
// adds 64 bits at a time with end-around carry: 2^16 = 1 modulo 2^16-1,
// which divides 2^64-1, so the 16-bit sum is the same.
func sum(s uint32, b []byte) uint32 {
	acc := uint64(s)
	var c uint64
	for len(b) >= 32 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[8:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[16:]), c)
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b[24:]), c)
		acc += c // cannot carry again: acc <= 2^64-2 after a carry
		b = b[32:]
	}
	for len(b) >= 8 {
		acc, c = bits.Add64(acc, binary.BigEndian.Uint64(b), 0)
		acc += c
		b = b[8:]
	}
	var tail uint64
	for i, x := range b { // up to 7 bytes, as the start of a big-endian word
		tail |= uint64(x) << (56 - 8*i)
	}
	acc, c = bits.Add64(acc, tail, 0)
	acc += c
	acc = acc>>32 + acc&0xffffffff
	acc = acc>>32 + acc&0xffffffff
	return uint32(fold(uint32(acc)))
}

// fold reduces a one's complement sum to 16 bits.
func fold(s uint32) uint16 {
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
