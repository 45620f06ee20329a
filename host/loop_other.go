//go:build !linux

package host

// Without epoll every listener accepts on a goroutine (see loop_linux.go).

type (
	eventLoop    struct{}
	loopListener struct{}
)

func (*loopListener) Resume() {}
func (*loopListener) Close()  {}

func (rs *routeState) loopTarget() (struct{}, bool)                            { return struct{}{}, false }
func (p *Proxy) loopLocked() *eventLoop                                        { return nil }
func (l *listener) serveOnLoop(*eventLoop) error                               { return nil }
func (p *Proxy) abortLoop(error)                                               {}
func (p *Proxy) closeLoop()                                                    {}
func (p *Proxy) eachLoopConn(start func(), _ func(*routeCounters, byteCounts)) { start() }
func (p *Proxy) eachLoopConnStats(func(ConnStats))                             {}
