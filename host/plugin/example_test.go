package plugin_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
)

// A tunnel whose client -> server stream goes through a WebAssembly plugin
// (testdata/answer.wat) that answers the client itself and closes. The
// route closes the plugin it was given once the Proxy is done with it.
func ExampleRuntime() {
	ctx := context.Background()
	rt, err := plugin.NewRuntime(ctx, plugin.RuntimeOptions{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	defer rt.Close(ctx)
	deny, err := rt.Load(ctx, "testdata/answer.wasm", plugin.Options{
		Name:        "deny",
		CallTimeout: 100 * time.Millisecond,
	})
	if err != nil {
		panic(err)
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0") // the target; the plugin never lets bytes reach it
	defer ln.Close()

	p := &host.Proxy{Logger: slog.New(slog.DiscardHandler)}
	err = p.Apply([]host.Route{{
		Name:      "guarded",
		Listen:    "127.0.0.1:0",
		Target:    ln.Addr().String(),
		Chain:     []host.Link{{Name: "deny", Hook: deny}},
		OnRelease: func() { deny.Close() },
	}})
	if err != nil {
		panic(err)
	}
	defer p.Close()

	c, _ := net.Dial("tcp", p.Addr("guarded").String())
	defer c.Close()
	c.Write([]byte("FLUSHALL\r\n"))
	reply, _ := io.ReadAll(c)
	fmt.Printf("%q\n", reply)
	// Output: "DENIED\n"
}
