package capture_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/testkit"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// upper uppercases what the client sends, so that the two legs differ.
var upper = host.Link{Name: "upper", Hook: host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
	if dir == host.ClientToServer {
		return asciiUpper(b), nil
	}
	return b, nil
})}

// asciiUpper uppercases a to z only, byte for byte (bytes.ToUpper rewrites
// invalid UTF-8, which random bytes are).
func asciiUpper(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// setup is a proxy with one route "r" on listen toward target, its chain
// between the capture links of a Writer to file.
type setup struct {
	p    *host.Proxy
	addr string
	logs *testnet.Logs
	w    *capture.Writer
	file string
}

func start(t *testing.T, listen, target string, opts capture.Options, chain ...host.Link) *setup {
	t.Helper()
	if opts.Path == "" {
		opts.Path = filepath.Join(t.TempDir(), "c.pcapng")
	}
	w, err := capture.Create(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	first, last := capture.Links(w)
	p, logs := testnet.Proxy(t, host.Route{Name: "r", Listen: listen, Target: target, Chain: append(append([]host.Link{first}, chain...), last)})
	return &setup{p: p, addr: p.Addr("r").String(), logs: logs, w: w, file: opts.Path}
}

// finish waits for the open connections to end by themselves, then
// closes the Writer.
func (s *setup) finish(t *testing.T) {
	t.Helper()
	if err := s.p.Shutdown(testnet.Context(t)); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if err := s.w.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

// wantTimes checks that every packet of the file is stamped with the wall
// clock between from and to, and that the stamps never go back: the file
// is in strict time order (capinfos), both interfaces together.
func wantTimes(t *testing.T, file string, from, to time.Time) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	n := 0
	for {
		_, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		ts := ci.Timestamp
		// pcapng keeps microseconds: allow for the truncation.
		if ts.Before(from.Truncate(time.Microsecond)) || ts.After(to) {
			t.Fatalf("packet %d stamped %v, outside the test's %v to %v", n, ts, from, to)
		}
		if ts.Before(last) {
			t.Errorf("packet %d (interface %d) stamped %v, before the one ahead of it (%v)", n, ci.InterfaceIndex, ts, last)
		}
		last = ts
	}
	if n == 0 {
		t.Fatal("no packets")
	}
}

func wantStream(t *testing.T, got tshark.Stream, a, b string, fromA, fromB []byte) {
	t.Helper()
	if got.Nodes != [2]string{a, b} {
		t.Errorf("stream nodes %q, want %q", got.Nodes, [2]string{a, b})
	}
	if testnet.Sum(got.Data[0]) != testnet.Sum(fromA) || testnet.Sum(got.Data[1]) != testnet.Sum(fromB) {
		t.Errorf("stream %s <-> %s: %d/%d bytes, want %d/%d with equal sha256", a, b, len(got.Data[0]), len(got.Data[1]), len(fromA), len(fromB))
	}
}

// TestHostNameTargetDrawnResolved: a target given as a host name is drawn
// at the address the tunnel connected to (it used to be 0.0.0.0), and its
// first SYN still names it as configured.
func TestHostNameTargetDrawnResolved(t *testing.T) {
	t.Parallel()
	srv := testnet.ServeAt(t, "127.0.0.1:0", testnet.Echo)
	_, port, _ := net.SplitHostPort(srv.Addr())
	target := "localhost:" + port
	s := start(t, "127.0.0.1:0", target, capture.Options{})
	c := testnet.Dial(t, s.addr)
	sent := []byte("hello, resolved target\n")
	if got := testnet.Exchange(c, sent); got.Err != nil || got.Sum != testnet.Sum(sent) {
		t.Fatalf("echo: %v (sha256 match %v)", got.Err, got.Sum == testnet.Sum(sent))
	}
	s.finish(t)
	client := c.LocalAddr().String()
	f := tshark.Open(t, s.file)
	wantStream(t, f.Follow(client, srv.Addr()), client, srv.Addr(), sent, sent)
	f.CheckClean()
	syn := f.Fields(func(p tshark.Packet) bool {
		return p.Is("frame.interface_id", "1") && p.Is("tcp.flags.syn", "1") && p.Is("tcp.flags.ack", "0")
	}, "frame.comment")
	if len(syn) != 1 || !strings.Contains(syn[0], "target leg ("+target+")") {
		t.Errorf("the target leg's SYN comments %q, want one naming %s", syn, target)
	}
}

// TestFollowBothLegs: Wireshark follows each leg of a connection, IPv4 and
// IPv6, with the bytes the client and the target each sent, and finds no
// bad checksum, lost segment or bad ACK.
func TestFollowBothLegs(t *testing.T) {
	for _, tc := range []struct{ name, listen string }{{"ipv4", "127.0.0.1:0"}, {"ipv6", "[::1]:0"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			before := time.Now()
			srv := testnet.ServeAt(t, tc.listen, testnet.Echo)
			s := start(t, tc.listen, srv.Addr(), capture.Options{}, upper)
			c := testnet.Dial(t, s.addr)
			sent := testnet.Random(1, 256<<10)
			got := testnet.Exchange(c, sent)
			if got.Err != nil {
				t.Fatal(got.Err)
			}
			want := asciiUpper(sent)
			if got.Sum != testnet.Sum(want) {
				t.Fatal("the echo differs")
			}
			s.finish(t)
			wantTimes(t, s.file, before, time.Now())

			client, listen := c.LocalAddr().String(), c.RemoteAddr().String()
			f := tshark.Open(t, s.file)
			wantStream(t, f.Follow(client, listen), client, listen, sent, want)
			wantStream(t, f.Follow(client, srv.Addr()), client, srv.Addr(), want, want)
			f.CheckClean()
			flags := f.Fields(func(p tshark.Packet) bool {
				return p.Is("tcp.flags.syn", "1") || p.Is("tcp.flags.fin", "1") || p.Is("tcp.flags.reset", "1")
			}, "frame.interface_id", "tcp.flags.str")
			if n := len(flags); n != 8 {
				t.Errorf("%d SYN/FIN/RST packets, want 8 (SYN, SYN-ACK, 2 FINs per leg): %q", n, flags)
			}
			if st := s.w.Stats(); st.Dropped != [2]uint64{} || st.Written[0] == 0 || st.Written[1] == 0 || st.Files != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// TestDumpAndCaptureAgree: --dump packets and --capture in one run show
// the same sequence numbers for the same connection (they drew their own
// at random: a student checking the dump against Wireshark found none of
// its numbers there).
func TestDumpAndCaptureAgree(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	var dump testkit.Buffer
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, host.Link{Name: "dump", Hook: capture.Dump(&dump)})
	c := testnet.Dial(t, s.addr)
	testnet.Exchange(c, []byte("hello\n"))
	s.logs.Wait(t, "connection closed")
	s.finish(t)
	m := regexp.MustCompile(`Sequence: (\d+)`).FindStringSubmatch(dump.String())
	if m == nil {
		t.Fatalf("no sequence number in the dump:\n%s", dump.String())
	}
	syn := tshark.Open(t, s.file, "tcp.seq_raw").Fields(func(p tshark.Packet) bool {
		return p.Is("frame.interface_id", "0") && p.Is("tcp.flags.syn", "1") && p.Is("tcp.flags.ack", "0")
	}, "tcp.seq_raw")
	if len(syn) != 1 || syn[0] != m[1] {
		t.Errorf("the client leg's SYN has sequence number %q in the capture, %s in the dump", syn, m[1])
	}
}

// TestClientResetDrawnFromTheClient: a client that resets its connection
// (SO_LINGER 0) is drawn sending the RST on the client leg, and the tunnel
// resetting the target on the other; it was drawn as the tunnel resetting
// the client, which a reader learning TCP from the file takes at its word.
func TestClientResetDrawnFromTheClient(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{})
	c := testnet.Dial(t, s.addr)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 6)); err != nil {
		t.Fatal(err)
	}
	client := c.LocalAddr().(*net.TCPAddr)
	c.SetLinger(0)
	c.Close()
	s.logs.Wait(t, "connection closed", "reason=reset")
	s.finish(t)
	f := tshark.Open(t, s.file)
	rst := f.Fields(func(p tshark.Packet) bool { return p.Is("tcp.flags.reset", "1") }, "frame.interface_id", "tcp.srcport", "frame.comment")
	port := strconv.Itoa(client.Port)
	want := []string{
		"0\t" + port + "\tthe client reset the connection (connection reset by peer)",
		"1\t" + port + "\tthe tunnel resets the target: the client reset the connection",
	}
	if strings.Join(rst, "\n") != strings.Join(want, "\n") {
		t.Errorf("RST packets (interface, source port, comment):\n%s\nwant (the client leg's from the client, port %s):\n%s", strings.Join(rst, "\n"), port, strings.Join(want, "\n"))
	}
	f.CheckClean()
}

// TestFilterCloseIsFIN: a filter's Close ends both sides with the tunnel's
// FIN (it lingers, the peers are not reset): it was drawn as a RST when
// the connection went.
func TestFilterCloseIsFIN(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	closer := host.Link{Name: "closer", Hook: closeOnBye{}}
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, closer)
	c := testnet.Dial(t, s.addr)
	if _, err := c.Write([]byte("bye\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(c); err != nil {
		t.Fatalf("after the filter's Close: %v, want EOF (a FIN)", err)
	}
	c.Close()
	s.logs.Wait(t, "connection closed", "reason=filter_close")
	s.finish(t)
	f := tshark.Open(t, s.file)
	if rst := f.Fields(func(p tshark.Packet) bool { return p.Is("tcp.flags.reset", "1") }, "frame.interface_id", "frame.comment"); len(rst) != 0 {
		t.Errorf("RST packets %q, want none", rst)
	}
	fins := f.Fields(func(p tshark.Packet) bool {
		return p.Is("tcp.flags.fin", "1") && strings.Contains(p.Get("frame.comment"), "a filter closed")
	}, "frame.interface_id", "tcp.srcport")
	_, listen, _ := net.SplitHostPort(s.addr)
	client := strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port)
	// The tunnel's side: the listen port on the client leg; on the target
	// leg, drawn as a transparent proxy, the client's port.
	if want := []string{"0\t" + listen, "1\t" + client}; strings.Join(fins, " ") != strings.Join(want, " ") {
		t.Errorf("the tunnel's FINs (interface, source port): %q, want %q", fins, want)
	}
	f.CheckClean()
}

// TestFilterCloseDrawnWhenItHappens: the tunnel's FINs after a filter's
// Close are in the file while the client still holds the connection open
// (they were drawn only once the connection went: up to the lingering
// time later), on both engines.
func TestFilterCloseDrawnWhenItHappens(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		closer host.Hook
	}{{"inline", closeOnBye{}}, {"goroutines", goroutineCloser{}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testnet.Serve(t, testnet.Echo)
			s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, host.Link{Name: "closer", Hook: tc.closer})
			c := testnet.Dial(t, s.addr)
			if _, err := c.Write([]byte("bye\n")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadAll(c); err != nil {
				t.Fatalf("after the filter's Close: %v, want EOF (a FIN)", err)
			}
			// The client has the tunnel's FIN and keeps its side open.
			s.w.Sync()
			f := tshark.Open(t, s.file)
			fins := f.Fields(func(p tshark.Packet) bool {
				return p.Is("tcp.flags.fin", "1") && strings.Contains(p.Get("frame.comment"), "a filter closed")
			}, "frame.interface_id")
			if strings.Join(fins, " ") != "0 1" {
				t.Errorf("the tunnel's FINs in the file (interfaces) while the client is still connected: %q, want one per leg", fins)
			}
			c.Close()
			s.logs.Wait(t, "connection closed", "reason=filter_close")
		})
	}
}

// TestFilterCloseThenTimerSends: bytes a filter's timer sends after its
// Close reach no peer and are not drawn (they were drawn after the
// tunnel's FIN); a Close followed by an error in the same call is a reset,
// drawn without the FINs of a Close. Both engines.
func TestFilterCloseThenTimerSends(t *testing.T) {
	t.Parallel()
	for _, inline := range []bool{true, false} {
		t.Run(map[bool]string{true: "inline", false: "goroutines"}[inline], func(t *testing.T) {
			t.Parallel()
			for _, fail := range []bool{false, true} {
				srv := testnet.Serve(t, testnet.Echo)
				h := &lateCloser{inline: inline, fail: fail, fired: make(chan struct{})}
				s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, host.Link{Name: "late", Hook: h})
				c := testnet.Dial(t, s.addr)
				if _, err := c.Write([]byte("hi\n")); err != nil {
					t.Fatal(err)
				}
				io.ReadAll(c)
				if !fail {
					<-h.fired // while the tunnel lingers
				}
				c.Close()
				s.logs.Wait(t, "connection closed")
				s.finish(t)
				f := tshark.Open(t, s.file, "tcp.len", "tcp.stream", "ip.src")
				fin := map[string]bool{}
				var bad []string
				for _, p := range f.Packets() {
					k := p.Get("frame.interface_id") + " " + p.Get("tcp.stream") + " " + p.Get("ip.src") + ":" + p.Get("tcp.srcport")
					if fin[k] && p.Get("tcp.len") != "0" {
						bad = append(bad, k+": "+p.Get("tcp.len")+" bytes after its FIN ("+p.Get("frame.comment")+")")
					}
					if p.Is("tcp.flags.fin", "1") {
						fin[k] = true
					}
				}
				if len(bad) > 0 {
					t.Errorf("fail=%v: %q", fail, bad)
				}
				closeFINs := f.Fields(func(p tshark.Packet) bool {
					return p.Is("tcp.flags.fin", "1") && strings.Contains(p.Get("frame.comment"), "a filter closed")
				}, "frame.interface_id")
				if want := map[bool]int{false: 2, true: 0}[fail]; len(closeFINs) != want {
					t.Errorf("fail=%v: %d FINs of a filter's Close, want %d", fail, len(closeFINs), want)
				}
				f.CheckClean()
			}
		})
	}
}

// lateCloser closes at the first chunk and then, from a timer, sends
// toward both peers; with fail, it returns an error after the Close.
type lateCloser struct {
	host.PassThrough
	inline, fail bool
	fired        chan struct{}
}

func (h *lateCloser) Inline() bool { return h.inline }

func (h *lateCloser) Open(*host.ConnInfo) (host.Filter, error) { return &lateCloserFilter{h: h}, nil }

type lateCloserFilter struct {
	host.PassThrough
	h *lateCloser
}

func (f *lateCloserFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	if err := s.Forward(dir, b); err != nil {
		return err
	}
	s.Close()
	if f.h.fail {
		return errors.New("failed after its Close")
	}
	return s.SetTimer(time.Millisecond)
}

func (f *lateCloserFilter) Timer(s *host.Stream) error {
	s.Send(host.ServerToClient, []byte("late, to the client\n"))
	s.Send(host.ClientToServer, []byte("late, to the target\n"))
	close(f.h.fired)
	return nil
}

// goroutineCloser is closeOnBye on the goroutine engine (not inline).
type goroutineCloser struct{ host.PassThrough }

func (goroutineCloser) Open(*host.ConnInfo) (host.Filter, error) { return closeOnBye{}, nil }

// closeOnBye is an inline hook whose filters close their connection at
// the first chunk.
type closeOnBye struct{ host.PassThrough }

func (closeOnBye) Inline() bool { return true }

func (closeOnBye) Open(*host.ConnInfo) (host.Filter, error) { return closeOnBye{}, nil }

func (closeOnBye) Data(_ host.Direction, _ []byte, s *host.Stream) error {
	s.Close()
	return nil
}

// TestAbortIsReset: a connection a filter aborts ends with a RST on both
// legs, with a comment.
func TestAbortIsReset(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	boom := host.Link{Name: "boom", Hook: host.ChunkFunc(func(_ *host.ConnInfo, dir host.Direction, b []byte) ([]byte, error) {
		if bytes.Contains(b, []byte("boom")) {
			return nil, errors.New("boom")
		}
		return b, nil
	})}
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, boom)
	c := testnet.Dial(t, s.addr)
	if _, err := c.Write([]byte("hello\n")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("boom\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(c); err == nil || !testnet.IsClosed(err) {
		// A reset or EOF; anything else is a failure.
		if err != nil {
			t.Fatal(err)
		}
	}
	s.finish(t)
	f := tshark.Open(t, s.file)
	rst := f.Fields(func(p tshark.Packet) bool { return p.Is("tcp.flags.reset", "1") }, "frame.interface_id", "frame.comment")
	want := []string{
		"0\tconnection closed before both directions ended (a filter or plugin failed, or aborted it)",
		"1\tconnection closed before both directions ended (a filter or plugin failed, or aborted it)",
	}
	if strings.Join(rst, "\n") != strings.Join(want, "\n") {
		t.Errorf("RST packets:\n%s\nwant:\n%s", strings.Join(rst, "\n"), strings.Join(want, "\n"))
	}
	client := c.LocalAddr().String()
	got := f.Follow(client, s.addr)
	if string(got.Data[0]) != "hello\nboom\n" || string(got.Data[1]) != "hello\n" {
		t.Errorf("client leg: %q / %q", got.Data[0], got.Data[1])
	}
}

// dataLink is a chain link whose filters keep no state: data handles every
// chunk, and the rest passes through.
func dataLink(name string, data dataHook) host.Link { return host.Link{Name: name, Hook: data} }

type dataHook func(dir host.Direction, b []byte, s *host.Stream) error

func (h dataHook) Open(*host.ConnInfo) (host.Filter, error) { return dataFilter{data: h}, nil }

type dataFilter struct {
	host.PassThrough
	data dataHook
}

func (f dataFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	return f.data(dir, b, s)
}

// deny drops a chunk holding "FLUSHALL" and answers the client instead.
var deny = dataLink("deny", func(dir host.Direction, b []byte, s *host.Stream) error {
	if dir == host.ClientToServer && bytes.Contains(b, []byte("FLUSHALL")) {
		return s.Send(host.ServerToClient, []byte("-ERR no\r\n"))
	}
	if dir == host.ClientToServer && bytes.Contains(b, []byte("DROP")) {
		return nil
	}
	if dir == host.ClientToServer && bytes.Contains(b, []byte("shout")) {
		return s.Send(dir, []byte("SHOUT!\n"))
	}
	return s.Send(dir, b)
})

// TestVerdictComments: the client leg's packets name what the chain did
// with them: dropped, replaced, replied; a reply follows its request.
func TestVerdictComments(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, deny)
	c := testnet.Dial(t, s.addr)
	exchange := func(out, want string) {
		t.Helper()
		if _, err := c.Write([]byte(out)); err != nil {
			t.Fatal(err)
		}
		if want == "" {
			return
		}
		buf := make([]byte, len(want))
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
			t.Fatalf("sent %q, got %q, %v; want %q", out, buf, err, want)
		}
	}
	exchange("SET a 1\n", "SET a 1\n")
	exchange("FLUSHALL\n", "-ERR no\r\n")
	exchange("shout\n", "SHOUT!\n")
	exchange("DROP\n", "")
	c.CloseWrite()
	if _, err := io.ReadAll(c); err != nil {
		t.Fatal(err)
	}
	s.finish(t)
	f := tshark.Open(t, s.file, "tcp.payload")
	got := f.Fields(func(p tshark.Packet) bool { return p.Is("frame.interface_id", "0") && p.Int("tcp.len") > 0 }, "tcp.payload", "frame.comment")
	hexs := func(s string) string { return fmt.Sprintf("%x", s) }
	want := []string{
		hexs("SET a 1\n") + "\t",
		hexs("SET a 1\n") + "\t",
		hexs("FLUSHALL\n") + "\tchain: dropped or held (none of the 9 bytes reached the target); replied 9 bytes to the client",
		hexs("-ERR no\r\n") + "\t",
		hexs("shout\n") + "\tchain: replaced (6 bytes in, 7 bytes reached the target)",
		hexs("SHOUT!\n") + "\t",
		hexs("DROP\n") + "\tchain: dropped or held (none of the 5 bytes reached the target)",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("client leg:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	f.CheckClean()
}

// blocking is a slow disk: every Write waits until release is closed.
type blocking struct {
	release chan struct{}
	once    sync.Once
	n       int
}

func (b *blocking) Write(p []byte) (int, error) {
	<-b.release
	b.n += len(p)
	return len(p), nil
}

// TestSlowDiskDropsNotStalls: a Writer whose file never takes a byte drops
// packets, counted, while a transfer through the route completes intact
// and in bounded time.
func TestSlowDiskDropsNotStalls(t *testing.T) {
	t.Parallel()
	disk := &blocking{release: make(chan struct{})}
	logs := testnet.NewLogs()
	w, err := capture.New(disk, capture.Options{QueueBytes: 1 << 20, Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	first, last := capture.Links(w)
	srv := testnet.Serve(t, testnet.Echo)
	addr, _, _ := testnet.Tunnel(t, srv.Addr(), first, last)
	c := testnet.Dial(t, addr)
	sent := testnet.Random(2, 64<<20)
	begin := time.Now()
	got := testnet.Exchange(c, sent)
	took := time.Since(begin)
	if got.Err != nil || got.Sum != testnet.Sum(sent) {
		t.Fatalf("transfer: %v, sha256 equal: %v", got.Err, got.Sum == testnet.Sum(sent))
	}
	if took > testnet.Timeout/2 {
		t.Errorf("64 MiB each way took %v with a blocked capture", took)
	}
	st := w.Stats()
	if st.Dropped[0] == 0 || st.Dropped[1] == 0 {
		t.Errorf("nothing dropped: %+v", st)
	}
	close(disk.release)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	logs.Wait(t, "capture: packets dropped", `why="the writer fell behind"`)
	t.Logf("64 MiB each way in %v; stats %+v", took, w.Stats())
}

// TestRotation: max_size starts new files, max_files keeps the newest,
// TestReloadKeepsTheReplacedWritersFile: a reload starts a new Writer on
// the same path pattern while the connections that began under the old
// one still write to its file. The new Writer's first file, with
// max_files = 1, must not remove that file from under them: the old
// connection's whole recording would go with it.
func TestReloadKeepsTheReplacedWritersFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	opts := capture.Options{Path: filepath.Join(dir, "r.pcapng"), MaxFiles: 1}
	srv := testnet.Serve(t, testnet.Echo)
	echo := func(c *net.TCPConn, msg string) {
		t.Helper()
		got := make([]byte, len(msg))
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("echo %q: %q, %v", msg, got, err)
		}
	}
	once := func(addr, msg string) {
		t.Helper()
		c := testnet.Dial(t, addr)
		echo(c, msg)
		c.Close()
	}
	old := start(t, "127.0.0.1:0", srv.Addr(), opts)
	c := testnet.Dial(t, old.addr)
	echo(c, "before the reload")
	old.w.Sync()
	replaced := filepath.Join(dir, "r.pcapng")
	if _, err := os.Stat(replaced); err != nil {
		t.Fatalf("the first Writer's file: %v", err)
	}
	next := start(t, "127.0.0.1:0", srv.Addr(), opts)
	once(next.addr, "after the reload")
	next.w.Sync()
	echo(c, "still open")
	c.Close()
	old.finish(t)
	next.finish(t)
	out := tshark.Run(t, replaced, "-q", "-z", "follow,tcp,ascii,0")
	if !strings.Contains(out, "still open") {
		t.Errorf("%s lost the replaced Writer's connection; follow stream 0:\n%s", replaced, out)
	}
	// Once both are closed, the next Writer's rotation prunes as before.
	third := start(t, "127.0.0.1:0", srv.Addr(), opts)
	once(third.addr, "later")
	third.finish(t)
	if names, _ := filepath.Glob(filepath.Join(dir, "*")); len(names) != 1 {
		t.Errorf("files %q, want the newest one only (max_files = 1)", names)
	}
}

// and every file left is valid pcapng with its own handshake-less part.
func TestRotation(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{Path: filepath.Join(dir, "c-%Y%m%d.pcapng"), MaxSize: 256 << 10, MaxFiles: 3})
	c := testnet.Dial(t, s.addr)
	sent := testnet.Random(3, 2<<20)
	for i := 0; i < len(sent); i += 64 << 10 {
		// Paced by the echo, so the writer keeps up and rotates.
		out := sent[i : i+64<<10]
		if _, err := c.Write(out); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, len(out))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		s.w.Sync()
	}
	c.Close()
	s.finish(t)
	st := s.w.Stats()
	if st.Files < 6 {
		t.Errorf("%d files started, want at least 6 for 8 MiB of packets in 256 KiB files", st.Files)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 4 {
		t.Fatalf("files left: %q, want keep.txt and 3 captures", names)
	}
	day := time.Now().Format("20060102")
	for _, n := range names[:3] {
		if !strings.HasPrefix(n, "c-"+day) {
			t.Errorf("file %q does not match c-%s[-N].pcapng", n, day)
		}
		// Its owner's alone: a TLS route's capture holds the secrets.
		if st, err := os.Stat(filepath.Join(dir, n)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", n, st.Mode(), err)
		}
		if out := tshark.Run(t, filepath.Join(dir, n), "-T", "fields", "-e", "frame.number"); out == "" {
			t.Errorf("%s has no packet", n)
		}
	}
}

// TestValidWhileOpen: once idle, the file on disk is valid pcapng before
// Close: a tunnel killed at that point leaves a readable capture.
func TestValidWhileOpen(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{})
	c := testnet.Dial(t, s.addr)
	got := testnet.Exchange(c, []byte("hello\n"))
	if got.Err != nil {
		t.Fatal(got.Err)
	}
	s.logs.Wait(t, "connection closed")
	s.w.Sync()
	client := c.LocalAddr().String()
	if f := tshark.Open(t, s.file).Follow(client, s.addr); string(f.Data[0]) != "hello\n" || string(f.Data[1]) != "hello\n" {
		t.Errorf("client leg before Close: %q", f.Data)
	}
}

func TestPathErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct{ path, want string }{
		{"", "capture: empty path"},
		{filepath.Join(dir, "%Y", "c.pcapng"), fmt.Sprintf("capture: path %q: directives (%%) are allowed in the file name only, not in its directory", filepath.Join(dir, "%Y", "c.pcapng"))},
		{filepath.Join(dir, "c-%q.pcapng"), fmt.Sprintf("capture: path %q: unknown directive %%q; use %%Y, %%m, %%d, %%H, %%M, %%S or %%%%", filepath.Join(dir, "c-%q.pcapng"))},
		{filepath.Join(dir, "missing", "c.pcapng"), fmt.Sprintf("capture: directory %s does not exist", filepath.Join(dir, "missing"))},
		// A directory that refuses files, even to root: said at Create,
		// not by dropping every packet from the first.
		{"/proc/c.pcapng", "capture: directory /proc does not take files: open /proc/.tunnel-capture-"},
		// A name that is not a file to write: the Writer, which never
		// overwrites, wrote DIR-1 or /dev/full-1 beside it.
		{dir, fmt.Sprintf("capture: %s is a directory: name a file in it, e.g. %s", dir, filepath.Join(dir, "capture-%Y%m%d.pcapng"))},
		{"/dev/full", "capture: /dev/full exists and is not a regular file: name a file to create"},
	} {
		_, err := capture.Create(capture.Options{Path: tc.path})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("Create(%q): %v, want %s", tc.path, err, tc.want)
		}
	}
}
