package config

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// wasmServer serves body at /p.wasm over TLS on loopback and counts the
// requests; its client trusts the server's certificate.
func wasmServer(t *testing.T, body []byte) (url string, client *http.Client, hits *atomic.Int64) {
	t.Helper()
	hits = new(atomic.Int64)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/p.wasm" {
			http.NotFound(w, r)
			return
		}
		w.Write(body)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusting client's handshake
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL + "/p.wasm", srv.Client(), hits
}

// parseWith writes src as tunnel.hcl in a new directory and parses it with
// opts.
func parseWith(t *testing.T, src string, opts Options) (*File, hcl.Diagnostics) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "tunnel.hcl")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return Parse(path, opts)
}

func urlPlugin(url, sum string) string {
	s := "plugin \"p\" {\n  path = \"" + url + "\"\n"
	if sum != "" {
		s += "  sha256 = \"" + sum + "\"\n"
	}
	return s + "}\n"
}

// diagWith returns the first diagnostic whose summary is summary.
func diagWith(diags hcl.Diagnostics, summary string) *hcl.Diagnostic {
	for _, d := range diags {
		if d.Summary == summary {
			return d
		}
	}
	return nil
}

// TestPluginByURL: a plugin at an https URL with its sha256 is fetched
// once into the fetch directory, named by its hash, and built from there:
// a second parse (a reload, another replica) reads the copy. Then it
// compiles and runs like a local one.
func TestPluginByURL(t *testing.T) {
	t.Parallel()
	wasm, err := os.ReadFile("testdata/wasm/stamp.wasm")
	if err != nil {
		t.Fatal(err)
	}
	url, client, hits := wasmServer(t, wasm)
	dir := t.TempDir()
	opts := Options{FetchDir: dir, HTTPClient: client}
	sum := hashOf(wasm)
	src := urlPlugin(url, strings.ToUpper(sum)) + `
route "a" {
  listen = "127.0.0.1:0"
  target = "127.0.0.1:1"
  chain {
    plugin = plugin.p
    config = "a"
  }
}
`
	f, diags := parseWith(t, src, opts)
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	p := f.Plugins[0]
	if p.URL != url || p.SHA256 != sum || p.Path != filepath.Join(dir, sum+".wasm") {
		t.Fatalf("plugin = %+v, want URL %s, sha256 %s, path in %s", p, url, sum, dir)
	}
	if b, err := os.ReadFile(p.Path); err != nil || hashOf(b) != sum {
		t.Fatalf("the copy: %v, hash %s", err, hashOf(b))
	}
	if n := hits.Load(); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
	if _, diags := parseWith(t, src, opts); diags.HasErrors() || hits.Load() != 1 {
		t.Errorf("second parse: %v, %d requests; want no error and no new request", diags, hits.Load())
	}

	b := &Builder{Runtime: newRuntime(t)}
	defer b.Close(context.Background())
	set, diags := b.Build(context.Background(), f, nil)
	if diags.HasErrors() || set == nil || len(set.Routes) != 1 || len(set.Routes[0].Chain) != 1 {
		t.Fatalf("build: %v", diags)
	}
	set.Close()

	// A copy that was changed on disk is fetched again.
	os.WriteFile(p.Path, []byte("tampered"), 0o644)
	if _, diags := parseWith(t, src, opts); diags.HasErrors() || hits.Load() != 2 {
		t.Errorf("after tampering: %v, %d requests; want a new fetch", diags, hits.Load())
	}
	if b, _ := os.ReadFile(p.Path); hashOf(b) != sum {
		t.Errorf("the copy was not restored")
	}
}

// TestPluginByURLErrors: a hash mismatch is an error at sha256 naming both
// hashes, and nothing is kept; a missing sha256, a plain http URL, a
// malformed hash, a 404, a body over the limit, a server slower than the
// client's timeout and a certificate the client does not trust are errors
// that say so.
func TestPluginByURLErrors(t *testing.T) {
	t.Parallel()
	wasm := []byte("\x00asm\x01\x00\x00\x00")
	url, client, hits := wasmServer(t, wasm)
	good := hashOf(wasm)
	wrong := strings.Repeat("ab", 32)
	dir := t.TempDir()
	opts := Options{FetchDir: dir, HTTPClient: client}

	_, diags := parseWith(t, urlPlugin(url, wrong), opts)
	d := diagWith(diags, "Plugin hash mismatch")
	if d == nil || !strings.Contains(d.Detail, good) || !strings.Contains(d.Detail, wrong) || d.Subject == nil || d.Subject.Start.Line != 3 {
		t.Errorf("mismatch: %v, want an error on line 3 (sha256) naming %s and %s", diags, good, wrong)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the fetch directory has %d entries after a mismatch, want none", len(ents))
	}

	cases := []struct {
		name, src string
		opts      Options
		summary   string
		detail    string
	}{
		{"no sha256", urlPlugin(url, ""), opts, "Missing sha256", "give the module's SHA-256"},
		{"http", urlPlugin(strings.Replace(url, "https://", "http://", 1), good), opts, "Plugin URL is not https", "without TLS"},
		{"bad hash", urlPlugin(url, "abc"), opts, "Invalid sha256", "64 hexadecimal digits"},
		{"404", urlPlugin(strings.Replace(url, "p.wasm", "q.wasm", 1), good), opts, "Cannot fetch plugin", "404 Not Found"},
		{"untrusted", urlPlugin(url, good), Options{FetchDir: t.TempDir()}, "Cannot fetch plugin", "certificate"},
	}
	for _, c := range cases {
		_, diags := parseWith(t, c.src, c.opts)
		if d := diagWith(diags, c.summary); d == nil || d.Severity != hcl.DiagError || !strings.Contains(d.Detail, c.detail) {
			t.Errorf("%s: %v, want an error %q saying %q", c.name, diags, c.summary, c.detail)
		}
	}

	// Too big: refused from the Content-Length, before reading it.
	big := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1073741824")
		w.WriteHeader(200)
		w.Write([]byte("x"))
	}))
	defer big.Close()
	_, diags = parseWith(t, urlPlugin(big.URL+"/p.wasm", good), Options{FetchDir: t.TempDir(), HTTPClient: big.Client()})
	if d := diagWith(diags, "Cannot fetch plugin"); d == nil || !strings.Contains(d.Detail, "more than the 67108864 a fetched plugin may have") {
		t.Errorf("too big: %v", diags)
	}

	// Slow: the client's timeout ends the fetch.
	release := make(chan struct{})
	slow := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	sc := slow.Client()
	sc.Timeout = 200 * time.Millisecond
	began := time.Now()
	_, diags = parseWith(t, urlPlugin(slow.URL+"/p.wasm", good), Options{FetchDir: t.TempDir(), HTTPClient: sc})
	if d := diagWith(diags, "Cannot fetch plugin"); d == nil || !strings.Contains(d.Detail, "Timeout") {
		t.Errorf("slow: %v", diags)
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("a slow server held the parse for %v", took)
	}
	if hits.Load() == 0 {
		t.Errorf("no request reached the server")
	}
}

// TestPluginLocalSHA256: sha256 pins a local file too; a built-in plugin
// has none to pin.
func TestPluginLocalSHA256(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyFile(t, "testdata/wasm/stamp.wasm", filepath.Join(dir, "stamp.wasm"))
	b, _ := os.ReadFile(filepath.Join(dir, "stamp.wasm"))
	write := func(sum string) hcl.Diagnostics {
		os.WriteFile(filepath.Join(dir, "tunnel.hcl"), []byte("plugin \"p\" {\n  path = \"stamp.wasm\"\n  sha256 = \""+sum+"\"\n}\n"), 0o644)
		_, diags := Parse(filepath.Join(dir, "tunnel.hcl"), Options{})
		return diags
	}
	if diags := write(hashOf(b)); diags.HasErrors() {
		t.Errorf("right hash: %v", diags)
	}
	if d := diagWith(write(strings.Repeat("0", 64)), "Plugin hash mismatch"); d == nil || !strings.Contains(d.Detail, hashOf(b)) {
		t.Errorf("wrong hash of a local file: no mismatch naming %s", hashOf(b))
	}
	_, diags := parseWith(t, "plugin \"p\" {\n  builtin = \"noop\"\n  sha256 = \""+strings.Repeat("0", 64)+"\"\n}\n", Options{})
	if diagWith(diags, "sha256 of a built-in plugin") == nil {
		t.Errorf("sha256 on a built-in plugin: %v", diags)
	}
}
