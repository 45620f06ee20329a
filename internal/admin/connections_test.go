package admin_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/admin"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

// TestConnections: /connections lists the open connections of both
// engines (a plain route on the event loop, a filtered one on goroutines),
// with their bytes so far, paged; a bad page is a 400 naming the parameter.
func TestConnections(t *testing.T) {
	target := echo(t)
	identity := host.ChunkFunc(func(_ *host.ConnInfo, _ host.Direction, b []byte) ([]byte, error) { return b, nil })
	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	t.Cleanup(func() { p.Close() })
	if err := p.Apply([]host.Route{
		{Name: "plain", Listen: "127.0.0.1:0", Target: target},
		{Name: "filtered", Listen: "127.0.0.1:0", Target: target, Chain: []host.Link{{Name: "id", Hook: identity}}},
	}); err != nil {
		t.Fatal(err)
	}
	for _, route := range []string{"plain", "filtered"} {
		c, err := net.DialTimeout("tcp", p.Addr(route).String(), timeout)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(timeout))
		c.Write([]byte("hello"))
		if _, err := io.ReadFull(c, make([]byte, 5)); err != nil {
			t.Fatal(err)
		}
	}
	base := serve(t, &source{p: p}, admin.Options{})

	type page struct {
		Total, Offset int
		Connections   []struct {
			ID                    uint64
			Route, Client, Target string
			AgeSeconds            float64 `json:"age_seconds"`
			BytesFromClient       int64   `json:"bytes_from_client"`
			BytesToClient         int64   `json:"bytes_to_client"`
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		status, ctype, body := get(t, "GET", base+"/connections")
		var pg page
		if status != 200 || ctype != "application/json" || json.Unmarshal([]byte(body), &pg) != nil {
			t.Fatalf("GET /connections: %d %s %s", status, ctype, body)
		}
		ok := pg.Total == 2 && len(pg.Connections) == 2
		for i, c := range pg.Connections {
			ok = ok && c.ID == uint64(i+1) && c.Route == []string{"plain", "filtered"}[i] && c.Target == target &&
				c.BytesFromClient == 5 && c.BytesToClient == 5 && c.AgeSeconds >= 0 && c.Client != ""
		}
		if ok {
			break
		}
		if time.Now().After(deadline) { // bytes are counted when a write returns: poll
			t.Fatalf("GET /connections:\n%s", body)
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, _, body := get(t, "GET", base+"/connections?limit=1&offset=1")
	var pg page
	if json.Unmarshal([]byte(body), &pg); status != 200 || pg.Total != 2 || pg.Offset != 1 || len(pg.Connections) != 1 || pg.Connections[0].Route != "filtered" {
		t.Errorf("limit=1&offset=1: %d %s", status, body)
	}
	if status, _, body := get(t, "GET", base+"/connections?limit=many"); status != 400 || body != "limit=\"many\": want a whole number from 0 to 1000\n" {
		t.Errorf("limit=many: %d %q", status, body)
	}
}

// TestDrain: POST /drain turns /readyz to 503, says so in the log (an
// operator's test found it silent), and leaves the routes serving.
func TestDrain(t *testing.T) {
	src := &source{p: &host.Proxy{}}
	var log testkit.Buffer
	base := serve(t, src, admin.Options{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if status, _, _ := get(t, "GET", base+"/readyz"); status != 200 {
		t.Fatalf("/readyz before: %d", status)
	}
	if status, _, body := get(t, "POST", base+"/drain"); status != 202 || body != "draining: /readyz answers 503 from now on; the routes keep accepting until SIGTERM\n" {
		t.Fatalf("POST /drain: %d %q", status, body)
	}
	if status, _, body := get(t, "GET", base+"/readyz"); status != 503 || body != "not ready: draining\n" {
		t.Fatalf("/readyz after: %d %q", status, body)
	}
	if !strings.Contains(log.String(), `msg="draining: /readyz answers 503 from now on; the routes keep accepting until SIGTERM" from=127.0.0.1:`) {
		t.Errorf("log: %q", log.String())
	}
}
