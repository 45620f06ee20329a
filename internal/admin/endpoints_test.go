package admin_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/admin"
)

// TestEndpoints checks every endpoint's status, type and body, as curl sees
// them, with pprof off and on.
func TestEndpoints(t *testing.T) {
	cfg := map[string]any{"routes": []any{map[string]any{"name": "redis", "listen": "127.0.0.1:7379", "chain": []any{"deny"}}}}
	src := &source{p: &host.Proxy{}, ready: errors.New("no configuration is running yet"), config: cfg}
	for _, pprof := range []bool{false, true} {
		base := serve(t, src, admin.Options{Pprof: pprof})
		src.setReady(errors.New("no configuration is running yet"))
		index := "/metrics\n/healthz\n/readyz\n/config\n/connections\n"
		pprofStatus := http.StatusNotFound
		if pprof {
			index += "/debug/pprof/\n"
			pprofStatus = http.StatusOK
		}
		for _, tc := range []struct {
			method, path string
			status       int
			ctype        string
			body         string // exact; "" checks nothing
			contains     string
			ready        error // set before the request
		}{
			{"GET", "/healthz", 200, "text/plain; charset=utf-8", "ok\n", "", nil},
			{"HEAD", "/healthz", 200, "text/plain; charset=utf-8", "", "", nil},
			{"GET", "/readyz", 503, "text/plain; charset=utf-8", "not ready: no configuration is running yet\n", "", errors.New("no configuration is running yet")},
			{"GET", "/readyz", 200, "text/plain; charset=utf-8", "ready\n", "", nil},
			{"GET", "/readyz", 503, "text/plain; charset=utf-8", "not ready: draining\n", "", errors.New("draining")},
			{"GET", "/", 200, "text/plain; charset=utf-8", index, "", nil},
			{"GET", "/metrics", 200, "text/plain; version=0.0.4; charset=utf-8; escaping=underscores", "", "# TYPE tunnel_build_info gauge", nil},
			{"POST", "/healthz", 405, "text/plain; charset=utf-8", "Method Not Allowed\n", "", nil},
			{"GET", "/drain", 405, "text/plain; charset=utf-8", "Method Not Allowed\n", "", nil},
			{"GET", "/nothing", 404, "text/plain; charset=utf-8", "404 page not found\n", "", nil},
			{"GET", "/debug/pprof/", pprofStatus, "text/", "", map[bool]string{false: "404 page not found", true: "goroutine"}[pprof], nil},
			{"GET", "/debug/pprof/cmdline", pprofStatus, "text/plain", "", "", nil},
		} {
			src.setReady(tc.ready)
			status, ctype, body := get(t, tc.method, base+tc.path)
			name := tc.method + " " + tc.path
			if pprof {
				name += " (pprof)"
			}
			if status != tc.status {
				t.Errorf("%s: status %d, want %d (body %q)", name, status, tc.status, body)
			}
			if !strings.HasPrefix(ctype, tc.ctype) {
				t.Errorf("%s: Content-Type %q, want %q", name, ctype, tc.ctype)
			}
			if tc.body != "" && body != tc.body {
				t.Errorf("%s: body %q, want %q", name, body, tc.body)
			}
			if !strings.Contains(body, tc.contains) {
				t.Errorf("%s: body does not contain %q:\n%s", name, tc.contains, body)
			}
		}
		// /config is the caller's value as JSON.
		status, ctype, body := get(t, "GET", base+"/config")
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); status != 200 || ctype != "application/json" || err != nil {
			t.Fatalf("GET /config: %d %q %v\n%s", status, ctype, err, body)
		}
		if !reflect.DeepEqual(got, cfg) {
			t.Errorf("GET /config: %v, want %v", got, cfg)
		}
	}
}

// TestConfigNotJSON: a configuration that cannot be encoded is a 500 that
// says why, not a broken body.
func TestConfigNotJSON(t *testing.T) {
	base := serve(t, &source{p: &host.Proxy{}, config: func() {}}, admin.Options{})
	status, _, body := get(t, "GET", base+"/config")
	if status != http.StatusInternalServerError || !strings.HasPrefix(body, "encoding the configuration: ") {
		t.Errorf("GET /config: %d %q, want 500 and the encoding error", status, body)
	}
}

// TestListenError: an address in use is an error that names the endpoint.
func TestListenError(t *testing.T) {
	s, err := admin.Listen("127.0.0.1:0", http.NotFoundHandler(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	_, err = admin.Listen(s.Addr().String(), http.NotFoundHandler(), nil)
	if err == nil || !strings.HasPrefix(err.Error(), "admin endpoint: listen tcp "+s.Addr().String()) {
		t.Errorf("second Listen on %s: %v, want the address in use", s.Addr(), err)
	}
}
