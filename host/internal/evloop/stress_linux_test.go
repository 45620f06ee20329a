//go:build linux

package evloop

// Stress tests of the orders in which a direction's last bytes and its FIN
// meet backpressure: both directions in bulk at once through sockets with
// tiny buffers (so that nearly every write of the loop comes back short or
// EAGAIN), peers that read in bursts and stall, half-closes made while the
// loop's queue or pipe toward the other peer is full, on the plain path
// (splice and read/write) and on the chain path (both directions filtered,
// one, the other), with the same ends talking directly as the baseline of
// TCP's own speed. A connection that loses an edge, or a FIN that waits
// for an event that never comes, stops moving bytes: a watchdog fails it
// with the loop's view of the connection, the kernel's (bytes queued,
// readiness, retransmissions) and the goroutines' stacks, instead of
// hanging the run. One whose ends' deadline passes while bytes still move
// (TCP waiting out retransmission timeouts, its losses in tiny buffers, on
// a loaded machine) is logged as slow, not failed.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnelwasm/tunnel/host/internal/stresskit"
)

// stressMode is one way the loop forwards the stress tests' connections.
type stressMode struct {
	name      string
	direct    bool    // no tunnel: the client dials the server (the baseline of TCP's own speed)
	readWrite bool    // plain directions with read/write instead of splice
	chain     bool    // a Chain (identity) on the directions filtered names
	filtered  [2]bool // Plan.Filtered
}

func stressModeName(m stressMode) string { return m.name }

var stressModes = []stressMode{
	{name: "direct", direct: true},
	{name: "plain-splice"},
	{name: "plain-readwrite", readWrite: true},
	{name: "chain-both", chain: true, filtered: [2]bool{true, true}},
	{name: "chain-up", chain: true, filtered: [2]bool{true, false}},
	{name: "chain-down", chain: true, filtered: [2]bool{false, true}},
	{name: "chain-up-readwrite", readWrite: true, chain: true, filtered: [2]bool{true, false}},
}

// stressAcceptor plans each connection by its mode and keeps the last
// connection's Done.
type stressAcceptor struct {
	mode   stressMode
	target netip.AddrPort
	done   chan Stats
}

func (a *stressAcceptor) Admit() bool { return true }

func (a *stressAcceptor) Accepted(fd int, _ netip.AddrPort) *Plan {
	p := &Plan{Target: a.target, DialTimeout: testWait, Done: func(s Stats) { a.done <- s }}
	if a.mode.chain {
		p.Chain = &stressChain{}
		p.Filtered = a.mode.filtered
	}
	return p
}

// stressChain is the identity Chain; once connected it shrinks the
// buffers of the loop's socket toward the server, which the loop made
// itself (SO_RCVBUF is left alone: shrunk under a window already
// advertised, it would drop segments and wait on retransmits).
type stressChain struct{}

func (*stressChain) Open(*Output) error { return nil }
func (*stressChain) Connected(o *Output) error {
	stresskit.SetTinyBuffers(o.c.ep[server].fd, false)
	return nil
}
func (*stressChain) Data(from int, b []byte, o *Output) error { o.Write(1-from, b); return nil }
func (*stressChain) End(from int, o *Output) error            { o.CloseWrite(1 - from); return nil }
func (*stressChain) Timer(*Output) error                      { return nil }

// startStress starts a loop forwarding a listener with tiny buffers to
// target by mode.
func startStress(t *testing.T, mode stressMode, target netip.AddrPort) (*Loop, *stressAcceptor, string) {
	t.Helper()
	if mode.direct {
		return nil, nil, target.String()
	}
	l, err := newLoop(nil, !mode.readWrite)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	stresskit.SetTinyBuffers(fd, true)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	if err := unix.Listen(fd, listenBacklog); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	a := &stressAcceptor{mode: mode, target: target, done: make(chan Stats, 1)}
	if _, err := l.AddListener(fd, a); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	return l, a, sockaddrToAddrPort(sa).String()
}

// stressIteration runs one connection through l (listening on addr; l and
// a are nil for a direct connection) with the two ends as given, within
// deadline; it returns an error that describes what stalled or went wrong,
// with the loop's and the kernel's view, or one that wraps stresskit.ErrSlow.
func stressIteration(t *testing.T, l *Loop, a *stressAcceptor, addr string, srvConns <-chan *net.TCPConn, cp, sp stresskit.End, seeds [2]uint64, deadline time.Duration) error {
	d := net.Dialer{Control: stresskit.TinyControl, Timeout: deadline}
	cc, err := d.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	c := cc.(*net.TCPConn)
	defer c.Close()
	var s *net.TCPConn
	select {
	case s = <-srvConns:
	case <-time.After(deadline):
		return errors.New("the server accepted no connection")
	}
	defer s.Close()
	ends := func() string {
		return "  client end: " + connKernelView(c) + "\n  server end: " + connKernelView(s) + "\n"
	}
	view := func(final bool) string {
		if final {
			return ends() + stressDump(l, true)
		}
		return stressDump(l, false) + ends()
	}
	slow := func(first string) {
		t.Logf("no progress for %v, then progress again (a slow machine, not a stall):\n%s", stresskit.StallAfter, first)
	}
	cr, sr, stalled := stresskit.Exchange(c, s, cp, sp, seeds, deadline, view, slow)
	if stalled != "" {
		return fmt.Errorf("stalled; client wrote %d read %d; server wrote %d read %d\n%s",
			cr.Written.Load(), cr.Read.Load(), sr.Written.Load(), sr.Read.Load(), stalled)
	}
	if timedOut(cr.Err) || timedOut(sr.Err) {
		// The ends' deadline passed while bytes kept moving (the watchdog
		// saw no stall): a machine too loaded for the tiny buffers' TCP
		// (whose losses wait out retransmission timeouts), not a hang. The
		// connection ends with the reset of the ends' close; its Done is
		// taken here so that it is not the next iteration's. What the
		// sockets went through (their retransmissions) goes with it.
		view := ends()
		if l != nil {
			view += stressDump(l, false)
		}
		c.Close()
		s.Close()
		if a != nil {
			select {
			case <-a.done:
			case <-time.After(testWait):
				return fmt.Errorf("the ends closed after their deadline but Done never came\n%s", stressDump(l, true))
			}
		}
		return fmt.Errorf("client wrote %d read %d; server wrote %d read %d: %w\n%s",
			cr.Written.Load(), cr.Read.Load(), sr.Written.Load(), sr.Read.Load(), stresskit.ErrSlow, view)
	}
	problems := stresskit.Arrived(cr, sr, cp, sp, seeds)
	if cr.Err != nil || sr.Err != nil {
		problems = append(problems, fmt.Sprintf("client: %v; server: %v", cr.Err, sr.Err))
	}
	if len(problems) > 0 {
		// The ends have given up (their deadline): the connection is still
		// as it hung, unless the loop saw the failure of an end already.
		return fmt.Errorf("%s\nclient wrote %d read %d; server wrote %d read %d\n%s",
			strings.Join(problems, "\n"), cr.Written.Load(), cr.Read.Load(), sr.Written.Load(), sr.Read.Load(), stressDump(l, true))
	}
	if a == nil {
		return nil // direct
	}
	select {
	case st := <-a.done:
		if st.Reason != Ended || st.Err != nil || st.Read != [2]int64{int64(cp.Send), int64(sp.Send)} || st.Written != st.Read {
			return fmt.Errorf("Done: %+v", st)
		}
	case <-time.After(testWait):
		return fmt.Errorf("both ends saw everything but Done never came\n%s", stressDump(l, true))
	}
	return nil
}

// timedOut reports whether err is a deadline's.
func timedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// deadLoop is a stopped loop: stressDump of a direct connection posts to
// it in vain.
var deadLoop = &Loop{stopped: true}

// stressDump describes the loop's connections (its flags, queues and the
// kernel's view of each socket) and, if stacks, every goroutine's stack.
// It does not wait for a loop that does not answer.
func stressDump(l *Loop, stacks bool) string {
	var b strings.Builder
	if l == nil {
		l = deadLoop // direct: no loop to describe
	}
	got := make(chan string, 1)
	posted := l.post(func() {
		var s strings.Builder
		fmt.Fprintf(&s, "loop: turns %d, runq %d, timers %d, conns %d\n", l.turns, len(l.runq), len(l.timers), len(l.conns))
		for _, c := range l.conns {
			fmt.Fprintf(&s, "conn: state %d closing %v lingering %v shut %v srcEOF %v feeding %d werr %v stats %+v\n",
				c.state, c.closing, c.lingering, c.shut, c.srcEOF, c.feeding, c.werr, c.stats)
			for sd := client; sd <= server; sd++ {
				e, h, q := &c.ep[sd], &c.half[sd], &c.q[sd]
				fmt.Fprintf(&s, "  %s fd %d: readable %v writable %v peerFIN %v cleanFIN %v finNext %v urgent %v; %s\n",
					sd, e.fd, e.readable, e.writable, e.peerFIN, e.cleanFIN, e.finNext, e.urgent, kernelView(e.fd))
				fmt.Fprintf(&s, "    half from %s: pending %d eof %v done %v bulk %v pipe %v\n", sd, h.pending, h.eof, h.done, h.bulk, h.hasPipe)
				fmt.Fprintf(&s, "    queue to %s: %d bufs, %d queued, off %d, feeders %b, shutWant %v\n", sd, len(q.bufs), q.queued, q.off, q.feeders, q.shutWant)
			}
		}
		got <- s.String()
	})
	select {
	case s := <-got:
		b.WriteString(s)
	case <-time.After(2 * time.Second):
		fmt.Fprintf(&b, "the loop did not answer within 2s (posted %v)\n", posted)
	}
	if stacks {
		buf := make([]byte, 1<<20)
		b.WriteString("goroutines:\n")
		b.Write(buf[:runtime.Stack(buf, true)])
	}
	return b.String()
}

// connKernelView is kernelView of c's socket.
func connKernelView(c *net.TCPConn) string {
	rc, err := c.SyscallConn()
	if err != nil {
		return err.Error()
	}
	var v string
	rc.Control(func(fd uintptr) { v = kernelView(int(fd)) })
	return v
}

// kernelView is what the kernel holds for socket fd: unread bytes, unsent
// bytes and its readiness now (level-triggered).
func kernelView(fd int) string {
	if fd < 0 {
		return "closed"
	}
	inq, _ := unix.IoctlGetInt(fd, unix.SIOCINQ)
	outq, _ := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLOUT | unix.POLLRDHUP}}
	unix.Poll(pfd, 0)
	v := fmt.Sprintf("kernel: inq %d outq %d revents %#x", inq, outq, pfd[0].Revents)
	if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
		v += fmt.Sprintf(" state %d probes %d backoff %d rto %dus unacked %d total_retrans %d snd_wnd %d rcv_wnd %d",
			ti.State, ti.Probes, ti.Backoff, ti.Rto, ti.Unacked, ti.Total_retrans, ti.Snd_wnd, ti.Rcv_wnd)
	}
	return v
}

// serveConns accepts on a listener with tiny buffers and hands each
// connection over; cleanup closes it.
func serveConns(t *testing.T) (netip.AddrPort, <-chan *net.TCPConn) {
	t.Helper()
	lc := net.ListenConfig{Control: stresskit.TinyControl}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	conns := make(chan *net.TCPConn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns <- c.(*net.TCPConn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for {
			select {
			case c := <-conns:
				c.Close()
			default:
				return
			}
		}
	})
	return netip.MustParseAddrPort(ln.Addr().String()), conns
}

// TestStressHalfCloseUnderBackpressure runs, per mode and for a few
// seconds, connection after connection whose ends both send in bulk at
// once through tiny socket buffers, read in bursts that stall, and
// half-close while the other end holds its reads back (the loop's queue
// toward it full when the FIN comes): every byte and both FINs must
// arrive, and the connection end cleanly. The modes run at the same time;
// EVLOOP_STRESS_SECONDS sets how long.
func TestStressHalfCloseUnderBackpressure(t *testing.T) {
	t.Parallel()
	budget := stresskit.Budget("EVLOOP_STRESS_SECONDS") // per mode
	stresskit.AtOnce(t, stressModes, stressModeName, func(t *testing.T, mode stressMode) {
		target, srvConns := serveConns(t)
		l, a, addr := startStress(t, mode, target)
		rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
		sizes := []int{0, 1, 4095, 64 << 10, 64<<10 + 1, 200 << 10, 1 << 20, 2 << 20}
		stresskit.Repeat(t, budget, func(int) (string, error) {
			cp, sp := stresskit.RandomEnd(rng, sizes), stresskit.RandomEnd(rng, sizes)
			if cp.HoldRead && sp.HoldRead {
				sp.HoldRead = false // each would wait for the other's FIN
			}
			seeds := [2]uint64{rng.Uint64(), rng.Uint64()}
			return fmt.Sprintf("client %+v, server %+v", cp, sp), stressIteration(t, l, a, addr, srvConns, cp, sp, seeds, 15*time.Second)
		})
	})
}

// TestStressFINBehindFullQueue is the narrowest of the interleavings: the
// server does not read until the client has written everything and
// half-closed, so the client's FIN always arrives while the loop holds
// bytes toward the server (its queue or pipe, the server's full socket);
// meanwhile the server sends in bulk too, so both directions are held at
// once. Sizes sweep around the buffers' sizes.
func TestStressFINBehindFullQueue(t *testing.T) {
	t.Parallel()
	budget := stresskit.Budget("EVLOOP_STRESS_SECONDS") // per mode
	stresskit.AtOnce(t, stressModes, stressModeName, func(t *testing.T, mode stressMode) {
		target, srvConns := serveConns(t)
		l, a, addr := startStress(t, mode, target)
		stresskit.Repeat(t, budget, func(i int) (string, error) {
			up := 16<<10 + (i%64)*4099
			down := []int{0, 100 << 10, 1 << 20}[i%3]
			cp := stresskit.End{Send: up, Burst: 64 << 10}
			sp := stresskit.End{Send: down, Burst: 1 + (i*7919)%(64<<10), HoldRead: true, StallRead: i%2 == 0}
			return fmt.Sprintf("client %+v, server %+v", cp, sp), stressIteration(t, l, a, addr, srvConns, cp, sp, [2]uint64{uint64(i), uint64(i) + 1<<32}, 15*time.Second)
		})
	})
}
