package clienthello

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testcert"
)

// recorder keeps every byte read through it.
type recorder struct {
	net.Conn
	mu  sync.Mutex
	buf bytes.Buffer
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.buf.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

// captured is a real ClientHello and what crypto/tls's own server parsed
// from it.
type captured struct {
	raw        []byte
	serverName string
	alpn       []string
}

var errStop = errors.New("captured")

// capture runs crypto/tls's client with cfg against crypto/tls's server on
// a pipe and returns the bytes the server read before it saw the hello
// (the client sends nothing else until it hears back).
func capture(t testing.TB, cfg *tls.Config) captured {
	t.Helper()
	c1, c2 := net.Pipe()
	rec := &recorder{Conn: c2}
	var got captured
	srv := tls.Server(rec, &tls.Config{GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
		got.serverName, got.alpn = hi.ServerName, slices.Clone(hi.SupportedProtos)
		return nil, errStop
	}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(c1, cfg).Handshake()
	}()
	err := srv.Handshake()
	c1.Close()
	c2.Close()
	<-done
	if !errors.Is(err, errStop) {
		t.Fatalf("capturing a ClientHello: %v", err)
	}
	rec.mu.Lock()
	got.raw = bytes.Clone(rec.buf.Bytes())
	rec.mu.Unlock()
	return got
}

// manyProtos is an ALPN list that takes a ClientHello past one 16 KiB
// record.
func manyProtos() []string {
	var p []string
	for i := range 80 {
		p = append(p, fmt.Sprintf("proto-%03d-%s", i, strings.Repeat("x", 200)))
	}
	return p
}

func hellos(t testing.TB) map[string]captured {
	t.Helper()
	return map[string]captured{
		"default":  capture(t, &tls.Config{ServerName: "a.example"}),
		"alpn":     capture(t, &tls.Config{ServerName: "b.example", NextProtos: []string{"h2", "http/1.1"}}),
		"tls12":    capture(t, &tls.Config{ServerName: "c.example", MaxVersion: tls.VersionTLS12}),
		"no-sni":   capture(t, &tls.Config{ServerName: "127.0.0.1", InsecureSkipVerify: true}),
		"no-sni-2": capture(t, &tls.Config{InsecureSkipVerify: true}),
		"huge":     capture(t, &tls.Config{ServerName: "huge.example", NextProtos: manyProtos()}),
	}
}

func check(t *testing.T, name string, h *Hello, err error, want captured, wantRaw []byte) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if h.ServerName != want.serverName {
		t.Fatalf("%s: ServerName = %q, crypto/tls says %q", name, h.ServerName, want.serverName)
	}
	if !slices.Equal(h.ALPN, want.alpn) {
		t.Fatalf("%s: ALPN = %q, crypto/tls says %q", name, h.ALPN, want.alpn)
	}
	if !bytes.Equal(h.Raw, wantRaw) {
		t.Fatalf("%s: Raw is %d bytes, not the %d read", name, len(h.Raw), len(wantRaw))
	}
}

// records counts the TLS records in raw.
func records(raw []byte) int {
	n := 0
	for len(raw) >= 5 {
		raw = raw[5+int(binary.BigEndian.Uint16(raw[3:5])):]
		n++
	}
	return n
}

// TestRealHellos reads the ClientHellos of Go's own client: the name and
// ALPN offers agree with crypto/tls's server, Raw is every byte, and the
// post-quantum default and the >16 KiB hello (several records) both work.
func TestRealHellos(t *testing.T) {
	for name, c := range hellos(t) {
		h, err := Read(bytes.NewReader(c.raw), 0)
		check(t, name, h, err, c, c.raw)
		t.Logf("%s: %d bytes in %d records, sni=%q", name, len(c.raw), records(c.raw), h.ServerName)
	}
	all := hellos(t)
	if n := len(all["default"].raw); n < 1200 {
		t.Errorf("the default hello is %d bytes: no X25519MLKEM768 key share?", n)
	}
	if huge := all["huge"].raw; len(huge) <= 16<<10 || records(huge) < 2 {
		t.Errorf("the huge hello is %d bytes in %d records; want more than 16 KiB in several", len(huge), records(huge))
	}
}

// chunks returns its parts one per Read.
type chunks struct{ parts [][]byte }

func (c *chunks) Read(b []byte) (int, error) {
	for len(c.parts) > 0 && len(c.parts[0]) == 0 {
		c.parts = c.parts[1:]
	}
	if len(c.parts) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.parts[0])
	c.parts[0] = c.parts[0][n:]
	return n, nil
}

// TestSegments splits the hello in two TCP segments at every byte, and
// delivers it one byte per read: the result never changes, and a byte
// after the hello is left unread.
func TestSegments(t *testing.T) {
	all := hellos(t)
	for _, name := range []string{"default", "huge"} {
		c := all[name]
		for i := 0; i <= len(c.raw); i++ {
			// The huge hello: every byte around its record headers, every
			// 61st elsewhere (all 18 KiB take 20 s under -race).
			if name == "huge" && i%61 != 0 && !nearHeader(c.raw, i, 64) {
				continue
			}
			r := &chunks{parts: [][]byte{c.raw[:i], c.raw[i:], []byte("after")}}
			h, err := Read(r, 0)
			check(t, fmt.Sprintf("%s split at %d", name, i), h, err, c, c.raw)
			if rest, _ := io.ReadAll(r); string(rest) != "after" {
				t.Fatalf("%s split at %d: left %q unread, want \"after\"", name, i, rest)
			}
		}
		h, err := Read(iotest.OneByteReader(bytes.NewReader(c.raw)), 0)
		check(t, name+" one byte at a time", h, err, c, c.raw)
	}
}

// nearHeader reports whether offset i is within d bytes of the start of a
// record header in raw.
func nearHeader(raw []byte, i, d int) bool {
	for off := 0; off+5 <= len(raw); off += 5 + int(binary.BigEndian.Uint16(raw[off+3:off+5])) {
		if i >= off-d && i <= off+5+d {
			return true
		}
	}
	return false
}

// rerecord puts the handshake message of raw into records of the given
// sizes (the last one takes the rest).
func rerecord(raw []byte, sizes ...int) []byte {
	var msg []byte
	for r := raw; len(r) >= 5; {
		n := int(binary.BigEndian.Uint16(r[3:5]))
		msg = append(msg, r[5:5+n]...)
		r = r[5+n:]
	}
	var out []byte
	add := func(b []byte) {
		out = append(out, 22, 3, 1, byte(len(b)>>8), byte(len(b)))
		out = append(out, b...)
	}
	for _, s := range sizes {
		if s >= len(msg) {
			break
		}
		add(msg[:s])
		msg = msg[s:]
	}
	for len(msg) > 0 {
		n := min(len(msg), 1<<14)
		add(msg[:n])
		msg = msg[n:]
	}
	return out
}

// TestRecords splits the handshake message over two records at every
// position, and over one record per byte (legal TLS, seen from some
// middleboxes).
func TestRecords(t *testing.T) {
	c := hellos(t)["alpn"]
	for k := 1; k < len(c.raw)-5; k++ {
		raw := rerecord(c.raw, k)
		h, err := Read(bytes.NewReader(raw), 0)
		check(t, fmt.Sprintf("records split at %d", k), h, err, c, raw)
	}
	sizes := make([]int, len(c.raw))
	for i := range sizes {
		sizes[i] = 1
	}
	raw := rerecord(c.raw, sizes...)
	h, err := Read(iotest.HalfReader(bytes.NewReader(raw)), 0)
	check(t, "one byte per record", h, err, c, raw)
	if records(raw) < 1000 {
		t.Fatalf("only %d records", records(raw))
	}
}

// TestReplay reads the hello from a real client's connection, then hands
// Raw followed by the rest of the connection to crypto/tls's server: the
// handshake completes and data flows, so the replay is byte-exact.
func TestReplay(t *testing.T) {
	ca := testcert.NewCA(t, "replay CA")
	srvCert := ca.Server(t, "replay.example")
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	errc := make(chan error, 1)
	go func() {
		tc := tls.Client(c1, &tls.Config{ServerName: "replay.example", RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
		if _, err := io.WriteString(tc, "ping"); err != nil {
			errc <- err
			return
		}
		b := make([]byte, 4)
		_, err := io.ReadFull(tc, b)
		if err == nil && string(b) != "pong" {
			err = fmt.Errorf("read %q", b)
		}
		errc <- err
	}()
	c2.SetReadDeadline(time.Now().Add(time.Minute))
	h, err := Read(c2, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerName != "replay.example" || !slices.Equal(h.ALPN, []string{"h2"}) {
		t.Fatalf("hello: %q %q", h.ServerName, h.ALPN)
	}
	c2.SetReadDeadline(time.Time{})
	srv := tls.Server(&replayConn{Conn: c2, r: io.MultiReader(bytes.NewReader(h.Raw), c2)}, &tls.Config{Certificates: []tls.Certificate{srvCert.TLS}, NextProtos: []string{"h2"}})
	b := make([]byte, 4)
	if _, err := io.ReadFull(srv, b); err != nil || string(b) != "ping" {
		t.Fatalf("server read %q, %v", b, err)
	}
	if srv.ConnectionState().NegotiatedProtocol != "h2" {
		t.Fatalf("ALPN %q", srv.ConnectionState().NegotiatedProtocol)
	}
	if _, err := io.WriteString(srv, "pong"); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// TestErrors: plain HTTP, every truncation, a hello over the limit, a
// deadline, and junk in the hello each give the matching error, with the
// bytes read so far.
// blockingReader never returns: a client that waits for an answer.
type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { select {} }

func TestErrors(t *testing.T) {
	h, err := Read(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), 0)
	if !errors.Is(err, ErrNotTLS) || !strings.Contains(err.Error(), `"GET /"`) || !strings.Contains(err.Error(), "plain text") {
		t.Fatalf("HTTP: %v", err)
	}
	if string(h.Raw) != "GET /" {
		t.Fatalf("HTTP: Raw = %q", h.Raw)
	}
	// A plaintext client whose first message is shorter than a record
	// header and that waits for an answer: known by its first byte, not
	// left waiting for bytes that never come.
	short := &chunks{parts: [][]byte{[]byte("hi\n")}}
	blocked := io.MultiReader(short, blockingReader{})
	done := make(chan error, 1)
	go func() {
		h, err := Read(blocked, 0)
		if err == nil && h != nil {
			err = errors.New("no error")
		} else if errors.Is(err, ErrNotTLS) && string(h.Raw) != "hi\n" {
			err = fmt.Errorf("Raw = %q", h.Raw)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrNotTLS) || !strings.Contains(err.Error(), `"hi\n"`) {
			t.Fatalf("short plaintext: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("short plaintext: Read waits for a whole record header")
	}
	if h, err := Read(strings.NewReader(""), 0); err != io.EOF || h != nil {
		t.Fatalf("empty: %v, %v", h, err)
	}
	all := hellos(t)
	c := all["alpn"]
	for i := 1; i < len(c.raw); i++ {
		h, err := Read(bytes.NewReader(c.raw[:i]), 0)
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v", i, err)
		}
		if !bytes.Equal(h.Raw, c.raw[:i]) {
			t.Fatalf("cut at %d: Raw is %d bytes", i, len(h.Raw))
		}
	}
	huge := all["huge"].raw
	for _, limit := range []int{100, 16 << 10, 16<<10 + 5, len(huge) - 1} {
		h, err := Read(bytes.NewReader(huge), limit)
		if !errors.Is(err, ErrTooLarge) {
			t.Fatalf("limit %d: %v", limit, err)
		}
		if len(h.Raw) > limit {
			t.Fatalf("limit %d: read %d bytes", limit, len(h.Raw))
		}
	}
	if h, err := Read(bytes.NewReader(huge), len(huge)); err != nil || h.ServerName != "huge.example" {
		t.Fatalf("at the exact limit: %v", err)
	}
	// A declared length far beyond the limit is refused before reading it.
	decl := []byte{22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}
	if _, err := Read(bytes.NewReader(decl), 0); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("16 MiB declared: %v", err)
	}
	for name, in := range map[string][]byte{
		"alert first":     {21, 3, 3, 0, 2, 2, 40},
		"server hello":    {22, 3, 3, 0, 4, 2, 0, 0, 0},
		"bad version":     {22, 2, 0, 0, 4, 1, 0, 0, 0},
		"ssl2":            {0x80, 0x2e, 1, 3, 1},
		"record too long": {22, 3, 1, 0x40, 1},
	} {
		if _, err := Read(bytes.NewReader(in), 0); err == nil || !(errors.Is(err, ErrNotTLS) || errors.Is(err, ErrMalformed)) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	// An empty ClientHello body: it does not parse.
	if _, err := Read(bytes.NewReader([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0}), 0); !errors.Is(err, ErrMalformed) {
		t.Fatalf("empty body: %v", err)
	}
	// A deadline: the reader's error comes back, wrapped.
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	go c1.Write(c.raw[:10])
	c2.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	h, err = Read(c2, 0)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if !bytes.Equal(h.Raw, c.raw[:10]) {
		t.Fatalf("deadline: Raw = %x", h.Raw)
	}
}

// TestAlert: crypto/tls's client reports the alert as unrecognized name.
func TestAlert(t *testing.T) {
	if got := Alert(AlertUnrecognizedName); !bytes.Equal(got, []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70}) {
		t.Fatalf("alert record %x", got)
	}
	c1, c2 := net.Pipe()
	defer c1.Close()
	errc := make(chan error, 1)
	go func() {
		errc <- tls.Client(c1, &tls.Config{ServerName: "nobody.example"}).Handshake()
	}()
	if _, err := Read(c2, 0); err != nil {
		t.Fatal(err)
	}
	if err := WriteUnrecognizedName(c2); err != nil {
		t.Fatal(err)
	}
	c2.Close()
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Fatalf("client: %v", err)
	}
}

func TestMatchName(t *testing.T) {
	for _, tc := range []struct {
		pattern, name string
		want          bool
	}{
		{"a.example", "a.example", true},
		{"a.example", "A.Example", true},
		{"a.example", "a.example.", true},
		{"a.example", "b.example", false},
		{"*.b.example", "x.b.example", true},
		{"*.b.example", "X.B.EXAMPLE", true},
		{"*.b.example", "b.example", false},
		{"*.b.example", "y.x.b.example", false},
		{"*.b.example", ".b.example", false},
		{"*", "anything", true},
		{"*", "", true},
		{"a.example", "", false},
	} {
		if got := MatchName(tc.pattern, tc.name); got != tc.want {
			t.Errorf("MatchName(%q, %q) = %v", tc.pattern, tc.name, got)
		}
	}
	for _, ok := range []string{"*", "a.example", "*.b.example", "x", "under_score.example"} {
		if err := CheckPattern(ok); err != nil {
			t.Errorf("CheckPattern(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "*.", "a..b", "a.*.b", "**.b", "a b", "a/b", "*.*.b", strings.Repeat("x", 64) + ".example"} {
		if err := CheckPattern(bad); err == nil {
			t.Errorf("CheckPattern(%q) accepted it", bad)
		}
	}
}

// FuzzReadClientHello: any input is read without a panic, Raw is always a
// prefix of the input and within the limit, and a success names a valid
// server name.
func FuzzReadClientHello(f *testing.F) {
	for _, c := range hellos(f) {
		if len(c.raw) < 4096 {
			f.Add(c.raw, uint16(0))
		}
	}
	f.Add([]byte("GET / HTTP/1.1\r\n"), uint16(0))
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0}, uint16(100))
	f.Fuzz(func(t *testing.T, in []byte, limit uint16) {
		max := int(limit)
		h, err := Read(bytes.NewReader(in), max)
		if max <= 0 {
			max = DefaultMaxSize
		}
		if h == nil {
			if err == nil {
				t.Fatal("nil Hello without an error")
			}
			return
		}
		if !bytes.HasPrefix(in, h.Raw) {
			t.Fatalf("Raw is not a prefix of the input")
		}
		if len(h.Raw) > max {
			t.Fatalf("read %d bytes over the limit %d", len(h.Raw), max)
		}
		if err == nil && h.ServerName != "" {
			if e := checkName([]byte(h.ServerName)); e != nil {
				t.Fatalf("accepted server name: %v", e)
			}
		}
	})
}
