//go:build !linux

package host

import "sync/atomic"

// Without epoll every listener accepts on a goroutine (see loop_linux.go).

// maxLoops sizes routeCounters.loopBytes, of which only the first is used.
const maxLoops = 1

type (
	eventLoop    struct{}
	loopListener struct{}
)

func (*loopListener) Resume() {}
func (*loopListener) Close()  {}

func (rs *routeState) loopTarget() (struct{}, bool)                               { return struct{}{}, false }
func (p *Proxy) loopsLocked() []*eventLoop                                        { return nil }
func (l *listener) serveOnLoops([]*eventLoop) error                               { return nil }
func (p *Proxy) abortLoop(error)                                                  {}
func (p *Proxy) closeLoop()                                                       {}
func (p *Proxy) eachLoopConn(start func(int), _ func(*routeCounters, byteCounts)) { start(0) }
func (p *Proxy) eachLoopConnStats(func(ConnStats))                                {}

// inlineChain is the loop's side of an inline route's connection
// (inline_linux.go); without epoll no route is inline.
type inlineChain struct{ c *conn }

func (ic *inlineChain) armLocked()                 {}
func (ic *inlineChain) wake()                      {}
func (ic *inlineChain) abort(error, *atomic.Int64) {}
func (p *Proxy) startRouteLoopLocked(*routeState)  {}
func (p *Proxy) closeRouteLoop(*routeState)        {}
func (p *Proxy) abortRouteLoops(error)             {}
