package config

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Plugins by URL: a plugin block's path may be an https:// URL, with the
// SHA-256 of the module in sha256 (required, like Envoy's remote WASM).
// Parse fetches it once into a directory of its own (Options.FetchDir),
// named by the hash, and the plugin is then that local file: a reload, a
// restart or another replica with the same directory reads it from there
// and never fetches again. A Kubernetes ConfigMap stops at 1 MiB and a Go
// plugin is 2 to 3 MB: this is how a ConfigMap's tunnel.hcl names one.
const (
	// MaxFetchSize bounds a plugin fetched by URL.
	MaxFetchSize = 64 << 20
	// FetchTimeout bounds the fetch of one plugin, connection to last byte.
	FetchTimeout = 60 * time.Second
)

// isURL reports whether a plugin path names a URL rather than a file.
func isURL(path string) bool {
	return strings.HasPrefix(path, "https://") || strings.HasPrefix(path, "http://")
}

// fetchDir is where fetched plugins are kept: Options.FetchDir, or a
// directory in the system's temporary directory.
func (o Options) fetchDir() string {
	if o.FetchDir != "" {
		return o.FetchDir
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("tunnel-plugins-%d", os.Getuid()))
}

// pluginSHA256 reads the sha256 attribute: 64 hex digits, lower-cased.
// An absent one returns "" and true.
func (d *decoder) pluginSHA256(pb *pluginBody) (string, bool) {
	if _, absent := d.absent(pb.SHA256); absent {
		return "", true
	}
	v, ok := d.str(pb.SHA256, "sha256")
	if !ok {
		return "", false
	}
	v = strings.ToLower(strings.TrimPrefix(v, "sha256:"))
	if b, err := hex.DecodeString(v); err != nil || len(b) != sha256.Size {
		d.errorf(pb.SHA256.Range(), "Invalid sha256", "sha256 is the module's SHA-256 as 64 hexadecimal digits (sha256sum plugin.wasm prints it), not %q.", v)
		return "", false
	}
	return v, true
}

// pluginURL makes p the local copy of the module at url: fetched unless the
// fetch directory already has a file of the right hash.
func (d *decoder) pluginURL(pb *pluginBody, p *Plugin, url string) {
	p.URL = url
	if !strings.HasPrefix(url, "https://") {
		d.errorf(pb.Path.Range(), "Plugin URL is not https", "Plugin %q: %s would be fetched without TLS, so anyone on the way could change it; serve it over https://.", p.Name, url)
		return
	}
	sum, ok := d.pluginSHA256(pb)
	if !ok {
		return
	}
	if sum == "" {
		d.errorf(pb.Path.Range(), "Missing sha256", "Plugin %q is fetched from %s: give the module's SHA-256 too, so that what runs is what you checked: sha256 = \"...\" (sha256sum plugin.wasm prints it).", p.Name, url)
		return
	}
	p.SHA256 = sum
	path, err := fetchPlugin(d.opts, url, sum)
	if err != nil {
		var mm *hashMismatch
		rng := pb.Path.Range()
		if errors.As(err, &mm) {
			rng = pb.SHA256.Range()
			d.errorf(rng, "Plugin hash mismatch", "Plugin %q: the module at %s has SHA-256 %s, but sha256 = %q. Check the URL, or the hash if the module was meant to change.", p.Name, url, mm.got, sum)
			return
		}
		d.errorf(rng, "Cannot fetch plugin", "Plugin %q: %v.", p.Name, err)
		return
	}
	p.Path = path
}

// hashMismatch is a fetched module whose hash is not the one expected.
type hashMismatch struct{ got, want string }

func (e *hashMismatch) Error() string {
	return fmt.Sprintf("sha256 mismatch: got %s, want %s", e.got, e.want)
}

// fetchPlugin returns the path of a file in o's fetch directory holding the
// module at url, whose SHA-256 is sum: the file already there when its
// content has that hash, otherwise a fresh download (at most MaxFetchSize
// bytes within FetchTimeout), written atomically.
func fetchPlugin(o Options, url, sum string) (string, error) {
	dir := o.fetchDir()
	path := filepath.Join(dir, sum+".wasm")
	if b, err := readLimited(path, MaxFetchSize); err == nil && hashOf(b) == sum {
		return path, nil
	}
	client := o.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(context.Background(), FetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("fetching %s: %w", url, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetching: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetching %s: %s", url, resp.Status)
	}
	if resp.ContentLength > MaxFetchSize {
		return "", fmt.Errorf("fetching %s: %d bytes, more than the %d a fetched plugin may have", url, resp.ContentLength, MaxFetchSize)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxFetchSize+1))
	if err != nil {
		return "", fmt.Errorf("fetching %s: %w", url, err)
	}
	if len(b) > MaxFetchSize {
		return "", fmt.Errorf("fetching %s: more than the %d bytes a fetched plugin may have", url, MaxFetchSize)
	}
	if got := hashOf(b); got != sum {
		return "", &hashMismatch{got: got, want: sum}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("keeping the fetched plugin: %w", err)
	}
	tmp, err := os.CreateTemp(dir, sum+".*.tmp")
	if err != nil {
		return "", fmt.Errorf("keeping the fetched plugin: %w", err)
	}
	_, werr := tmp.Write(b)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), path)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("keeping the fetched plugin: %w", werr)
	}
	return path, nil
}

// hashOf is the hex SHA-256 of b.
func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkLocalSHA256 checks the sha256 attribute of a plugin block whose path
// is a local file: the file must have that hash (a pinned local plugin).
func (d *decoder) checkLocalSHA256(pb *pluginBody, p *Plugin) {
	sum, ok := d.pluginSHA256(pb)
	if !ok || sum == "" {
		return
	}
	p.SHA256 = sum
	b, err := readLimited(p.Path, maxWasmFile)
	if err != nil {
		return // reported when the plugin is built
	}
	if got := hashOf(b); got != sum {
		d.errorf(pb.SHA256.Range(), "Plugin hash mismatch", "Plugin %q: %s has SHA-256 %s, but sha256 = %q.", p.Name, p.Path, got, sum)
	}
}
