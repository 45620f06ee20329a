package host

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSocketStateIgnoresSoftErrors: an ICMP "host unreachable" for a
// healthy connection leaves Linux's SO_ERROR set (a soft error TCP retries
// past) without failing the socket. socketState, which decides whether a
// deferred half-close's source has failed, must not take that for a
// failure: it reads SO_ERROR only on POLLERR, as the Parker's watch does.
// The ICMP message needs a raw socket, and its sequence number the socket's
// repair mode: root (CI runs as root).
func TestSocketStateIgnoresSoftErrors(t *testing.T) {
	raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		needPrivilege(t, "a raw ICMP socket (CAP_NET_RAW)", err)
	}
	defer unix.Close(raw)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	server := sc.(*net.TCPConn)
	// The source of a deferred half-close: its peer has half-closed.
	if err := client.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if _, err := server.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(client, buf); err != nil {
		t.Fatal(err)
	}
	sport := uint16(server.LocalAddr().(*net.TCPAddr).Port)
	cport := uint16(client.LocalAddr().(*net.TCPAddr).Port)
	rc, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	// An ICMP error is taken only for a sequence number in the send
	// window: the server's next one is.
	next := nextSendSeq(t, rc)

	// ICMP destination unreachable (host) quoting a segment of the server
	// toward the client at its next sequence number.
	inner := make([]byte, 28)
	inner[0], inner[8], inner[9] = 0x45, 64, unix.IPPROTO_TCP
	binary.BigEndian.PutUint16(inner[2:], 40)
	copy(inner[12:], net.IPv4(127, 0, 0, 1).To4())
	copy(inner[16:], net.IPv4(127, 0, 0, 1).To4())
	binary.BigEndian.PutUint16(inner[10:], checksum(inner[:20]))
	binary.BigEndian.PutUint16(inner[20:], sport)
	binary.BigEndian.PutUint16(inner[22:], cport)
	binary.BigEndian.PutUint32(inner[24:], next)
	icmp := append([]byte{3, 1, 0, 0, 0, 0, 0, 0}, inner...)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	// On loopback the message is handled within the sender's system call,
	// unless the kernel defers it to a thread of its own under load: then
	// SO_ERROR (read after socketState, as reading clears it) is still 0,
	// and the message goes again.
	for attempt := 1; ; attempt++ {
		if err := unix.Sendto(raw, icmp, 0, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			t.Fatal(err)
		}
		hup, serr := socketState(rc)
		soErr := 0
		rc.Control(func(fd uintptr) {
			soErr, _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_ERROR)
		})
		if hup || serr != nil {
			t.Fatalf("socketState of a healthy socket with a soft error: hup %v, err %v; want neither", hup, serr)
		}
		if soErr == int(syscall.EHOSTUNREACH) {
			break
		}
		if soErr != 0 || attempt == 50 {
			t.Fatalf("SO_ERROR after the ICMP message (attempt %d): %d, want EHOSTUNREACH (%d)", attempt, soErr, syscall.EHOSTUNREACH)
		}
		time.Sleep(10 * time.Millisecond) // the kernel's deferred work: no event to wait on
	}
	// And the socket is healthy.
	if _, err := server.Write([]byte("still")); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Read(buf); err != nil || string(buf) != "still" {
		t.Fatalf("after the ICMP message the client read %q, %v", buf, err)
	}

	// A real failure: the peer resets. socketState reports its error
	// (EPIPE: Linux's for a reset after the peer's FIN, in CLOSE_WAIT).
	client.(*net.TCPConn).SetLinger(0)
	client.Close()
	// Wait for the reset to reach the socket (POLLERR or POLLHUP, which
	// poll(2) always reports), up to 5 s.
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd)}}
		for {
			if _, err := unix.Poll(fds, 5000); err != unix.EINTR {
				return
			}
		}
	})
	hup, serr := socketState(rc)
	if !errors.Is(serr, syscall.EPIPE) && !errors.Is(serr, syscall.ECONNRESET) {
		t.Fatalf("socketState after the peer's reset: hup %v, err %v; want EPIPE or ECONNRESET", hup, serr)
	}
}

// nextSendSeq returns the sequence number of the next byte rc's socket
// sends, read in repair mode (TCP_REPAIR, CAP_NET_ADMIN), which is left at
// once.
func nextSendSeq(t *testing.T, rc syscall.RawConn) uint32 {
	t.Helper()
	const tcpSendQueue = 2 // TCP_SEND_QUEUE of linux/tcp.h
	var seq int
	var err error
	rc.Control(func(fd uintptr) {
		if err = unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
			return
		}
		defer unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF)
		if err = unix.SetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue); err != nil {
			return
		}
		seq, err = unix.GetsockoptInt(int(fd), unix.SOL_TCP, unix.TCP_QUEUE_SEQ)
	})
	if err != nil {
		needPrivilege(t, "TCP_REPAIR (CAP_NET_ADMIN)", err)
	}
	return uint32(seq)
}

// needPrivilege ends the test when err is for want of a privilege: skipped
// on a developer's machine, failed under CI, which runs as root.
func needPrivilege(t *testing.T, what string, err error) {
	t.Helper()
	if errors.Is(err, unix.EPERM) && os.Getenv("CI") != "true" {
		t.Skipf("needs %s: %v", what, err)
	}
	t.Fatalf("%s: %v", what, err)
}

// checksum is the Internet checksum of b.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
