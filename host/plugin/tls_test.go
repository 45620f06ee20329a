package plugin_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	tn "github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/internal/testcert"
)

// A guest reads the client's TLS session through conn_info keys 4 to 9 on
// a route that terminates mutual TLS; key 10 does not exist.
func TestWasmConnInfoTLS(t *testing.T) {
	t.Parallel()
	rt, _ := wasmRuntime(t)
	ctx := context.Background()
	m, err := rt.Compile(ctx, "tlsinfo", wasmGuest(t, "tlsinfo"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	p, err := m.NewPlugin(ctx, plugin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()

	ca := testcert.NewCA(t, "test CA")
	r := tn.Route("mtls", tn.Serve(t, tn.Echo).Addr(), host.Link{Name: "tlsinfo", Hook: p})
	r.TLS = &tls.Config{
		Certificates: []tls.Certificate{ca.Server(t).TLS},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		NextProtos:   []string{"redis", "h2"},
	}
	px, _ := tn.Proxy(t, r)
	alice := ca.Client(t, "alice", "alice.example", "spiffe://example.org/alice")
	c := tls.Client(tn.Dial(t, px.Addr("mtls").String()), &tls.Config{
		RootCAs: ca.Pool(), ServerName: "localhost", NextProtos: []string{"redis"}, Certificates: []tls.Certificate{alice.TLS},
	})
	defer c.Close()
	br := bufio.NewReader(c)
	var got []string
	for range 7 {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, strings.TrimSuffix(line, "\n"))
	}
	want := []string{"localhost", "redis", "1.3", "CN=alice,O=tunnel tests", "alice.example,spiffe://example.org/alice", "true", "-1"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("conn_info keys 4..10 gave\n%q\nwant\n%q", got, want)
	}
}
