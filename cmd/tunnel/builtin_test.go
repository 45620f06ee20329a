package main

// Tests of what a new user does first: list and use the built-in plugins,
// run the demo, and validate the repository's tunnel.hcl in a fresh clone.

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/internal/testkit"
)

func TestPluginsSubcommand(t *testing.T) {
	code, stdout, stderr := runTunnel(t, "plugins")
	want := `Built-in plugins (in tunnel.hcl: plugin "NAME" { builtin = "NAME" }; on the command line: --plugin builtin:NAME):
  codec      base64 or XOR encode/decode pair between two tunnels
  deny       blocks patterns (e.g. FLUSHALL): drop and reply, or close
  dump       hex or text dump of every chunk to stdout or the log
  noop       forwards everything; the baseline for benchmarks
  ratelimit  per client IP: connections and bytes per second (shared state), reply and close or delay
  redact     masks card numbers (Luhn), bearer tokens and literals in either direction, across chunks
  replace    find/replace byte strings, also across chunk boundaries
  resp       Redis filter parsing RESP: blocks (error reply, connection kept) or renames commands
  router     chooses the target from the first bytes: TLS SNI, HTTP Host, SSH, Redis (dial = "plugin")
  toxics     network faults per direction: latency, bandwidth, slicer, slow close, timeout, reset; by probability or trigger
`
	if code != 0 || stdout != want || stderr != "" {
		t.Errorf("tunnel plugins: exit %d, stdout:\n%s\nwant:\n%s\nstderr: %q", code, stdout, want, stderr)
	}
	// tunnel validate --help lists them too.
	code, _, stderr = runTunnel(t, "validate", "--help")
	if code != 0 || !strings.Contains(stderr, want) {
		t.Errorf("tunnel validate --help: exit %d, stderr:\n%s", code, stderr)
	}
	code, _, stderr = runTunnel(t, "plugins", "deny")
	if code != 2 || stderr != "tunnel plugins: unexpected argument \"deny\"\n" {
		t.Errorf("tunnel plugins deny: exit %d, stderr %q", code, stderr)
	}
}

// TestPluginFlagBuiltin: --plugin builtin:NAME runs the embedded plugin
// with its --plugin-config, with no file on disk.
func TestPluginFlagBuiltin(t *testing.T) {
	t.Chdir(t.TempDir())
	p, addr := startPlain(t, echoServer(t), "--dump", "none",
		"--plugin", "builtin:replace", "--plugin-config", `{"from":"cat","to":"dog"}`)
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(cliTimeout))
	if _, err := c.Write([]byte("a cat\n")); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if string(got) != "a dog\n" || err != nil {
		t.Errorf("through builtin:replace and an echo server: %q (%v), want %q", got, err, "a dog\n")
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d after SIGINT; stderr:\n%s", code, p.stderr)
	}
}

func TestPluginFlagUnknownBuiltin(t *testing.T) {
	code, _, stderr := runTunnel(t, "--from", "127.0.0.1:0", "--to", "127.0.0.1:1", "--plugin", "builtin:dney")
	want := `invalid value "builtin:dney" for flag -plugin: no built-in plugin "dney"; the built-in plugins are codec, deny, dump, noop, ratelimit, redact, replace, resp, router, toxics` + "\n"
	if code != 2 || !strings.HasPrefix(stderr, want) {
		t.Errorf("exit %d, stderr:\n%s\nwant it to start with:\n%s", code, stderr, want)
	}
}

// demoInput is what README.md tells a newcomer to type into the demo.
const demoInput = `printf 'PING\r\nSET greeting hello\r\nFLUSHALL\r\nGET greeting\r\nQUIT\r\n' | nc 127.0.0.1 7379`

// TestDemo runs README.md's first command, `tunnel demo`, and sends what
// README says to type: the resp plugin keeps FLUSHALL from the server and
// puts its error in FLUSHALL's place among the replies, the built-in server
// answers the rest, and greeting survives. The dump shows the traffic on
// stdout and the block is logged.
func TestDemo(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"go run ./cmd/tunnel demo", demoInput} {
		if !bytes.Contains(readme, []byte(s)) {
			t.Errorf("README.md does not say %q", s)
		}
	}
	p := start(t, "demo", "--listen", "127.0.0.1:0")
	addr := p.stderr.wait(t, `msg=listening .*addr=(127\.0\.0\.1:\d+)`)[1]
	p.stderr.wait(t, `try, in another terminal:\n  printf 'PING\\r\\nSET greeting hello\\r\\nFLUSHALL\\r\\nGET greeting\\r\\nQUIT\\r\\n' \| nc 127\.0\.0\.1 PORT  \(PORT: the one the "listening" line below names\)\n`)
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(cliTimeout))
	if _, err := c.Write([]byte("PING\r\nSET greeting hello\r\nFLUSHALL\r\nGET greeting\r\nQUIT\r\n")); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	want := "+PONG\r\n+OK\r\n-ERR command 'flushall' is not allowed by the tunnel\r\n$5\r\nhello\r\n+OK\r\n"
	if string(got) != want || err != nil {
		t.Errorf("the client got %q (%v), want %q", got, err, want)
	}
	p.stderr.wait(t, `level=WARN msg="resp: blocked \\"flushall\\"" plugin=resp conn=1`)
	p.stdout.wait(t, `#1 client -> server 56 bytes\nPING\\r\\n\nSET greeting hello\\r\\n\nFLUSHALL\\r\\n\n`)
	c.Close() // else the shutdown waits out its grace period for it
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d after SIGINT; stderr:\n%s", code, p.stderr)
	}
}

// TestFreshClone does what a new user does after `git clone`: `tunnel
// validate` in the clone, which holds only committed files, must pass with
// no build step (the repository's tunnel.hcl uses built-in plugins). The
// binary is the one TestMain built from this checkout, so the test also
// checks that the clone's embedded plugins are the ones it was built with.
func TestFreshClone(t *testing.T) {
	t.Parallel()
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but not in a git checkout: %v", err)
		}
		t.Skipf("not in a git checkout (git rev-parse: %v): nothing to clone", err)
	}
	root := strings.TrimSpace(string(top))
	clone := filepath.Join(t.TempDir(), "tunnel")
	if out, err := exec.Command("git", "clone", "-q", root, clone).CombinedOutput(); err != nil {
		t.Fatalf("git clone %s: %v\n%s", root, err, out)
	}
	cmd := exec.Command(tunnelBin, "validate")
	cmd.Dir = clone
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	if err := cmd.Run(); err != nil {
		t.Fatalf("tunnel validate in a fresh clone: %v\nstderr:\n%s", err, stderr.String())
	}
	if want := "tunnel.hcl: valid (2 route(s), 1 plugin(s), 0 warning(s))\n"; stdout.String() != want || stderr.Len() != 0 {
		t.Errorf("tunnel validate in a fresh clone: stdout %q, want %q; stderr:\n%s", stdout.String(), want, stderr.String())
	}
	embedded, _ := filepath.Glob(filepath.Join(root, "plugins/builtin/wasm/*"))
	if len(embedded) == 0 {
		t.Fatal("no plugins/builtin/wasm files")
	}
	for _, f := range embedded {
		rel, _ := filepath.Rel(root, f)
		mine, err1 := os.ReadFile(f)
		cloned, err2 := os.ReadFile(filepath.Join(clone, rel))
		if err1 != nil || err2 != nil || !bytes.Equal(mine, cloned) {
			t.Errorf("%s differs from its committed version (or is not committed): commit it (%v, %v)", rel, err1, err2)
		}
	}
}

// TestRatelimitPacesAnUpload: builtin:ratelimit on the plain route (which
// runs on the event loop) slows a client that uploads faster than its rate
// down to the rate, by pausing the tunnel's reads of it, and every byte
// arrives. Before, the plugin held what the client kept sending and closed
// the connection past max_delayed (here 256 KiB, an eighth of the upload).
func TestRatelimitPacesAnUpload(t *testing.T) {
	t.Parallel()
	p, addr := startPlain(t, echoServer(t), "--dump", "none",
		"--plugin", "builtin:ratelimit", "--plugin-config", `{"bytes_per_second":1048576,"bytes_burst":65536,"max_delayed":262144}`)
	c := dial(t, addr)
	c.SetDeadline(time.Now().Add(cliTimeout))
	out := make([]byte, 2<<20)
	rand.NewChaCha8([32]byte{1}).Read(out)
	start := time.Now()
	wait := testkit.Upload(c, out)
	got, err := io.ReadAll(c)
	took := time.Since(start)
	if err := wait(); err != nil {
		t.Fatalf("upload: %v", err)
	}
	if err != nil || sha256.Sum256(got) != sha256.Sum256(out) {
		t.Fatalf("echo of a 2 MiB upload: %d bytes, %v; want all of it back", len(got), err)
	}
	// 2 MiB at 1 MiB/s after a 64 KiB burst: at least 1.9 s however fast
	// the machine (a lower bound only: a slow machine takes longer).
	if took < 1900*time.Millisecond {
		t.Errorf("the upload took %v: faster than the rate of 1 MiB/s", took)
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.exitCode(t); code != 0 {
		t.Errorf("exit %d after SIGINT; stderr:\n%s", code, p.stderr)
	}
}
