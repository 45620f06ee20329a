package sdktest_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
)

// holder holds everything it is shown, or returns a bogus action for "bad".
type holder struct{ sdk.DefaultHandler }

func (holder) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if bytes.Equal(data, []byte("bad")) {
		return 7
	}
	if bytes.HasPrefix(data, []byte("fwd")) {
		return sdk.Forward
	}
	return sdk.Hold
}

func init() {
	sdk.SetBufferSize(1) // raised to 1 KiB
	sdk.Register(func([]byte) (sdk.Plugin, error) { return sdk.Shared(holder{}), nil })
}

// fakeTB records the first fatal failure and stops the goroutine, as
// testing.T does.
type fakeTB struct {
	testing.TB
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper()           {}
func (f *fakeTB) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }
func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.fatal = fmt.Sprintf(format, a...)
	runtime.Goexit()
}

// fails runs body with a fake TB and returns its fatal message.
func fails(t *testing.T, body func(tb testing.TB)) string {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	for _, fn := range f.cleanups {
		fn()
	}
	return f.fatal
}

func TestEmulatorCatchesMistakes(t *testing.T) {
	for _, tc := range []struct {
		name, want string
		body       func(p sdktest.Plugin)
	}{
		{"hold with a full buffer", "ABI violation: OnData returned Hold for 1024 bytes, a full input buffer (1024 bytes)", func(p sdktest.Plugin) {
			p.Open().Write(sdk.ClientToServer, make([]byte, 2000))
		}},
		{"not an action", "sdktest: tunnel_on_data returned 7, not an action", func(p sdktest.Plugin) {
			p.Open().Write(sdk.ClientToServer, []byte("bad"))
		}},
		{"write after end", "sdktest: Write(client -> server) after End(client -> server)", func(p sdktest.Plugin) {
			c := p.Open()
			c.End(sdk.ClientToServer)
			c.Write(sdk.ClientToServer, []byte("x"))
		}},
		{"read more than arrived", `sdktest: want 5 bytes server -> client, only 3 arrived: "fwd"`, func(p sdktest.Plugin) {
			c := p.Open()
			c.Write(sdk.ServerToClient, []byte("fwd"))
			c.Read(sdk.ServerToClient, 5)
		}},
		{"read all of an open stream", "sdktest: ReadAll(client -> server): the stream toward the server has not ended", func(p sdktest.Plugin) {
			p.Open().ReadAll(sdk.ClientToServer)
		}},
		{"wait on an open connection", "sdktest: Wait: connection #1 is still open", func(p sdktest.Plugin) {
			p.Open().Wait()
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fails(t, func(tb testing.TB) { tc.body(sdktest.MustStart(tb, sdktest.Native, sdktest.Options{})) })
			if !strings.Contains(got, tc.want) {
				t.Fatalf("failure %q, want it to contain %q", got, tc.want)
			}
		})
	}
}

func TestHoldPresentsHeldBytesFirstAndFlushesAtEnd(t *testing.T) {
	p := sdktest.MustStart(t, sdktest.Native, sdktest.Options{})
	c := p.Open()
	c.Write(sdk.ClientToServer, []byte("ab"))
	c.Write(sdk.ClientToServer, []byte("cd"))
	c.Write(sdk.ServerToClient, []byte("fwd"))
	if got := c.Read(sdk.ServerToClient, 3); string(got) != "fwd" {
		t.Fatalf("got %q", got)
	}
	c.End(sdk.ClientToServer) // held bytes at the end are forwarded
	if got := c.ReadAll(sdk.ClientToServer); string(got) != "abcd" {
		t.Fatalf("got %q", got)
	}
	c.End(sdk.ServerToClient)
	c.Wait()
}
