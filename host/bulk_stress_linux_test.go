//go:build linux

package host_test

// TestStressBulkTinyBuffers is TestBulkBothWays made to meet backpressure
// at every turn: the client's and the server's sockets have tiny buffers,
// both ends send at once, read in bursts that stall, and now and then hold
// their reads until the other end has half-closed (so that its FIN reaches
// the tunnel while the tunnel holds bytes toward this end). Connection
// after connection on the inline paths (the route's own event loop running
// the chain on both directions, or on one) and on the plain loop for
// comparison. The tunnel's own sockets, found among the process's
// descriptors, get tiny send buffers too (and its listener tiny receive
// buffers, which its connections inherit). Each connection has a deadline, and one that does not end by
// it fails the test with the byte counts of both ends and the goroutines'
// stacks instead of hanging the run.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host/internal/stresskit"
)

func TestStressBulkTinyBuffers(t *testing.T) {
	t.Parallel()
	budget := stresskit.Budget("TUNNEL_STRESS_SECONDS") // per path
	for _, p := range forwardPaths {
		switch p.name {
		case "loop", "inline", "inline-one-way":
		default:
			continue
		}
		t.Run(p.name, func(t *testing.T) {
			t.Parallel()
			lc := net.ListenConfig{Control: stresskit.TinyControl}
			ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			accepted := make(chan *net.TCPConn, 1)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					accepted <- c.(*net.TCPConn)
				}
			}()
			addr, _ := tunnel(t, p.route(ln.Addr().String()))
			tunnelAddr := netip.MustParseAddrPort(addr)
			if n := shrinkSockets(func(local, peer netip.AddrPort) bool {
				return local == tunnelAddr && !peer.IsValid() // the route's listener
			}, true); n == 0 {
				t.Fatal("the route's listening socket is not among the process's descriptors")
			}
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
			sizes := []int{0, 1, 64 << 10, 64<<10 + 1, 300 << 10, 2 << 20}
			stresskit.Repeat(t, budget, func(int) (string, error) {
				ce, se := stresskit.RandomEnd(rng, sizes), stresskit.RandomEnd(rng, sizes)
				return fmt.Sprintf("client %+v, server %+v", ce, se), stressConn(tunnelAddr, accepted, ce, se, rng.Uint64(), 15*time.Second)
			})
		})
	}
}

// stressConn runs one connection through the tunnel at addr to the server
// whose connections come on accepted, within deadline.
func stressConn(addr netip.AddrPort, accepted <-chan *net.TCPConn, ce, se stresskit.End, seed uint64, deadline time.Duration) error {
	d := net.Dialer{Control: stresskit.TinyControl, Timeout: deadline}
	cc, err := d.Dial("tcp", addr.String())
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c := cc.(*net.TCPConn)
	defer c.Close()
	var s *net.TCPConn
	select {
	case s = <-accepted:
	case <-time.After(deadline):
		return errors.New("the tunnel never dialled the server")
	}
	defer s.Close()
	// The tunnel's socket toward the server (SO_RCVBUF is left alone: shrunk
	// under a window already advertised, it would drop segments).
	toServer := netip.MustParseAddrPort(s.RemoteAddr().String())
	shrinkSockets(func(local, _ netip.AddrPort) bool { return local == toServer }, false)
	fromClient := netip.MustParseAddrPort(c.LocalAddr().String())
	view := func(final bool) string {
		v := "  client end: " + connView(c) + "\n  server end: " + connView(s) + "\n" +
			tunnelView(func(local, peer netip.AddrPort) bool { return local == addr && peer == fromClient }, "  tunnel to client: ") +
			tunnelView(func(local, _ netip.AddrPort) bool { return local == toServer }, "  tunnel to server: ")
		if final {
			v += allStacks()
		}
		return v
	}
	seeds := [2]uint64{seed, seed + 1}
	cn, sn, stalled := stresskit.Exchange(c, s, ce, se, seeds, deadline, view, func(string) {})
	if stalled != "" {
		return fmt.Errorf("stalled; client wrote %d read %d; server wrote %d read %d\n%s",
			cn.Written.Load(), cn.Read.Load(), sn.Written.Load(), sn.Read.Load(), stalled)
	}
	if errors.Is(cn.Err, os.ErrDeadlineExceeded) || errors.Is(sn.Err, os.ErrDeadlineExceeded) {
		// The ends' deadline passed while bytes kept moving (the watchdog
		// saw no stall): a machine too loaded for the tiny buffers' TCP
		// (whose losses wait out retransmission timeouts), not a hang.
		return fmt.Errorf("client wrote %d read %d; server wrote %d read %d: %w",
			cn.Written.Load(), cn.Read.Load(), sn.Written.Load(), sn.Read.Load(), stresskit.ErrSlow)
	}
	if problems := stresskit.Arrived(cn, sn, ce, se, seeds); cn.Err != nil || sn.Err != nil || problems != nil {
		return fmt.Errorf("%s\nclient err %v; server err %v\n%s", strings.Join(problems, "\n"), cn.Err, sn.Err, allStacks())
	}
	return nil
}

// shrinkSockets gives tiny send buffers (and receive buffers too if rcv) to
// the process's TCP sockets whose addresses match, and returns how many it
// found. (Another test's descriptor closed and reused meanwhile at worst
// gets small buffers.)
func shrinkSockets(match func(local, peer netip.AddrPort) bool, rcv bool) int {
	n := 0
	eachSocket(func(fd int, local, peer netip.AddrPort) {
		if !match(local, peer) {
			return
		}
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
		if rcv {
			unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096)
		}
		n++
	})
	return n
}

// eachSocket calls f with every TCP socket of the process and its
// addresses (peer is the zero AddrPort for a listener).
func eachSocket(f func(fd int, local, peer netip.AddrPort)) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
			continue
		}
		var local, peer netip.AddrPort
		if sa, err := unix.Getsockname(fd); err == nil {
			local = sockAddrPort(sa)
		}
		if sa, err := unix.Getpeername(fd); err == nil {
			peer = sockAddrPort(sa)
		}
		if local.IsValid() {
			f(fd, local, peer)
		}
	}
}

// sockAddrPort is an IPv4 or IPv6 socket address as a netip.AddrPort.
func sockAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// connView is the kernel's view of c's socket.
func connView(c *net.TCPConn) string {
	rc, err := c.SyscallConn()
	if err != nil {
		return err.Error()
	}
	var v string
	rc.Control(func(fd uintptr) { v = socketView(int(fd)) })
	return v
}

// tunnelView is the kernel's view of the process's sockets that match,
// one line each after prefix.
func tunnelView(match func(local, peer netip.AddrPort) bool, prefix string) string {
	var b strings.Builder
	eachSocket(func(fd int, local, peer netip.AddrPort) {
		if match(local, peer) {
			fmt.Fprintf(&b, "%sfd %d %v->%v %s\n", prefix, fd, local, peer, socketView(fd))
		}
	})
	return b.String()
}

// socketView is what the kernel holds for socket fd: unread and unsent
// bytes, its readiness (level-triggered) and TCP's state.
func socketView(fd int) string {
	inq, _ := unix.IoctlGetInt(fd, unix.SIOCINQ)
	outq, _ := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT | unix.POLLRDHUP}}
	unix.Poll(pfd, 0)
	v := fmt.Sprintf("inq %d outq %d revents %#x", inq, outq, pfd[0].Revents)
	if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
		v += fmt.Sprintf(" state %d probes %d backoff %d rto %dus unacked %d retrans %d total_retrans %d snd_wnd %d rcv_wnd %d rcv_space %d rwnd_limited %dus sndbuf_limited %dus",
			ti.State, ti.Probes, ti.Backoff, ti.Rto, ti.Unacked, ti.Retrans, ti.Total_retrans, ti.Snd_wnd, ti.Rcv_wnd, ti.Rcv_space, ti.Rwnd_limited, ti.Sndbuf_limited)
	}
	return v
}

// allStacks returns every goroutine's stack.
func allStacks() string {
	b := make([]byte, 1<<20)
	return string(b[:runtime.Stack(b, true)])
}
