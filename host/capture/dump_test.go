package capture

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
)

// dumpExchange runs a known exchange through the packets dump, with fixed
// initial sequence numbers: the handshake, "hello\n" from the client,
// "HELLO\n" back, then both ends close.
func dumpExchange(t *testing.T, client, listen string) string {
	t.Helper()
	var out bytes.Buffer
	d := Dump(&out).(*dumpHook)
	d.isn = func(_ uint64, side int) uint32 { return []uint32{1000, 5000}[side] }
	info := &host.ConnInfo{ID: 1, Route: "r", Client: tcpAddr(t, client), Listen: tcpAddr(t, listen), Target: "127.0.0.1:6379"}
	flt, err := d.Open(info)
	if err != nil {
		t.Fatal(err)
	}
	f := flt.(*dumpFilter)
	f.Opened(nil)
	f.data(host.ClientToServer, []byte("hello\n"))
	f.data(host.ServerToClient, []byte("HELLO\n"))
	f.End(host.ClientToServer, nil)
	f.End(host.ServerToClient, nil)
	f.Closed()
	return out.String()
}

func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// The seed's sniffer view of a known exchange, byte for byte. The
// checksums are the ones tshark validates in the capture tests (the same
// packets).
func TestDumpPacketsIPv4(t *testing.T) {
	got := dumpExchange(t, "192.0.2.7:51234", "192.0.2.1:9090")
	if got != wantIPv4 {
		t.Errorf("dump:\n%s\nwant:\n%s", got, wantIPv4)
		gl, wl := strings.Split(got, "\n"), strings.Split(wantIPv4, "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("first difference at line %d:\n got %q\nwant %q", i+1, gl[i], wl[i])
			}
		}
	}
}

func TestDumpPacketsIPv6(t *testing.T) {
	got := dumpExchange(t, "[2001:db8::7]:51234", "[2001:db8::1]:9090")
	// The handshake's first packet and the client's data packet.
	for _, want := range []string{
		"Ethernet Frame:\n\tDestination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x86dd (IPv6)\n" +
			"\tIPv6 Packet:\n\t\tVersion: 6, Payload Length: 28, Hop Limit: 64\n\t\tNext Header: 6 (TCP), Source: 2001:db8::7, Target: 2001:db8::1\n" +
			"\tTCP Segment:\n\t\tSource Port: 51234, Destination Port: 9090\n\t\tSequence: 1000 (relative 0), Acknowledgment: 0\n",
		"\t\tOptions: MSS 1440, NOP, Window Scale 7\n",
		"\t\tSequence: 1001 (relative 1), Acknowledgment: 5001 (relative 1)\n\t\tFlags: PSH ACK, Header Length: 20, Window: 65535",
		"\t\tData (6 bytes):\n\t\t\t00000000  68 65 6c 6c 6f 0a                                 |hello.|\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("dump lacks\n%s\nin\n%s", want, got)
		}
	}
}

// A chunk larger than the MSS is split as the capture splits it.
func TestDumpPacketsSplitsAtMSS(t *testing.T) {
	var out bytes.Buffer
	d := Dump(&out).(*dumpHook)
	info := &host.ConnInfo{ID: 7, Client: tcpAddr(t, "127.0.0.1:4000"), Listen: tcpAddr(t, "127.0.0.1:5000")}
	flt, _ := d.Open(info)
	f := flt.(*dumpFilter)
	f.data(host.ClientToServer, bytes.Repeat([]byte("x"), 3000))
	got := out.String()
	for _, want := range []string{"Data (1460 bytes)", "Sequence: " /* ... */, "(relative 1461)", "(relative 2921)", "Data (80 bytes)", "Acknowledgment: "} {
		if !strings.Contains(got, want) {
			t.Errorf("dump lacks %q", want)
		}
	}
	if n := strings.Count(got, "#7 client -> server"); n != 3 {
		t.Errorf("%d packets from the client, want 3", n)
	}
	if n := strings.Count(got, "#7 server -> client"); n != 1 {
		t.Errorf("%d ACKs from the tunnel, want 1", n)
	}
}

const wantIPv4 = `------------------------------------------------------------
#1 client -> server
Ethernet Frame:
	Destination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.7, Target: 192.0.2.1
		Total Length: 48, Identification: 1, Flags: DF, Checksum: 0xb6be
	TCP Segment:
		Source Port: 51234, Destination Port: 9090
		Sequence: 1000 (relative 0), Acknowledgment: 0
		Flags: SYN, Header Length: 28, Window: 65535, Checksum: 0x1083
		Options: MSS 1460, NOP, Window Scale 7
------------------------------------------------------------
#1 server -> client
Ethernet Frame:
	Destination: 02:00:00:00:00:01, Source: 02:00:00:00:00:02, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.1, Target: 192.0.2.7
		Total Length: 48, Identification: 1, Flags: DF, Checksum: 0xb6be
	TCP Segment:
		Source Port: 9090, Destination Port: 51234
		Sequence: 5000 (relative 0), Acknowledgment: 1001 (relative 1)
		Flags: SYN ACK, Header Length: 28, Window: 65535, Checksum: 0xfce9
		Options: MSS 1460, NOP, Window Scale 7
------------------------------------------------------------
#1 client -> server
Ethernet Frame:
	Destination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.7, Target: 192.0.2.1
		Total Length: 40, Identification: 2, Flags: DF, Checksum: 0xb6c5
	TCP Segment:
		Source Port: 51234, Destination Port: 9090
		Sequence: 1001 (relative 1), Acknowledgment: 5001 (relative 1)
		Flags: ACK, Header Length: 20, Window: 65535, Checksum: 0x28b5
------------------------------------------------------------
#1 client -> server
Ethernet Frame:
	Destination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.7, Target: 192.0.2.1
		Total Length: 46, Identification: 3, Flags: DF, Checksum: 0xb6be
	TCP Segment:
		Source Port: 51234, Destination Port: 9090
		Sequence: 1001 (relative 1), Acknowledgment: 5001 (relative 1)
		Flags: PSH ACK, Header Length: 20, Window: 65535, Checksum: 0xe4ca
		Data (6 bytes):
			00000000  68 65 6c 6c 6f 0a                                 |hello.|
------------------------------------------------------------
#1 server -> client
Ethernet Frame:
	Destination: 02:00:00:00:00:01, Source: 02:00:00:00:00:02, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.1, Target: 192.0.2.7
		Total Length: 40, Identification: 2, Flags: DF, Checksum: 0xb6c5
	TCP Segment:
		Source Port: 9090, Destination Port: 51234
		Sequence: 5001 (relative 1), Acknowledgment: 1007 (relative 7)
		Flags: ACK, Header Length: 20, Window: 65535, Checksum: 0x28af
------------------------------------------------------------
#1 server -> client
Ethernet Frame:
	Destination: 02:00:00:00:00:01, Source: 02:00:00:00:00:02, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.1, Target: 192.0.2.7
		Total Length: 46, Identification: 3, Flags: DF, Checksum: 0xb6be
	TCP Segment:
		Source Port: 9090, Destination Port: 51234
		Sequence: 5001 (relative 1), Acknowledgment: 1007 (relative 7)
		Flags: PSH ACK, Header Length: 20, Window: 65535, Checksum: 0x4505
		Data (6 bytes):
			00000000  48 45 4c 4c 4f 0a                                 |HELLO.|
------------------------------------------------------------
#1 client -> server
Ethernet Frame:
	Destination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.7, Target: 192.0.2.1
		Total Length: 40, Identification: 4, Flags: DF, Checksum: 0xb6c3
	TCP Segment:
		Source Port: 51234, Destination Port: 9090
		Sequence: 1007 (relative 7), Acknowledgment: 5007 (relative 7)
		Flags: ACK, Header Length: 20, Window: 65535, Checksum: 0x28a9
------------------------------------------------------------
#1 client -> server
Ethernet Frame:
	Destination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.7, Target: 192.0.2.1
		Total Length: 40, Identification: 5, Flags: DF, Checksum: 0xb6c2
	TCP Segment:
		Source Port: 51234, Destination Port: 9090
		Sequence: 1007 (relative 7), Acknowledgment: 5007 (relative 7)
		Flags: FIN ACK, Header Length: 20, Window: 65535, Checksum: 0x28a8
------------------------------------------------------------
#1 server -> client
Ethernet Frame:
	Destination: 02:00:00:00:00:01, Source: 02:00:00:00:00:02, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.1, Target: 192.0.2.7
		Total Length: 40, Identification: 4, Flags: DF, Checksum: 0xb6c3
	TCP Segment:
		Source Port: 9090, Destination Port: 51234
		Sequence: 5007 (relative 7), Acknowledgment: 1008 (relative 8)
		Flags: ACK, Header Length: 20, Window: 65535, Checksum: 0x28a8
------------------------------------------------------------
#1 server -> client
Ethernet Frame:
	Destination: 02:00:00:00:00:01, Source: 02:00:00:00:00:02, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.1, Target: 192.0.2.7
		Total Length: 40, Identification: 5, Flags: DF, Checksum: 0xb6c2
	TCP Segment:
		Source Port: 9090, Destination Port: 51234
		Sequence: 5007 (relative 7), Acknowledgment: 1008 (relative 8)
		Flags: FIN ACK, Header Length: 20, Window: 65535, Checksum: 0x28a7
------------------------------------------------------------
#1 client -> server
Ethernet Frame:
	Destination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)
	IPv4 Packet:
		Version: 4, Header Length: 20, TTL: 64
		Protocol: 6 (TCP), Source: 192.0.2.7, Target: 192.0.2.1
		Total Length: 40, Identification: 6, Flags: DF, Checksum: 0xb6c1
	TCP Segment:
		Source Port: 51234, Destination Port: 9090
		Sequence: 1008 (relative 8), Acknowledgment: 5008 (relative 8)
		Flags: ACK, Header Length: 20, Window: 65535, Checksum: 0x28a7
`
