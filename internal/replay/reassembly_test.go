package replay_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/replay"
)

// pkt is one packet of a file mkfile writes.
type pkt struct {
	iface    int
	src, dst string
	flags    string // S A P F R
	seq      uint32
	data     string
	comment  string
}

// mkfile writes ps as a pcapng of raw IPv4 packets: on one interface, or
// with legs on host/capture's two (client and target).
func mkfile(t *testing.T, legs bool, ps []pkt) []byte {
	t.Helper()
	var buf bytes.Buffer
	name0 := "eth0"
	if legs {
		name0 = "client"
	}
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: name0, LinkType: layers.LinkTypeRaw, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	if legs {
		if _, err := w.AddInterface(pcapgo.NgInterface{Name: "target", LinkType: layers.LinkTypeRaw, SnapLength: 65535}); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range ps {
		b := p.bytes(t)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*1000), CaptureLength: len(b), Length: len(b), InterfaceIndex: p.iface}
		var o pcapgo.NgPacketOptions
		if p.comment != "" {
			o.Comments = []string{p.comment}
		}
		if err := w.WritePacketWithOptions(ci, b, o); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	return buf.Bytes()
}

// mkpcap writes ps as a classic pcap (tcpdump's format) of raw IPv4
// packets; it has no interfaces or comments.
func mkpcap(t *testing.T, ps []pkt) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriterNanos(&buf)
	if err := w.WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
		t.Fatal(err)
	}
	for i, p := range ps {
		b := p.bytes(t)
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, int64(i)*1000), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// bytes is the IPv4 packet of p.
func (p pkt) bytes(t *testing.T) []byte {
	t.Helper()
	s, d := netip.MustParseAddrPort(p.src), netip.MustParseAddrPort(p.dst)
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP(s.Addr().AsSlice()), DstIP: net.IP(d.Addr().AsSlice())}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.Port()), DstPort: layers.TCPPort(d.Port()), Seq: p.seq, Window: 65535}
	for _, f := range p.flags {
		switch f {
		case 'S':
			tcp.SYN = true
		case 'A':
			tcp.ACK = true
		case 'P':
			tcp.PSH = true
		case 'F':
			tcp.FIN = true
		case 'R':
			tcp.RST = true
		}
	}
	tcp.SetNetworkLayerForChecksum(ip)
	sb := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(p.data)); err != nil {
		t.Fatal(err)
	}
	return sb.Bytes()
}

// show spells c's chunks (> to the server, < to the client) and ends.
func show(c replay.Conn) string {
	s := ""
	for _, ch := range c.Chunks {
		d := ">"
		if ch.Dir == host.ServerToClient {
			d = "<"
		}
		s += fmt.Sprintf("%s%q ", d, ch.Data)
	}
	return fmt.Sprintf("%s gaps=%v ended=%v reset=%q", s, c.Gaps, c.Ended, c.Reset)
}

const cl, sv = "10.0.0.1:40000", "10.0.0.2:80"

// readAll reads the connections of a pcapng.
func readAll(t *testing.T, b []byte) []replay.Conn {
	t.Helper()
	conns, err := replay.Read(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return conns
}

// TestReadClassicPcap: a classic pcap file (tcpdump -w's default format)
// is read as a pcapng of one interface is.
func TestReadClassicPcap(t *testing.T) {
	ps := []pkt{
		{0, cl, sv, "S", 100, "", ""},
		{0, sv, cl, "SA", 500, "", ""},
		{0, cl, sv, "A", 101, "", ""},
		{0, cl, sv, "AP", 101, "PING\r\n", ""},
		{0, sv, cl, "AP", 501, "+PONG\r\n", ""},
		{0, cl, sv, "AF", 107, "", ""},
		{0, sv, cl, "AF", 508, "", ""},
	}
	want := show(readAll(t, mkfile(t, false, ps))[0])
	conns := readAll(t, mkpcap(t, ps))
	if len(conns) != 1 || show(conns[0]) != want {
		t.Fatalf("from the pcap: %d connections, %v; want %s", len(conns), conns, want)
	}
	if _, err := replay.Read(bytes.NewReader([]byte("not a capture at all"))); err == nil || !strings.Contains(err.Error(), "not a pcapng or pcap file") {
		t.Errorf("a file that is neither: %v", err)
	}
	// The first 100 bytes of a capture (head -c 100) were "not a pcapng or
	// pcap file: unexpected EOF".
	whole := mkfile(t, false, ps)
	if _, err := replay.Read(bytes.NewReader(whole[:12])); err == nil || !strings.Contains(err.Error(), "a pcapng file cut short in its first blocks") {
		t.Errorf("a pcapng file cut in its section header: %v", err)
	}
}

// TestReadWrapsSequenceNumbers: a swap of two segments across 2^32 is
// reassembled.
func TestReadWrapsSequenceNumbers(t *testing.T) {
	var c0, s0 uint32 = 0xFFFFFFF0, 0x7FFFFFF0
	ps := []pkt{
		{0, cl, sv, "S", c0, "", ""},
		{0, sv, cl, "SA", s0, "", ""},
		{0, cl, sv, "A", c0 + 1, "", ""},
		// client bytes 0..9 at c0+1 (wrap at offset 15), 10..29 ; file has them swapped
		{0, cl, sv, "AP", c0 + 1 + 10, "klmnopqrstuvwxyz0123", ""},
		{0, cl, sv, "A", c0 + 1, "abcdefghij", ""},
		{0, sv, cl, "AP", s0 + 1, "RESP", ""},
		{0, cl, sv, "AF", c0 + 31, "", ""},
		{0, sv, cl, "AF", s0 + 5, "", ""},
	}
	c := readAll(t, mkfile(t, false, ps))
	if got := string(dirBytes(c[0], host.ClientToServer)); got != "abcdefghijklmnopqrstuvwxyz0123" || len(c[0].Gaps) != 0 {
		t.Errorf("got %q gaps %v", got, c[0].Gaps)
	}
}

// TestReadGapKeepsCaptureOrder: in a file of another tool (one
// interface), a client segment never captured held the client's later
// bytes to the end of the file, after every server chunk; they are put
// back where they were captured.
func TestReadGapKeepsCaptureOrder(t *testing.T) {
	const c0, s0 = 1000, 5000
	ps := []pkt{
		{0, cl, sv, "S", c0, "", ""},
		{0, sv, cl, "SA", s0, "", ""},
		// "req1\n" at c0+1 missing from the file
		{0, cl, sv, "AP", c0 + 6, "req2\n", ""},
		{0, sv, cl, "AP", s0 + 1, "resp1\n", ""},
		{0, sv, cl, "AP", s0 + 7, "resp2\n", ""},
		{0, cl, sv, "AP", c0 + 11, "req3\n", ""},
		{0, sv, cl, "AP", s0 + 13, "resp3\n", ""},
	}
	c := readAll(t, mkfile(t, false, ps))
	const want = `>"req2\n" <"resp1\n" <"resp2\n" >"req3\n" <"resp3\n"  gaps=[5 bytes client -> server missing from the recording at offset 0] ended=[false false] reset=""`
	if got := show(c[0]); got != want {
		t.Errorf("read:\n%s\nwant:\n%s", got, want)
	}
}

// TestReadSwappedChunks: two client chunks (each ending with PSH) swapped
// in the file came out reversed: the held one kept its own packet number
// as its place.
func TestReadSwappedChunks(t *testing.T) {
	const c0, s0 = 1000, 5000
	tag := `conn #1 route "r": client leg`
	ttag := `conn #1 route "r": target leg`
	tc, ts := "10.0.0.1:40000", "10.0.0.3:9000"
	ps := []pkt{
		{0, cl, sv, "S", c0, "", tag},
		{0, sv, cl, "SA", s0, "", ""},
		{1, tc, ts, "S", 1, "", ttag},
		{1, ts, tc, "SA", 7, "", ""},
		{0, cl, sv, "AP", c0 + 6, "bbbb\n", ""}, // second chunk first
		{0, cl, sv, "AP", c0 + 1, "aaaa\n", ""},
		{1, tc, ts, "AP", 2, "aaaa\nbbbb\n", ""},
		{1, ts, tc, "AP", 8, "ok\n", ""},
	}
	c := readAll(t, mkfile(t, true, ps))
	if len(c) != 1 {
		t.Fatalf("%d conns", len(c))
	}
	if got := string(dirBytes(c[0], host.ClientToServer)); got != "aaaa\nbbbb\n" {
		t.Errorf("client bytes %q, want %q", got, "aaaa\nbbbb\n")
	}
}

// TestReadOverlapsAndDuplicates: held segments duplicated, overlapped by a
// retransmission that fills the hole and runs into them; one byte never
// captured is a gap of one.
func TestReadOverlapsAndDuplicates(t *testing.T) {
	const c0, s0 = 1000, 5000
	ps := []pkt{
		{0, cl, sv, "S", c0, "", ""},
		{0, sv, cl, "SA", s0, "", ""},
		{0, cl, sv, "A", c0 + 11, "KLMNO", ""},       // 10..14
		{0, cl, sv, "A", c0 + 11, "KLMNO", ""},       // dup
		{0, cl, sv, "A", c0 + 14, "NOPQR", ""},       // 13..17 overlaps held
		{0, cl, sv, "A", c0 + 1, "ABCDEFGHIJKL", ""}, // 0..11 overlaps into held
		{0, cl, sv, "AP", c0 + 20, "T", ""},          // 18 missing -> gap of 1
		{0, cl, sv, "AF", c0 + 21, "", ""},
	}
	c := readAll(t, mkfile(t, false, ps))
	got := string(dirBytes(c[0], host.ClientToServer))
	if got != "ABCDEFGHIJKLMNOPQRT" || len(c[0].Gaps) != 1 || c[0].Gaps[0].Bytes != 1 || c[0].Gaps[0].Offset != 18 || !c[0].Ended[0] {
		t.Errorf("got %q %s", got, show(c[0]))
	}
}

// TestReadFINBeforeHeldData: a FIN captured before the data it follows.
func TestReadFINBeforeHeldData(t *testing.T) {
	const c0, s0 = 1000, 5000
	ps := []pkt{
		{0, cl, sv, "S", c0, "", ""},
		{0, sv, cl, "SA", s0, "", ""},
		{0, cl, sv, "AF", c0 + 6, "", ""},
		{0, cl, sv, "AP", c0 + 1, "hello", ""},
	}
	c := readAll(t, mkfile(t, false, ps))
	if got := string(dirBytes(c[0], host.ClientToServer)); got != "hello" || len(c[0].Gaps) != 0 || !c[0].Ended[0] {
		t.Errorf("%s", show(c[0]))
	}
}

// TestReadSwappedChunksOfACapture: the same with a host/capture
// recording, the client leg's "bbbb" packet moved before its "aaaa".
func TestReadSwappedChunksOfACapture(t *testing.T) {
	file := record(t, nil, func(c io.ReadWriter) {
		say(t, c, "aaaa", "aaaa")
		say(t, c, "bbbb", "bbbb")
	})
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	off0, size0 := epbs(t, orig, 0, 0)
	var off, size []int
	for i := range off0 {
		if size0[i] == 92 { // the blocks with 4 bytes of data
			off, size = append(off, off0[i]), append(size, size0[i])
		}
	}
	if len(off) != 4 {
		t.Fatalf("%d data blocks on the client leg", len(off))
	}
	a, b := off[0], off[2]
	moved := slices.Concat(orig[:a], orig[b:b+size[2]], orig[a:b], orig[b+size[2]:])
	c := readOne(t, moved)
	if got := string(dirBytes(c, host.ClientToServer)); got != "aaaabbbb" {
		t.Errorf("client bytes %q, want aaaabbbb", got)
	}
}

// TestLogReusedAcrossRuns: one Log for two Runs. Each Run's proxy numbers
// its connections from 1, and the second Run took the first one's close
// line for its own (here a filter's slow Closed delays the new one).
func TestLogReusedAcrossRuns(t *testing.T) {
	boom := host.Link{Name: "boom", Hook: host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
		if bytes.HasPrefix(b, []byte("!")) {
			return nil, io.ErrUnexpectedEOF
		}
		return b, nil
	})}
	chain := []host.Link{boom, {Name: "slow", Hook: slowHook{}}}
	mk := func(msg string) []replay.Conn {
		return []replay.Conn{{Client: netip.MustParseAddrPort(cl), Server: netip.MustParseAddrPort(sv),
			Chunks: []replay.Chunk{{Dir: host.ClientToServer, Data: []byte(msg)}}, Ended: [2]bool{true, true}}}
	}
	lg := replay.NewLog(nil)
	rep1, err := replay.Run(context.Background(), mk("!boom"), replay.Options{Chain: chain, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	if !rep1.Failed() {
		t.Fatalf("run 1 through the failing filter: not failed (%q)", rep1.Conns[0].Err)
	}
	rep2, err := replay.Run(context.Background(), mk("fine"), replay.Options{Chain: chain, Log: lg})
	if err != nil {
		t.Fatal(err)
	}
	if rep2.Conns[0].Err != "" || rep2.Failed() {
		t.Errorf("run 2 of a clean connection: err %q, failed %v", rep2.Conns[0].Err, rep2.Failed())
	}
}

// TestReadDuplicateSYNACK: a SYN-ACK retransmitted after the server's
// first data set the expected sequence back: a gap that was not, and the
// data after it held to the end.
func TestReadDuplicateSYNACK(t *testing.T) {
	const c0, s0 = 1000, 5000
	ps := []pkt{
		{0, cl, sv, "S", c0, "", ""},
		{0, sv, cl, "SA", s0, "", ""},
		{0, cl, sv, "AP", c0 + 1, "req", ""},
		{0, sv, cl, "AP", s0 + 1, "hello", ""},
		{0, sv, cl, "SA", s0, "", ""},
		{0, sv, cl, "AP", s0 + 6, "world", ""},
		{0, cl, sv, "AP", c0 + 4, "req2", ""},
	}
	c := readAll(t, mkfile(t, false, ps))
	if len(c[0].Gaps) != 0 || string(dirBytes(c[0], host.ServerToClient)) != "helloworld" {
		t.Errorf("%s", show(c[0]))
	}
}

// slowClose is a filter whose Closed takes 100 ms.
type slowClose struct{ host.PassThrough }

func (slowClose) Closed() { time.Sleep(100 * time.Millisecond) }

type slowHook struct{}

func (slowHook) Open(*host.ConnInfo) (host.Filter, error) { return slowClose{}, nil }
