package admin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/internal/admin"
	"github.com/tunnelwasm/tunnel/internal/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// timeout bounds every wait for an event.
const timeout = 10 * time.Second

// source is an admin.Source over a real Proxy, with readiness set by the test.
type source struct {
	p      *host.Proxy
	mu     sync.Mutex
	ready  error
	config any
}

func (s *source) Stats() []host.RouteStats      { return s.p.Stats() }
func (s *source) Connections() []host.ConnStats { return s.p.Connections() }
func (s *source) Config() any                   { return s.config }
func (s *source) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}
func (s *source) Drain() { s.setReady(errors.New("draining")) }
func (s *source) setReady(err error) {
	s.mu.Lock()
	s.ready = err
	s.mu.Unlock()
}

// closes counts the Proxy's "connection closed" log records per route and
// lets a test wait for a count: the event that a connection's counters are
// final.
type closes struct {
	mu      sync.Mutex
	n       map[string]int
	changed chan struct{}
}

func newCloses() *closes { return &closes{n: map[string]int{}, changed: make(chan struct{})} }

func (c *closes) Enabled(context.Context, slog.Level) bool { return true }
func (c *closes) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *closes) WithGroup(string) slog.Handler            { return c }
func (c *closes) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "connection closed" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "route" {
			c.mu.Lock()
			c.n[a.Value.String()]++
			close(c.changed)
			c.changed = make(chan struct{})
			c.mu.Unlock()
		}
		return true
	})
	return nil
}

// wait blocks until n connections of route have closed.
func (c *closes) wait(t *testing.T, route string, n int) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		got, ch := c.n[route], c.changed
		c.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("route %s: %d connection(s) closed after %v, want %d", route, got, timeout, n)
		}
	}
}

// echo serves a loopback echo server until the test ends.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	return ln.Addr().String()
}

// serve starts the handler on 127.0.0.1:0 and returns its base URL.
func serve(t *testing.T, src admin.Source, opts admin.Options) string {
	t.Helper()
	s, err := admin.Listen("127.0.0.1:0", admin.NewHandler(src, opts), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		http.DefaultClient.CloseIdleConnections()
	})
	return "http://" + s.Addr().String()
}

// get fetches url and returns the status, the Content-Type and the body.
func get(t *testing.T, method, url string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// scrape fetches /metrics and parses it with Prometheus's own text parser.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	status, ctype, body := get(t, "GET", base+"/metrics")
	if status != http.StatusOK || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("/metrics: %d %q", status, ctype)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the series of family name whose labels are
// exactly labels (name=value pairs), and checks the family's type.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, typ dto.MetricType, labels ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric family %s", name)
	}
	if f.GetType() != typ {
		t.Errorf("%s is a %v, want a %v", name, f.GetType(), typ)
	}
	if f.GetHelp() == "" {
		t.Errorf("%s has no help text", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch typ {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// routeMetrics are the tunnel_* values of one route.
type routeMetrics struct {
	total, active, errors, dialFailures, idle  float64
	fromClient, toServer, fromServer, toClient float64
}

func metricsOf(t *testing.T, fams map[string]*dto.MetricFamily, route string) routeMetrics {
	t.Helper()
	c, g := dto.MetricType_COUNTER, dto.MetricType_GAUGE
	return routeMetrics{
		total:        value(t, fams, "tunnel_connections_total", c, "route", route),
		active:       value(t, fams, "tunnel_connections_active", g, "route", route),
		errors:       value(t, fams, "tunnel_connection_errors_total", c, "route", route),
		dialFailures: value(t, fams, "tunnel_upstream_connect_failures_total", c, "route", route),
		idle:         value(t, fams, "tunnel_idle_timeouts_total", c, "route", route),
		fromClient:   value(t, fams, "tunnel_bytes_received_total", c, "route", route, "peer", "client"),
		toServer:     value(t, fams, "tunnel_bytes_sent_total", c, "route", route, "peer", "server"),
		fromServer:   value(t, fams, "tunnel_bytes_received_total", c, "route", route, "peer", "server"),
		toClient:     value(t, fams, "tunnel_bytes_sent_total", c, "route", route, "peer", "client"),
	}
}

// TestMetricsAfterTraffic runs known traffic through a real Proxy, on both
// engines (a plain route on the event loop, a dumped one on goroutines),
// scrapes /metrics while the connections are open and after they closed,
// and checks every tunnel_* value; a refused dial and an idle timeout show
// in their own counters.
func TestMetricsAfterTraffic(t *testing.T) {
	target := echo(t)
	log := newCloses()
	p := &host.Proxy{Logger: slog.New(log)}
	routes := []host.Route{
		{Name: "plain", Listen: "127.0.0.1:0", Target: target},
		{Name: "dumped", Listen: "127.0.0.1:0", Target: target, Chain: []host.Link{{Name: "dump", Hook: host.Dump(io.Discard, host.DumpHex)}}},
		{Name: "down", Listen: "127.0.0.1:0", Target: testkit.Refusing(t)},
		{Name: "idle", Listen: "127.0.0.1:0", Target: target, IdleTimeout: 50 * time.Millisecond},
	}
	if err := p.Apply(routes); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	base := serve(t, &source{p: p}, admin.Options{Version: "v9.9.9-test"})

	sizes := []int{1, 1000, 100_000} // 101,001 bytes each way per route
	const sum = 101_001
	for _, route := range []string{"plain", "dumped"} {
		t.Run(route, func(t *testing.T) {
			var conns []net.Conn
			for _, n := range sizes {
				c, err := net.Dial("tcp", p.Addr(route).String())
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				conns = append(conns, c)
				msg := []byte(strings.Repeat("x", n))
				go c.Write(msg)
				if _, err := io.ReadFull(c, make([]byte, n)); err != nil {
					t.Fatal(err)
				}
			}
			// Open connections: their bytes are counted while they live.
			// A write is counted when it returns, which may be just after
			// the client has read its bytes: scrape until it is.
			want := routeMetrics{total: 3, active: 3, fromClient: sum, toServer: sum, fromServer: sum, toClient: sum}
			eventually(t, base, route, want)
			for _, c := range conns {
				c.Close()
			}
			log.wait(t, route, 3)
			want.active = 0
			if got := metricsOf(t, scrape(t, base), route); got != want {
				t.Errorf("closed connections: %+v, want %+v", got, want)
			}
		})
	}

	// A refused dial: an error and a connect failure. The tunnel resets
	// the client, maybe before its connect returns.
	expectClosed(t, p.Addr("down").String())
	log.wait(t, "down", 1)
	// An idle connection, closed by the tunnel.
	expectClosed(t, p.Addr("idle").String())
	log.wait(t, "idle", 1)

	fams := scrape(t, base)
	if got, want := metricsOf(t, fams, "down"), (routeMetrics{total: 1, errors: 1, dialFailures: 1}); got != want {
		t.Errorf("down: %+v, want %+v", got, want)
	}
	if got, want := metricsOf(t, fams, "idle"), (routeMetrics{total: 1, errors: 1, idle: 1}); got != want {
		t.Errorf("idle: %+v, want %+v", got, want)
	}
	// Four routes, nine series each: no other label values.
	for _, name := range []string{"tunnel_connections_total", "tunnel_bytes_received_total", "tunnel_bytes_sent_total"} {
		want := 4
		if strings.HasPrefix(name, "tunnel_bytes") {
			want = 8
		}
		if n := len(fams[name].GetMetric()); n != want {
			t.Errorf("%s has %d series, want %d", name, n, want)
		}
	}
	info := fams["tunnel_build_info"].GetMetric()
	if len(info) != 1 || info[0].GetGauge().GetValue() != 1 ||
		label(info[0], "version") != "v9.9.9-test" || label(info[0], "goversion") != runtime.Version() || label(info[0], "revision") == "" {
		t.Errorf("tunnel_build_info = %v, want 1 with version v9.9.9-test, goversion %s and a revision", info, runtime.Version())
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "process_open_fds"} {
		if fams[name] == nil {
			t.Errorf("no %s: the Go or process collector is missing", name)
		}
	}
}

// eventually scrapes until route's metrics are want, or fails after the
// timeout with the last values seen.
func eventually(t *testing.T, base, route string, want routeMetrics) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := metricsOf(t, scrape(t, base), route)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("route %s: %+v after %v, want %+v", route, got, timeout, want)
		}
		runtime.Gosched()
	}
}

// expectClosed connects to addr and fails unless the tunnel closes the
// connection (EOF or reset) without sending anything.
func expectClosed(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial %s: %v", addr, err)
		}
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	rest, err := io.ReadAll(c)
	if len(rest) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("read %q, %v; want the connection closed", rest, err)
	}
}

// label returns the value of m's label name.
func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
