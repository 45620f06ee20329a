package replay_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/internal/replay"
)

// epbs returns the offsets and lengths of the Enhanced Packet Blocks of a
// pcapng file (little-endian, as host/capture writes it) of interface
// iface with more than min bytes captured.
func epbs(t *testing.T, b []byte, iface uint32, min uint32) (off, size []int) {
	t.Helper()
	for i := 0; i+12 <= len(b); {
		typ, n := binary.LittleEndian.Uint32(b[i:]), int(binary.LittleEndian.Uint32(b[i+4:]))
		if n < 12 || i+n > len(b) {
			t.Fatalf("bad block at %d", i)
		}
		if typ == 6 && binary.LittleEndian.Uint32(b[i+8:]) == iface && binary.LittleEndian.Uint32(b[i+20:]) > min {
			off, size = append(off, i), append(size, n)
		}
		i += n
	}
	return off, size
}

// clientBytes returns the client's bytes of the only connection of file
// b, and the connection.
func readOne(t *testing.T, b []byte) replay.Conn {
	t.Helper()
	conns, err := replay.Read(bytes.NewReader(b))
	if err != nil || len(conns) != 1 {
		t.Fatalf("Read: %d conns, %v", len(conns), err)
	}
	return conns[0]
}

func dirBytes(c replay.Conn, d host.Direction) []byte {
	var b []byte
	for _, ch := range c.Chunks {
		if ch.Dir == d {
			b = append(b, ch.Data...)
		}
	}
	return b
}

// TestReadReordered: two data packets of the client leg swapped in the
// file. Read once appended the later segment where the earlier belonged
// and skipped the earlier as a retransmission: 2,998,540 of 3,000,000
// bytes, shifted. It reassembles them now; and a packet missing for good
// is a Gap of its size, not bytes silently joined.
func TestReadReordered(t *testing.T) {
	t.Parallel()
	big := make([]byte, 3_000_000)
	rand.NewChaCha8([32]byte{3}).Read(big)
	file := record(t, nil, func(c io.ReadWriter) {
		go c.Write(big)
		if _, err := io.ReadFull(c, make([]byte, len(big))); err != nil {
			t.Error(err)
		}
	})
	orig, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(big)
	if got := sha256.Sum256(dirBytes(readOne(t, orig), host.ClientToServer)); got != want {
		t.Fatal("the file as written does not give the client's bytes")
	}
	off, size := epbs(t, orig, 0, 1000)
	i := 0 // two consecutive data blocks of the client leg
	for ; i+1 < len(off) && off[i]+size[i] != off[i+1]; i++ {
	}
	if i+1 >= len(off) {
		t.Fatal("no two consecutive data packets on the client leg")
	}
	a, b := off[i], off[i+1]
	swapped := slices.Concat(orig[:a], orig[b:b+size[i+1]], orig[a:b], orig[b+size[i+1]:])
	c := readOne(t, swapped)
	if got := dirBytes(c, host.ClientToServer); sha256.Sum256(got) != want || len(c.Gaps) != 0 {
		t.Errorf("swapped packets: %d client bytes (sha256 ok %v), gaps %v; want %d, the same bytes, no gap", len(got), sha256.Sum256(got) == want, c.Gaps, len(big))
	}

	// One packet missing: its bytes are a gap, reported.
	var payload int
	{
		one := readOne(t, slices.Concat(orig[:b+size[i+1]])) // up to the packet
		payload = len(dirBytes(one, host.ClientToServer))
		before := readOne(t, slices.Concat(orig[:b]))
		payload -= len(dirBytes(before, host.ClientToServer))
	}
	cut := slices.Concat(orig[:b], orig[b+size[i+1]:])
	c = readOne(t, cut)
	got := dirBytes(c, host.ClientToServer)
	before := readOne(t, orig[:b])
	offset := int64(len(dirBytes(before, host.ClientToServer)))
	wantGap := []replay.Gap{{Dir: host.ClientToServer, Offset: offset, Bytes: payload}}
	if len(c.Gaps) != 1 || c.Gaps[0] != wantGap[0] || len(got) != len(big)-payload ||
		!bytes.Equal(got[:offset], big[:offset]) || !bytes.Equal(got[offset:], big[offset+int64(payload):]) {
		t.Errorf("a packet missing: %d client bytes, gaps %v; want %d and %v", len(got), c.Gaps, len(big)-payload, wantGap)
	}
	if s := c.Gaps[0].String(); !strings.Contains(s, " bytes client -> server missing from the recording at offset ") {
		t.Errorf("gap %q", s)
	}
}

// recordRoute captures one session through chain on a route from listen
// to a server on target, which serve answers; session runs the client,
// which is then closed (whatever it got is its own business), and returns
// the file.
func recordRoute(t *testing.T, listen, target string, chain []host.Link, serve func(c net.Conn), session func(c net.Conn)) []byte {
	t.Helper()
	file := filepath.Join(t.TempDir(), "c.pcapng")
	recordAt(t, listen, target, file, chain, serve, func(c *net.TCPConn, _ *capture.Writer) {
		session(c)
		c.Close()
	})
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadMixedFamilies: an IPv6 client through an IPv4 target. The
// target leg is drawn from 0.0.0.0 (one family per leg), so Read, which
// paired the legs by the client's address, left them apart: the
// connection went to the listen address, with the client's received bytes
// (after the chain) as the server's.
func TestReadMixedFamilies(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, listen, target string }{
		{"IPv6 client, IPv4 target", "[::1]:0", "127.0.0.1:0"},
		{"IPv4 client, IPv6 target", "127.0.0.1:0", "[::1]:0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			testMixedFamilies(t, tc.listen, tc.target)
		})
	}
}

func testMixedFamilies(t *testing.T, listen, targetAddr string) {
	pang := host.Link{Name: "pang", Hook: host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
		if dir == host.ServerToClient {
			return bytes.ReplaceAll(b, []byte("PONG"), []byte("PANG")), nil
		}
		return b, nil
	})}
	var target string
	var client string
	b := recordRoute(t, listen, targetAddr, []host.Link{pang}, func(c net.Conn) {
		target = c.LocalAddr().String()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err == nil {
			io.WriteString(c, "+PONG\r\n")
		}
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	}, func(c net.Conn) {
		client = c.LocalAddr().String()
		io.WriteString(c, "PING\n")
		got := make([]byte, 7)
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "+PANG\r\n" {
			t.Errorf("client got %q, %v", got, err)
		}
		c.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, c)
	})
	conns, err := replay.Read(bytes.NewReader(b))
	if err != nil || len(conns) != 1 {
		t.Fatalf("Read: %d conns, %v; want 1", len(conns), err)
	}
	c := conns[0]
	if c.Server.String() != target || c.Client.String() != client {
		t.Errorf("connection %s -> %s, want the client %s to the target %s", c.Client, c.Server, client, target)
	}
	// The target leg names an IPv4 client by its IPv4-mapped address.
	if ca := netip.MustParseAddrPort(client); ca.Addr().Is4() {
		if got, want := targetLegSource(t, b), netip.AddrPortFrom(netip.AddrFrom16(ca.Addr().As16()), ca.Port()); got != want {
			t.Errorf("the target leg's SYN comes from %s, want %s", got, want)
		}
	}
	if got := string(dirBytes(c, host.ServerToClient)); got != "+PONG\r\n" {
		t.Errorf("server -> client %q, want the target's \"+PONG\\r\\n\"", got)
	}
	if got := string(dirBytes(c, host.ClientToServer)); got != "PING\n" {
		t.Errorf("client -> server %q", got)
	}
}

// events records the calls a chain's filter gets, in order.
type events struct {
	host.PassThrough
	mu  *sync.Mutex
	log *[]string
}

func (e events) Open(*host.ConnInfo) (host.Filter, error) { return e, nil }

func (e events) Data(dir host.Direction, b []byte, s *host.Stream) error {
	e.mu.Lock()
	*e.log = append(*e.log, fmt.Sprintf("%s %q", dir, b))
	e.mu.Unlock()
	return s.Forward(dir, b)
}

func (e events) End(dir host.Direction, _ *host.Stream) error {
	e.mu.Lock()
	*e.log = append(*e.log, dir.String()+" end")
	e.mu.Unlock()
	return nil
}

// TestReplayHalfCloseInOrder: the seeds' half-close exchange, where the
// server answers only once the client has half-closed. The replay feeds
// the client's FIN where it was recorded, before the server's answer, as
// the chain saw it live; it used to feed both FINs after every chunk, so
// the chain saw the answer before the end it answers.
func TestReplayHalfCloseInOrder(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var live []string
	b := recordRoute(t, "127.0.0.1:0", "127.0.0.1:0", []host.Link{{Name: "events", Hook: events{mu: &mu, log: &live}}}, func(c net.Conn) {
		got, _ := io.ReadAll(c) // until the client's FIN
		io.WriteString(c, "Hello "+string(got))
		c.(*net.TCPConn).CloseWrite()
	}, func(c net.Conn) {
		io.WriteString(c, "abc")
		c.(*net.TCPConn).CloseWrite()
		io.ReadAll(c)
	})
	c := readOne(t, b)
	if c.AfterEnd != [2]int{1, 0} {
		t.Errorf("chunks after each FIN: %v, want [1 0] (the answer after the client's FIN)", c.AfterEnd)
	}
	var replayed []string
	rep, err := replay.Run(context.Background(), []replay.Conn{c}, replay.Options{Chain: []host.Link{{Name: "events", Hook: events{mu: &mu, log: &replayed}}}})
	if err != nil || rep.Failed() {
		t.Fatalf("replay: %v, failed %v", err, rep.Failed())
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{`client -> server "abc"`, "client -> server end", `server -> client "Hello abc"`, "server -> client end"}
	if strings.Join(live, "\n") != strings.Join(want, "\n") {
		t.Fatalf("live, the chain saw %q, want %q", live, want)
	}
	if strings.Join(replayed, "\n") != strings.Join(want, "\n") {
		t.Errorf("replayed, the chain saw %q, want %q as live", replayed, want)
	}
	var steps []string
	for _, s := range rep.Conns[0].Steps {
		steps = append(steps, fmt.Sprintf("%s %q: %s", s.Dir, s.In, s.Verdict()))
	}
	wantSteps := []string{`client -> server "abc": forwarded`, `client -> server "": half-closed`, `server -> client "Hello abc": forwarded`, `server -> client "": half-closed`}
	if strings.Join(steps, "\n") != strings.Join(wantSteps, "\n") {
		t.Errorf("steps %q, want %q", steps, wantSteps)
	}
}

// targetLegSource is the source address of the first packet of the target
// leg (interface 1) of host/capture's file b.
func targetLegSource(t *testing.T, b []byte) netip.AddrPort {
	t.Helper()
	r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("no packet on the target leg: %v", err)
		}
		if ci.InterfaceIndex != 1 {
			continue
		}
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := p.NetworkLayer().(*layers.IPv6)
		tcp, _ := p.TransportLayer().(*layers.TCP)
		if ip == nil || tcp == nil {
			t.Fatalf("the target leg's first packet is not TCP over IPv6: %v", p)
		}
		a, _ := netip.AddrFromSlice(ip.SrcIP)
		return netip.AddrPortFrom(a, uint16(tcp.SrcPort))
	}
}

// TestReadReset: a connection the chain aborted ends with the tunnel's
// RSTs on both legs; Read says so, and the replay is cut, not failed. It
// was reported as a recording that ends before the connection did.
func TestReadReset(t *testing.T) {
	t.Parallel()
	boom := host.Link{Name: "boom", Hook: host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
		if bytes.HasPrefix(b, []byte("!")) {
			return nil, io.ErrUnexpectedEOF
		}
		return b, nil
	})}
	b := recordRoute(t, "127.0.0.1:0", "127.0.0.1:0", []host.Link{boom}, func(c net.Conn) { io.Copy(c, c) }, func(c net.Conn) {
		io.WriteString(c, "one\n")
		io.ReadFull(c, make([]byte, 4))
		io.WriteString(c, "!\n")
		io.Copy(io.Discard, c)
	})
	c := readOne(t, b)
	const want = `the tunnel reset the client; the tunnel reset the target ("connection closed before both directions ended (a filter or plugin failed, or aborted it)")`
	if c.Reset != want {
		t.Errorf("Reset %q, want %q", c.Reset, want)
	}
	rep, err := replay.Run(context.Background(), []replay.Conn{c}, replay.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if r := rep.Conns[0]; !r.Cut || rep.Failed() {
		t.Errorf("replay without the chain: cut %v, failed %v (%q); want cut", r.Cut, rep.Failed(), r.Err)
	}
}

// TestVerdictAfterFailure: the chunks after a plugin failed on an
// earlier one were labelled "dropped or held", as if the plugin had
// dropped them.
func TestVerdictAfterFailure(t *testing.T) {
	for _, c := range []struct {
		s    replay.Step
		want string
	}{
		{replay.Step{In: []byte("b"), AfterFailure: true}, "not run: a plugin had failed"},
		{replay.Step{In: []byte("b"), Forwarded: []byte("b"), AfterFailure: true}, "forwarded, bypassing the failed plugin"},
		{replay.Step{In: []byte("!"), Failure: "x"}, "plugin failed on it"},
		{replay.Step{In: []byte("!"), Forwarded: []byte("!"), Failure: "x"}, "plugin failed on it, bypassed: forwarded"},
		{replay.Step{In: []byte("b")}, "dropped or held"},
	} {
		if got := c.s.Verdict(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.s, got, c.want)
		}
	}
}
