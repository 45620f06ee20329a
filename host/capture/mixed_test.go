package capture_test

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/capture"
	"github.com/tunnelwasm/tunnel/host/internal/testnet"
	"github.com/tunnelwasm/tunnel/internal/tshark"
)

// chatty forwards every chunk unchanged; toward the target it also answers
// a chunk holding "r" with "ok\n" to the client (same call, after the
// forward) and follows a chunk holding "x" with "+\n" to the target.
var chatty = dataLink("chatty", func(dir host.Direction, b []byte, s *host.Stream) error {
	if err := s.Forward(dir, b); err != nil {
		return err
	}
	if dir != host.ClientToServer {
		return nil
	}
	if bytes.Contains(b, []byte("r")) {
		if err := s.Send(host.ServerToClient, []byte("ok\n")); err != nil {
			return err
		}
	}
	if bytes.Contains(b, []byte("x")) {
		return s.Send(dir, []byte("+\n"))
	}
	return nil
})

// TestMixedTwinsAndOwedACKs: six connections at once, each mixing chunks
// forwarded unchanged (twin records), chunks answered by the chain in the
// same call and chunks followed by more bytes, small and large: every
// leg follows with the right bytes, tshark flags nothing, nothing is
// dropped, and the Writer counts exactly the packets in the file.
func TestMixedTwinsAndOwedACKs(t *testing.T) {
	t.Parallel()
	srv := testnet.Serve(t, testnet.Echo)
	s := start(t, "127.0.0.1:0", srv.Addr(), capture.Options{}, chatty)
	const conns, rounds = 6, 30
	type result struct {
		client          string
		sent, got, echo []byte
	}
	res := make([]result, conns)
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := testnet.Dial(t, s.addr)
			defer c.Close()
			r := &res[i]
			r.client = c.LocalAddr().String()
			for j := range rounds {
				var msg string
				switch j % 4 {
				case 0:
					msg = fmt.Sprintf("plain %d %d\n", i, j)
				case 1:
					msg = fmt.Sprintf("reply %d %d\n", i, j)
				case 2:
					msg = fmt.Sprintf("extra x %d %d\n", i, j)
				default:
					msg = strings.Repeat("big", 700) + "\n" // over one small buffer, over one MSS
				}
				want := msg
				if strings.Contains(msg, "r") {
					want = "ok\n" + want
				}
				if strings.Contains(msg, "x") {
					want += "+\n"
				}
				if _, err := c.Write([]byte(msg)); err != nil {
					errs <- err
					return
				}
				buf := make([]byte, len(want))
				if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
					errs <- fmt.Errorf("conn %d round %d: %q, %v; want %q", i, j, buf, err, want)
					return
				}
				r.sent = append(r.sent, msg...)
				r.got = append(r.got, want...)
				r.echo = append(r.echo, strings.ReplaceAll(want, "ok\n", "")...)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	s.finish(t)
	f := tshark.Open(t, s.file)
	for _, r := range res {
		wantStream(t, f.Follow(r.client, s.addr), r.client, s.addr, r.sent, r.got)
		wantStream(t, f.Follow(r.client, srv.Addr()), r.client, srv.Addr(), r.echo, r.echo)
	}
	f.CheckClean()
	st := s.w.Stats()
	for leg := range 2 {
		n := len(f.Fields(tshark.Interface(leg), "frame.number"))
		if st.Dropped[leg] != 0 || st.Written[leg] != uint64(n) {
			t.Errorf("leg %d: stats written %d dropped %d; the file has %d packets", leg, st.Written[leg], st.Dropped[leg], n)
		}
	}
}
