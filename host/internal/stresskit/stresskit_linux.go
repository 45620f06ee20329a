//go:build linux

package stresskit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TinyBuf is the SO_SNDBUF and SO_RCVBUF asked for every socket of the
// stress tests (the kernel doubles it, and raises it to its minimum).
const TinyBuf = 4096

// StallAfter is how long no byte moving at either end of a connection
// makes it a suspect of a stall.
const StallAfter = 3 * time.Second

// HoldMax bounds End.HoldRead.
const HoldMax = 50 * time.Millisecond

// ErrSlow is a stress connection whose ends' deadline passed while bytes
// kept moving: TCP's persist timer on tiny windows, not a stall.
var ErrSlow = errors.New("slow, not stalled: the deadline passed while bytes kept moving")

// SetTinyBuffers shrinks fd's send buffer, and its receive buffer if rcv;
// set on a listener before listen, they are inherited by its accepted
// sockets.
func SetTinyBuffers(fd int, rcv bool) {
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, TinyBuf)
	if rcv {
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, TinyBuf)
	}
}

// TinyControl shrinks a net.Dialer's or net.ListenConfig's socket buffers
// before connect or listen.
func TinyControl(_, _ string, rc syscall.RawConn) error {
	if err := rc.Control(func(fd uintptr) { SetTinyBuffers(int(fd), true) }); err != nil {
		return fmt.Errorf("tiny buffers: %w", err)
	}
	return nil
}

// End is how one end of a stress connection reads and writes.
type End struct {
	Send      int  // bytes to send before the half-close
	Burst     int  // largest write (and read, though reads go up to 16 KiB at least)
	StallRead bool // reads stall for a while now and then
	// HoldRead: reads start only once hold is closed (the other end has
	// written everything and half-closed: the queue toward this end is
	// full when that FIN arrives), or after HoldMax.
	HoldRead bool
}

// Counts is what one end of a stress connection moved and saw.
type Counts struct {
	Read, Written atomic.Int64
	Sum           [32]byte // of what it read
	Err           error
}

// Stream is the n bytes an end with seed sends.
func Stream(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24), 0xee}).Read(b)
	return b
}

// Run writes e.Send bytes of seed's Stream in bursts and half-closes (then
// closes wrote), while it reads to EOF, the reads held until hold is
// closed if e.HoldRead. It returns once both are over, with n filled in.
func Run(c *net.TCPConn, e End, seed uint64, n *Counts, wrote chan<- struct{}, hold <-chan struct{}) {
	werr := make(chan error, 1)
	go func() {
		src := Stream(seed, e.Send)
		rng := rand.New(rand.NewPCG(seed, 9))
		for off := 0; off < len(src); {
			k, err := c.Write(src[off:min(off+1+rng.IntN(e.Burst), len(src))])
			n.Written.Add(int64(k))
			off += k
			if err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
		}
		if err := c.CloseWrite(); err != nil {
			werr <- fmt.Errorf("half-close: %w", err)
			return
		}
		close(wrote)
		werr <- nil
	}()
	if e.HoldRead {
		// Bounded: what the other end sends past the buffers between the
		// two waits for these reads.
		select {
		case <-hold:
		case <-time.After(HoldMax):
		}
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	h := sha256.New()
	rburst := max(e.Burst, 16<<10) // reads of a few bytes each would take longer than the deadline under -race
	buf := make([]byte, rburst)
	var rerr error
	for {
		k, err := c.Read(buf[:1+rng.IntN(rburst)])
		n.Read.Add(int64(k))
		h.Write(buf[:k])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			rerr = fmt.Errorf("read: %w", err)
			break
		}
		if e.StallRead && rng.IntN(64) == 0 {
			// A peer busy elsewhere: the tunnel meets a full socket.
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
	}
	n.Sum = [32]byte(h.Sum(nil))
	n.Err = errors.Join(rerr, <-werr)
}

// Exchange runs the two ends of one stress connection, c (the client, ce,
// seeds[0]) and s (the server, se, seeds[1]), both given deadline, and
// returns what each moved and saw. A watchdog tells a stall from a slow
// machine: no byte moved at either end for StallAfter (TCP's own waits, a
// retransmission or a zero-window probe, are much shorter). It looks
// twice, StallAfter apart, through view (final: the second look, which
// may add every goroutine's stack); if bytes moved in between it calls
// slow with the first look and goes on, else it ends both ends at once
// and stalled describes both looks.
func Exchange(c, s *net.TCPConn, ce, se End, seeds [2]uint64, deadline time.Duration, view func(final bool) string, slow func(first string)) (cn, sn *Counts, stalled string) {
	at := time.Now().Add(deadline)
	c.SetDeadline(at)
	s.SetDeadline(at)
	cn, sn = &Counts{}, &Counts{}
	cWrote, sWrote := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); Run(c, ce, seeds[0], cn, cWrote, sWrote) }()
	go func() { defer wg.Done(); Run(s, se, seeds[1], sn, sWrote, cWrote) }()
	ended := make(chan struct{})
	go func() { wg.Wait(); close(ended) }()
	progress := func() int64 { return cn.Read.Load() + cn.Written.Load() + sn.Read.Load() + sn.Written.Load() }
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last, lastMove := progress(), time.Now()
	for {
		select {
		case <-ended:
			return cn, sn, ""
		case <-tick.C:
		}
		if p := progress(); p != last {
			last, lastMove = p, time.Now()
			continue
		}
		if time.Since(lastMove) < StallAfter {
			continue
		}
		first := view(false)
		time.Sleep(StallAfter)
		if progress() != last {
			slow(first)
			last, lastMove = progress(), time.Now()
			continue
		}
		stalled = fmt.Sprintf("no byte moved for %v:\n%s\n%v later, still none:\n%s", StallAfter, first, StallAfter, view(true))
		c.SetDeadline(time.Now())
		s.SetDeadline(time.Now())
		<-ended
		return cn, sn, stalled
	}
}

// Arrived describes what of the two ends' streams did not arrive whole
// (count and sha256), or returns nil when both did.
func Arrived(cn, sn *Counts, ce, se End, seeds [2]uint64) []string {
	var problems []string
	if up := sha256.Sum256(Stream(seeds[0], ce.Send)); sn.Read.Load() != int64(ce.Send) || sn.Sum != up {
		problems = append(problems, fmt.Sprintf("client -> server: %d of %d bytes arrived (hash match %v)", sn.Read.Load(), ce.Send, sn.Sum == up))
	}
	if down := sha256.Sum256(Stream(seeds[1], se.Send)); cn.Read.Load() != int64(se.Send) || cn.Sum != down {
		problems = append(problems, fmt.Sprintf("server -> client: %d of %d bytes arrived (hash match %v)", cn.Read.Load(), se.Send, cn.Sum == down))
	}
	return problems
}

// RandomEnd draws an End: a size from sizes plus up to 4 KiB, tiny to
// large write bursts (tiny bursts make tiny segments, whose overhead fills
// tiny receive buffers long before their bytes do), reads that stall half
// the time and are held a third of the time.
func RandomEnd(rng *rand.Rand, sizes []int) End {
	bursts := []int{64, 1500, 16 << 10, 96 << 10}
	e := End{Send: sizes[rng.IntN(len(sizes))] + rng.IntN(4096), Burst: 1 + rng.IntN(bursts[rng.IntN(len(bursts))]),
		StallRead: rng.IntN(2) == 0, HoldRead: rng.IntN(3) == 0}
	if e.Send > 16<<10 {
		// Else the ends' own calls, and TCP's losses in tiny buffers, take
		// longer than the deadline under -race.
		e.Burst = max(e.Burst, 4096)
	}
	return e
}

// Repeat runs connection after connection (conn(i), which describes it)
// until budget has passed: an error fails the test, one that wraps ErrSlow
// is logged and counted; at the end it logs how many ran.
func Repeat(t testing.TB, budget time.Duration, conn func(i int) (what string, err error)) {
	t.Helper()
	start := time.Now()
	n, slow := 0, 0
	for ; time.Since(start) < budget; n++ {
		what, err := conn(n)
		if errors.Is(err, ErrSlow) {
			t.Logf("connection %d (%s): %v", n, what, err)
			slow++
		} else if err != nil {
			t.Fatalf("connection %d (%s): %v", n, what, err)
		}
	}
	t.Logf("%d connections in %v (%d slow)", n, time.Since(start).Round(time.Millisecond), slow)
}

// AtOnce runs f as a subtest per item, named by name, all at the same
// time and for the same budget: a stress connection mostly waits on its
// tiny buffers and stalled reads, so the modes need not take turns for
// -test.parallel's slots (seven modes two at a time took four budgets of
// wall time, at once they take one), and running together they interleave
// on the loop more than they would apart.
func AtOnce[T any](t *testing.T, items []T, name func(T) string, f func(*testing.T, T)) {
	t.Helper()
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(name(it), func(t *testing.T) { f(t, it) })
		}()
	}
	wg.Wait()
}

// Budget is how long a stress test runs per mode or path (each mode at
// the same time, AtOnce): the whole seconds in the environment variable
// env, else 3 s, or 1 s with -short.
func Budget(env string) time.Duration {
	if testing.Short() {
		return time.Second
	}
	if n, err := strconv.Atoi(os.Getenv(env)); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	return 3 * time.Second
}
