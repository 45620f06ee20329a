package host

import (
	"net"
	"strings"
	"testing"
	"time"
)

// passHook opens filters that forward everything: a route with it is served
// by the goroutine engine's accept loop.
type passHook struct{}

func (passHook) Open(*ConnInfo) (Filter, error) { return passFilter{}, nil }

type passFilter struct{}

func (passFilter) Opened(*Stream) error { return nil }
func (passFilter) Data(dir Direction, b []byte, s *Stream) error {
	return s.Send(dir, b)
}
func (passFilter) End(dir Direction, s *Stream) error { return s.CloseWrite(dir) }
func (passFilter) Closed()                            {}

// TestListenersDownAndAtLimit: a listener whose accept loop ends with an
// error is reported down with the error, the others stay up; a listener at
// its connection cap says so.
func TestListenersDownAndAtLimit(t *testing.T) {
	t.Parallel()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	p := &Proxy{}
	defer p.Close()
	routes := []Route{
		{Name: "a", Listen: "127.0.0.1:0", Target: target.Addr().String(), Chain: []Link{{Name: "pass", Hook: passHook{}}}},
		{Name: "b", Listen: "127.0.0.1:0", Target: target.Addr().String(), MaxConns: 1},
	}
	if err := p.Apply(routes); err != nil {
		t.Fatal(err)
	}
	ls := p.Listeners()
	if len(ls) != 2 || !ls[0].Up || !ls[1].Up || ls[0].Route != "a" || ls[1].Route != "b" || ls[0].Addr != p.Addr("a").String() {
		t.Fatalf("listeners = %+v, want a and b up", ls)
	}

	c, err := net.Dial("tcp", p.Addr("b").String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	waitListeners(t, p, func(ls []ListenerState) bool { return ls[1].AtLimit && ls[1].Open == 1 }, "b at its limit")

	// The accept loop of a fails: its socket is closed under it.
	p.mu.Lock()
	var la *listener
	for _, l := range p.listeners {
		if l.state.Load().Name == "a" {
			la = l
		}
	}
	p.mu.Unlock()
	la.ln.Close()
	<-la.exit
	ls = p.Listeners()
	if ls[0].Up || ls[0].Err == nil || !strings.Contains(ls[0].Err.Error(), "use of closed network connection") {
		t.Errorf("a = %+v, want down with the accept error", ls[0])
	}
	if !ls[1].Up || ls[1].Err != nil {
		t.Errorf("b = %+v, want up", ls[1])
	}
}

// waitListeners polls p.Listeners until ok (a connection is counted open by
// the accept loop, which nothing signals), bounded.
func waitListeners(t *testing.T, p *Proxy, ok func([]ListenerState) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok(p.Listeners()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: listeners %+v", what, p.Listeners())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
