package tshark

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// pkt is one IPv4/TCP packet of a synthetic capture.
type pkt struct {
	src, dst   netip.AddrPort
	seq, ack   uint32
	flags      uint8
	data       string
	badTCPCsum bool
}

const (
	fin = 0x01
	syn = 0x02
	psh = 0x08
	ack = 0x10
)

// conversation returns a whole TCP connection from client to server:
// handshake, a request, a reply, FIN each way.
func conversation(client, server netip.AddrPort, req, reply string) []pkt {
	c, s := uint32(1000), uint32(5000)
	ps := []pkt{
		{src: client, dst: server, seq: c, flags: syn},
		{src: server, dst: client, seq: s, ack: c + 1, flags: syn | ack},
		{src: client, dst: server, seq: c + 1, ack: s + 1, flags: ack},
	}
	c, s = c+1, s+1
	ps = append(ps,
		pkt{src: client, dst: server, seq: c, ack: s, flags: psh | ack, data: req},
		pkt{src: server, dst: client, seq: s, ack: c + uint32(len(req)), flags: psh | ack, data: reply},
	)
	c, s = c+uint32(len(req)), s+uint32(len(reply))
	return append(ps,
		pkt{src: client, dst: server, seq: c, ack: s, flags: fin | ack},
		pkt{src: server, dst: client, seq: s, ack: c + 1, flags: fin | ack},
		pkt{src: client, dst: server, seq: c + 1, ack: s + 1, flags: ack},
	)
}

func csum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// writePcap writes ps as a classic pcap file of raw IPv4 packets.
func writePcap(t *testing.T, ps []pkt) string {
	t.Helper()
	out := binary.BigEndian.AppendUint32(nil, 0xa1b2c3d4)
	out = binary.BigEndian.AppendUint16(out, 2)
	out = binary.BigEndian.AppendUint16(out, 4)
	out = binary.BigEndian.AppendUint64(out, 0)
	out = binary.BigEndian.AppendUint32(out, 65535)
	out = binary.BigEndian.AppendUint32(out, 101) // LINKTYPE_RAW
	for i, p := range ps {
		tcp := make([]byte, 20, 20+len(p.data))
		binary.BigEndian.PutUint16(tcp[0:], p.src.Port())
		binary.BigEndian.PutUint16(tcp[2:], p.dst.Port())
		binary.BigEndian.PutUint32(tcp[4:], p.seq)
		binary.BigEndian.PutUint32(tcp[8:], p.ack)
		tcp[12] = 5 << 4
		tcp[13] = p.flags
		binary.BigEndian.PutUint16(tcp[14:], 65535)
		tcp = append(tcp, p.data...)
		src, dst := p.src.Addr().As4(), p.dst.Addr().As4()
		pseudo := append(append(append([]byte(nil), src[:]...), dst[:]...), 0, 6, byte(len(tcp)>>8), byte(len(tcp)))
		var sum uint32
		for i := 0; i < len(pseudo); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
		}
		c := csum(tcp, sum)
		if p.badTCPCsum {
			c ^= 0x5555
		}
		binary.BigEndian.PutUint16(tcp[16:], c)
		ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		binary.BigEndian.PutUint16(ip[4:], uint16(i))
		ip = append(append(ip, src[:]...), dst[:]...)
		binary.BigEndian.PutUint16(ip[10:], csum(ip, 0))
		frame := append(ip, tcp...)
		out = binary.BigEndian.AppendUint32(out, uint32(1700000000+i))
		out = binary.BigEndian.AppendUint32(out, 0)
		out = binary.BigEndian.AppendUint32(out, uint32(len(frame)))
		out = binary.BigEndian.AppendUint32(out, uint32(len(frame)))
		out = append(out, frame...)
	}
	file := filepath.Join(t.TempDir(), "t.pcap")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

// endpoints of conversation i.
func endpoints(i int) (client, server netip.AddrPort) {
	return netip.MustParseAddrPort(fmt.Sprintf("10.0.0.1:%d", 40000+i)), netip.MustParseAddrPort("10.0.0.2:80")
}

// TestFile: one File answers fields, filters and follows of 20 streams
// (more than the first run follows) with two tshark runs, and a clean
// file is clean.
func TestFile(t *testing.T) {
	Path(t)
	var ps []pkt
	for i := range 20 {
		c, s := endpoints(i)
		ps = append(ps, conversation(c, s, fmt.Sprintf("request %d\n", i), fmt.Sprintf("reply %d\n", i))...)
	}
	f := Open(t, writePcap(t, ps), "tcp.payload")
	if n := len(f.Packets()); n != len(ps) {
		t.Fatalf("%d packets, want %d", n, len(ps))
	}
	f.CheckClean()
	syns := f.Fields(func(p Packet) bool { return p.Is("tcp.flags.syn", "1") && p.Is("tcp.flags.ack", "0") }, "ip.src", "tcp.srcport", "tcp.stream")
	if len(syns) != 20 || syns[19] != "10.0.0.1\t40019\t19" {
		t.Errorf("SYNs %q, want 20, the last from 10.0.0.1:40019 in stream 19", syns)
	}
	data := f.Fields(func(p Packet) bool { return p.Int("tcp.len") > 0 && p.Is("tcp.stream", "3") }, "tcp.payload")
	if want := []string{fmt.Sprintf("%x", "request 3\n"), fmt.Sprintf("%x", "reply 3\n")}; strings.Join(data, " ") != strings.Join(want, " ") {
		t.Errorf("stream 3 payloads %q, want %q", data, want)
	}
	var stream3 []byte
	for _, p := range f.Packets() {
		if p.Is("tcp.stream", "3") {
			stream3 = append(stream3, p.Payload()...)
		}
	}
	if string(stream3) != "request 3\nreply 3\n" {
		t.Errorf("stream 3 payloads %q", stream3)
	}
	for _, i := range []int{0, 15, 19, 16} { // 16 and 19 come from the second run
		c, s := endpoints(i)
		st := f.Follow(c.String(), s.String())
		if st.Nodes != [2]string{c.String(), s.String()} || string(st.Data[0]) != fmt.Sprintf("request %d\n", i) || string(st.Data[1]) != fmt.Sprintf("reply %d\n", i) {
			t.Errorf("follow %d: %+v", i, st)
		}
		if got := f.FollowIndex(i); got.Nodes != st.Nodes || string(got.Data[0]) != string(st.Data[0]) {
			t.Errorf("stream %d by index: %+v, by address %+v", i, got, st)
		}
	}
}

// recorder records what CheckClean reports instead of failing the test.
type recorder struct {
	testing.TB
	got []string
}

func (e *recorder) Errorf(format string, args ...any) {
	e.got = append(e.got, fmt.Sprintf(format, args...))
}

// TestCheckCleanFlags: CheckClean reports a bad TCP checksum and a lost
// segment (one conversation each, in one file), the same packets as the
// display filter it stands for selects.
func TestCheckCleanFlags(t *testing.T) {
	Path(t)
	c, s := endpoints(0)
	bad := conversation(c, s, "request\n", "reply\n")
	bad[3].badTCPCsum = true
	c, s = endpoints(1)
	lost := conversation(c, s, "request\n", "reply\n")
	file := writePcap(t, append(bad, append(lost[:3:3], lost[4:]...)...))
	e := &recorder{TB: t}
	f := Open(e, file)
	f.CheckClean()
	// The bad checksum; the lost segment's absence: its ACK, and the FINs
	// after the gap.
	if len(e.got) != 1 || !strings.Contains(e.got[0], "tshark flags 4 packet(s)") || !strings.Contains(e.got[0], `"4\tBad checksum`) ||
		!strings.Contains(e.got[0], `"12\tACKed segment that wasn't captured`) {
		t.Errorf("CheckClean reports %q, want one error for the bad checksum (frame 4) and the lost segment (frames 12 to 14)", e.got)
	}
	filtered := strings.Split(strings.TrimSpace(Run(t, file, "-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE",
		"-Y", uncleanFilter, "-T", "fields", "-e", "frame.number", "-e", "_ws.expert.message")), "\n")
	if strings.Join(f.unclean(), "\n") != strings.Join(filtered, "\n") {
		t.Errorf("CheckClean selects %q; tshark -Y %q: %q", f.unclean(), uncleanFilter, filtered)
	}
}
