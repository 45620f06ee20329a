package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/tunnelwasm/tunnel/internal/tshark"
	"github.com/tunnelwasm/tunnel/plugins/builtin"
)

const denyConfig = `{"pattern":"FLUSHALL\n","reply":"-ERR FLUSHALL is not allowed\n","from":"client"}`

// denyWasm writes the built-in deny (plugins/deny, embedded; a test of
// plugins/builtin keeps it in step with its source) into the test's
// directory, for --plugin FILE. The first tunnel of the run to load deny
// compiles it into the run's cache (TUNNEL_CACHE_DIR, set by TestMain),
// where the other tunnels, and plugins/deny's tests, find it.
func denyWasm(t *testing.T) string {
	t.Helper()
	b, err := builtin.Wasm("deny")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "deny.wasm")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCaptureAndReplayDeny: --capture records a session through deny on
// both legs (the blocked command on the client leg only, with its
// verdict), SIGHUP starts a new file, and `tunnel replay` of the first file
// through the same plugin gives the same verdicts, exit status 0; the
// second file through a plugin that crashes on it, exit status 1.
func TestCaptureAndReplayDeny(t *testing.T) {
	t.Parallel()
	deny := denyWasm(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "c.pcapng")
	p, addr := startPlain(t, echoServer(t), "--dump", "none", "--capture", file, "--plugin", deny, "--plugin-config", denyConfig)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tunnel stderr:\n%s", p.stderr)
		}
	})
	c := dial(t, addr)
	reply := "-ERR FLUSHALL is not allowed\n"
	say(t, c, "SET a 1\n", "SET a 1\n")
	say(t, c, "FLUSHALL\n", reply)
	say(t, c, "GET a\n", "GET a\n")
	client := c.LocalAddr().String()
	c.CloseWrite()
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after the half-close: %q, %v", rest, err)
	}
	p.stderr.wait(t, `msg="connection closed"`)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.stderr.wait(t, `capture: SIGHUP: closed the file; the next packet starts a new one" file=`+regexp.QuoteMeta(file))
	c2 := dial(t, addr)
	converse(t, c2, "!PING\n") // crash.wasm traps on a chunk starting with "!"
	c2.Close()
	p.stderr.wait(t, `msg="connection closed" conn=2`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}

	f := tshark.Open(t, file)
	clientLeg := f.Follow(client, addr)
	if got, want := string(clientLeg.Data[0]), "SET a 1\nFLUSHALL\nGET a\n"; got != want {
		t.Errorf("client leg, client: %q, want %q", got, want)
	}
	if got, want := string(clientLeg.Data[1]), "SET a 1\n"+reply+"GET a\n"; got != want {
		t.Errorf("client leg, to the client: %q, want %q", got, want)
	}
	target := f.Fields(func(p tshark.Packet) bool {
		return p.Is("frame.interface_id", "1") && p.Is("tcp.flags.syn", "1") && p.Is("tcp.flags.ack", "0")
	}, "ip.dst", "tcp.dstport")
	if len(target) != 1 {
		t.Fatalf("target leg SYNs: %q", target)
	}
	targetLeg := f.Follow(client, strings.Replace(target[0], "\t", ":", 1))
	if got, want := string(targetLeg.Data[0]), "SET a 1\nGET a\n"; got != want {
		t.Errorf("target leg, to the target: %q, want %q", got, want)
	}
	comments := f.Fields(func(p tshark.Packet) bool { return strings.Contains(p.Get("frame.comment"), "chain:") }, "frame.interface_id", "frame.comment")
	live := []string{"0\tchain: dropped or held (none of the 9 bytes reached the target); replied 29 bytes to the client"}
	if strings.Join(comments, "\n") != strings.Join(live, "\n") {
		t.Errorf("verdict comments %q, want %q", comments, live)
	}
	f.CheckClean()
	second := tshark.Open(t, filepath.Join(dir, "c-1.pcapng"), "tcp.payload").Fields(func(p tshark.Packet) bool { return p.Int("tcp.len") > 0 }, "tcp.payload")
	if len(second) != 4 {
		t.Errorf("the file after SIGHUP has %d data packets, want PING and its echo on each leg: %q", len(second), second)
	}

	// Replay the first file through deny: the same verdicts.
	code, stdout, stderr := runTunnel(t, "replay", file, "--plugin", deny, "--plugin-config", denyConfig, "--format", "json")
	if code != 0 {
		t.Fatalf("replay: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep struct {
		Conns []struct {
			Steps []struct{ Dir, In, Forwarded, Replied, Verdict string }
			Err   string
		}
		Failed bool
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("replay output: %v\n%s", err, stdout)
	}
	if len(rep.Conns) != 1 || rep.Failed {
		t.Fatalf("replay: %s", stdout)
	}
	var got []string
	for _, s := range rep.Conns[0].Steps {
		got = append(got, s.Dir+" "+strings.TrimSpace(s.In)+": "+s.Verdict)
	}
	want := []string{
		"client -> server SET a 1: forwarded",
		"server -> client SET a 1: forwarded",
		"client -> server FLUSHALL: dropped or held; replied 29 bytes",
		"client -> server GET a: forwarded",
		"server -> client GET a: forwarded",
		"client -> server : half-closed",
		"server -> client : half-closed",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("replay verdicts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The text report, and a new capture of the replay.
	out := filepath.Join(dir, "replayed.pcapng")
	code, stdout, stderr = runTunnel(t, "replay", file, "--plugin", deny, "--plugin-config", denyConfig, "--out", out)
	if code != 0 || !strings.Contains(stdout, "#1 client -> server 9 bytes: dropped or held; replied 29 bytes\nFLUSHALL\\n\n#1   replied 29 bytes\n-ERR FLUSHALL is not allowed\\n\n") {
		t.Errorf("replay text: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if n := tshark.Fields(t, out, "frame.comment contains \"chain: dropped\"", "frame.number"); len(n) != 1 {
		t.Errorf("the replay's capture has %d dropped-verdict packets, want 1", len(n))
	}

	// A plugin that fails makes the exit status 1.
	crash := filepath.Join("..", "..", "host", "plugin", "testdata", "crash.wasm")
	code, stdout, stderr = runTunnel(t, "replay", filepath.Join(dir, "c-1.pcapng"), "--plugin", crash)
	if code != 1 || !strings.Contains(stdout, "#1 closed with an error: ") {
		t.Errorf("replay through crash: exit %d, want 1\n%s\n%s", code, stdout, stderr)
	}
}

// say writes msg to c and reads want back.
func say(t *testing.T, c *net.TCPConn, msg, want string) {
	t.Helper()
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("sent %q, got %q, %v; want %q", msg, got, err, want)
	}
}

// TestReplayUsage: the usage errors, exactly.
func TestReplayUsage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"replay"}, "tunnel replay: name the capture file to replay\n"},
		{[]string{"replay", "x.pcapng", "--config", "t.hcl"}, "tunnel replay: --config and --route go together\n"},
		{[]string{"replay", "x.pcapng", "--format", "xml"}, "tunnel replay: --format \"xml\": want text, hex or json\n"},
	} {
		code, _, stderr := runTunnel(t, tc.args...)
		if code != 2 || !strings.HasPrefix(stderr, tc.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
	code, _, stderr := runTunnel(t, "replay", "/nonexistent.pcapng")
	if code != 1 || stderr != "tunnel replay: open /nonexistent.pcapng: no such file or directory\n" {
		t.Errorf("missing file: exit %d, %q", code, stderr)
	}
	// A pcapng with no TCP connection in it (here no packet at all) is
	// said to be one, not replayed as an empty success.
	empty := filepath.Join(t.TempDir(), "empty.pcapng")
	var b bytes.Buffer
	ng, err := pcapgo.NewNgWriter(&b, layers.LinkTypeEthernet)
	if err != nil || ng.Flush() != nil || os.WriteFile(empty, b.Bytes(), 0o644) != nil {
		t.Fatal("writing an empty pcapng:", err)
	}
	code, _, stderr = runTunnel(t, "replay", empty)
	if want := "tunnel replay: " + empty + ": no TCP connection to replay in it"; code != 1 || !strings.HasPrefix(stderr, want) {
		t.Errorf("a file without connections: exit %d, %q; want 1 and %q", code, stderr, want)
	}
}

// TestDumpPackets: --dump packets prints the client leg's synthetic
// packets as a sniffer decodes them: the handshake between the client's
// port and the listen port, each chunk with its payload and its ACK, then
// a FIN and its ACK each way, with consistent relative sequence numbers.
func TestDumpPackets(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "packets")
	c := dial(t, addr)
	converse(t, c, "hello\n")
	p.stdout.wait(t, `Sequence: \d+ \(relative 8\), Acknowledgment: \d+ \(relative 8\)\n\t\tFlags: ACK,`)
	out := p.stdout.String()
	var flags []string
	for _, l := range strings.Split(out, "\n") {
		if f, ok := strings.CutPrefix(l, "\t\tFlags: "); ok {
			flags = append(flags, f[:strings.Index(f, ",")])
		}
	}
	want := []string{"SYN", "SYN ACK", "ACK", "PSH ACK", "ACK", "PSH ACK", "ACK", "FIN ACK", "ACK", "FIN ACK", "ACK"}
	if strings.Join(flags, "|") != strings.Join(want, "|") {
		t.Errorf("TCP flags of the packets: %q, want %q\n%s", flags, want, out)
	}
	_, cport, _ := net.SplitHostPort(c.LocalAddr().String())
	_, lport, _ := net.SplitHostPort(addr)
	for _, w := range []string{
		"#1 client -> server\nEthernet Frame:\n\tDestination: 02:00:00:00:00:02, Source: 02:00:00:00:00:01, Protocol: 0x0800 (IPv4)\n" +
			"\tIPv4 Packet:\n\t\tVersion: 4, Header Length: 20, TTL: 64\n\t\tProtocol: 6 (TCP), Source: 127.0.0.1, Target: 127.0.0.1\n",
		"\t\tSource Port: " + cport + ", Destination Port: " + lport + "\n",
		"\t\tSource Port: " + lport + ", Destination Port: " + cport + "\n",
		"\t\tData (6 bytes):\n\t\t\t00000000  68 65 6c 6c 6f 0a                                 |hello.|\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("stdout lacks\n%s\nin\n%s", w, out)
		}
	}
	if n := strings.Count(out, "Data (6 bytes)"); n != 2 {
		t.Errorf("%d data packets, want 2 (hello and its echo)", n)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d\n%s", code, p.stderr)
	}
}

// TestCaptureRotationFlags: --capture-max-size starts a new file past the
// size and --capture-max-files keeps the newest ones, each a valid pcapng;
// a size that is not one is refused before anything starts.
func TestCaptureRotationFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, addr := startPlain(t, echoServer(t), "--dump", "none", "--capture", filepath.Join(dir, "c.pcapng"),
		"--capture-max-size", "1MiB", "--capture-max-files", "2")
	// 256 KiB each way on both legs: a new file every conversation or two.
	msg := strings.Repeat("x", 256<<10)
	for i := range 6 {
		c := dial(t, addr)
		go io.WriteString(c, msg) // the echo comes back while it is sent
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
			t.Fatalf("conversation %d: the echo differs (%v)", i+1, err)
		}
		c.Close()
		p.stderr.wait(t, fmt.Sprintf(`msg="connection closed" conn=%d`, i+1))
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(files) != 2 {
		t.Fatalf("files %q, want the newest 2\n%s", files, p.stderr)
	}
	for _, f := range files {
		if out := tshark.Run(t, f, "-T", "fields", "-e", "frame.number"); strings.TrimSpace(out) == "" {
			t.Errorf("%s: no packets", f)
		}
	}

	for _, c := range []struct{ size, want string }{
		{"lots", `invalid value "lots" for flag -capture-max-size: "lots" is not a size`},
		// The range of a capture block's max_size.
		{"2KiB", `invalid value "2KiB" for flag -capture-max-size: "2KiB" is out of range: it must be from 1MiB to 1024GiB`},
	} {
		code, _, stderr := runTunnel(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--capture", filepath.Join(dir, "d.pcapng"), "--capture-max-size", c.size)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("--capture-max-size %s: exit %d, want 2 and %q\n%s", c.size, code, c.want, stderr)
		}
	}
}

// TestReplayJSONKeepsBytes: replay's JSON once carried every chunk as a
// JSON string, which turns bytes that are not UTF-8 into U+FFFD (429,318
// of a megabyte of random bytes); those go in base64 now.
func TestReplayJSONKeepsBytes(t *testing.T) {
	for _, tc := range []struct {
		in        []byte
		text, b64 string
	}{
		{[]byte("GET k\r\n"), "GET k\r\n", ""},
		{[]byte("héllo"), "héllo", ""},
		{[]byte{0xff, 0x00, 'a'}, "", "/wBh"},
		{nil, "", ""},
	} {
		if text, b64 := jsonBytes(tc.in); text != tc.text || b64 != tc.b64 {
			t.Errorf("jsonBytes(%q) = %q, %q; want %q, %q", tc.in, text, b64, tc.text, tc.b64)
		}
	}
}

// TestReplayBypassFails: a plugin that fails under --plugin-bypass was
// logged but replayed as exit 0, "failed": false. It counts as a failure
// now, the output says the policy bypassed it, and the chunks after it are
// labelled as passing the failed plugin by.
func TestReplayBypassFails(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "c.pcapng")
	p, addr := startPlain(t, echoServer(t), "--dump", "none", "--capture", file)
	c := dial(t, addr)
	say(t, c, "a\n", "a\n")
	say(t, c, "!\n", "!\n")
	say(t, c, "b\n", "b\n")
	c.CloseWrite()
	io.ReadAll(c)
	c.Close()
	p.stderr.wait(t, `msg="connection closed"`)
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit %d\n%s", code, p.stderr)
	}
	crash := filepath.Join("..", "..", "host", "plugin", "testdata", "crash.wasm")
	code, stdout, stderr := runTunnel(t, "replay", file, "--plugin", crash, "--plugin-bypass", "--format", "json")
	if !strings.Contains(stdout, `"client -> server"`) {
		t.Errorf("the JSON does not spell \"client -> server\" as is (HTML-escaped?):\n%s", stdout)
	}
	if strings.Contains(stderr, `msg="connection closed"`) {
		t.Errorf("the replay's own proxy logged its connections (loopback ports, not the recording's):\n%s", stderr)
	}
	var out struct {
		Conns []struct {
			Steps []struct {
				In, Verdict string
			}
			PluginFailure string `json:"plugin_failure"`
		}
		Failed bool
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil || len(out.Conns) != 1 {
		t.Fatalf("replay: %v\n%s\n%s", err, stdout, stderr)
	}
	var got []string
	for _, s := range out.Conns[0].Steps {
		got = append(got, fmt.Sprintf("%q: %s", s.In, s.Verdict))
	}
	want := []string{`"a\n": replaced`, `"a\n": replaced`, `"!\n": plugin failed on it, bypassed: forwarded`, `"!\n": forwarded, bypassing the failed plugin`, `"b\n": forwarded, bypassing the failed plugin`, `"b\n": forwarded, bypassing the failed plugin`,
		`"": half-closed, bypassing the failed plugin`, `"": half-closed, bypassing the failed plugin`}
	if code != 1 || !out.Failed || !strings.Contains(out.Conns[0].PluginFailure, "policy bypass: the chain went on without it") || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("replay --plugin-bypass through crash: exit %d, failed %v, failure %q, verdicts:\n%s\nwant exit 1, failed, the policy named, verdicts:\n%s", code, out.Failed, out.Conns[0].PluginFailure, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
