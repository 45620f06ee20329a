package plugintest

import (
	"sync"
	"time"

	"github.com/tunnelwasm/tunnel/host"
	"github.com/tunnelwasm/tunnel/host/plugin"
	"github.com/tunnelwasm/tunnel/sdk"
)

// splitHook sits on both sides of the plugin in the chain. The client-side
// link re-cuts the client -> server bytes, the server-side link the server
// -> client bytes, at the boundaries of the test's Write calls, so the
// plugin sees each Write as one chunk whatever TCP did to them.
type splitHook struct {
	p    *wasmPlugin
	mu   sync.Mutex
	byID map[uint64]*splitState
}

// splitState is the plan of one connection: the sizes of the chunks the
// test wrote, per direction, not yet re-cut.
type splitState struct {
	id     uint64
	closed chan struct{} // closed after the plugin's Closed returned
	// opened is closed once the plugin's Opened has returned (the
	// server-side link's Opened comes after it): Open waits for it, so
	// that a test's Advance right after Open moves the clock after the
	// plugin read it to arm a timer in tunnel_on_open.
	opened  chan struct{}
	watched bool // the plugin's filter exists (guarded by splitHook.mu)
	mu      sync.Mutex
	sizes   [2][]int
	pending [2][]byte

	// The bytes the test wrote and the bytes the plugin has been shown,
	// per direction: Write waits until the plugin has seen what it wrote,
	// as the emulator's synchronous Write does, so that a test's Advance
	// after a Write moves the clock after the plugin saw the bytes.
	// (Guarded by seenMu, not mu: splitFilter.Data holds mu while the
	// plugin is shown the chunk.)
	seenMu  sync.Mutex
	written [2]int64
	seen    [2]int64
	passed  [2]int64 // re-cut and passed on toward the plugin, which is shown them even once it paused
	ended   [2]bool  // the plugin was shown the end of the direction
	closing bool     // the plugin closed the connection: it is shown nothing more
	paused  [2]bool  // the plugin paused the reads of the direction's source: it is shown nothing more for now
	notify  notifier // of seen, ended and closing
}

// shown records that the plugin was shown n bytes of dir.
func (s *splitState) shown(dir host.Direction, n int) {
	s.seenMu.Lock()
	s.seen[dir] += int64(n)
	s.notify.changed()
	s.seenMu.Unlock()
}

// endShown records that the plugin was shown the end of dir.
func (s *splitState) endShown(dir host.Direction) {
	s.seenMu.Lock()
	s.ended[dir] = true
	s.notify.changed()
	s.seenMu.Unlock()
}

// note records, after a call into the plugin, whether it closed the
// connection (Stream.Close) and which directions' reads it paused
// (Stream.PauseRead). After a close the tunnel reads and drops what the
// peers still send for a while (a lingering close) without showing it to
// the plugin, and while a direction is paused its bytes wait in the
// socket: either way the waits for the plugin to be shown bytes or an end
// are over.
func (s *splitState) note(stream *host.Stream) {
	closing := stream.Closing()
	paused := [2]bool{stream.ReadPaused(host.ClientToServer), stream.ReadPaused(host.ServerToClient)}
	s.seenMu.Lock()
	if closing && !s.closing || paused != s.paused {
		s.closing = s.closing || closing
		s.paused = paused
		s.notify.changed()
	}
	s.seenMu.Unlock()
}

// waited is how a wait of Write or End ended.
type waited uint8

const (
	waitDone    waited = iota // the plugin was shown the bytes or the end
	waitClosed                // the connection closed, or the plugin closed it
	waitStopped               // the caller's stop channel closed
	waitTimeout               // Timeout passed
)

// awaitShown waits until the plugin has been shown every byte written
// toward dir (or paused the reads of dir: they wait in the socket), the
// connection is closed (or the plugin closed it), or timeout.
func (s *splitState) awaitShown(dir sdk.Direction, timeout <-chan time.Time) waited {
	return s.await(nil, timeout, func() bool { return s.seen[dir] >= s.written[dir] || s.pausedAll(dir) })
}

// pausedAll reports whether the plugin paused dir and has been shown what
// the tunnel had read of it: the pieces a split link re-cut from one read
// reach the plugin one after the other, also once it paused at the first,
// and a test whose Write returned at that pause moved the clock during the
// OnData of the next piece. Called with seenMu held.
func (s *splitState) pausedAll(dir sdk.Direction) bool {
	return s.paused[dir] && s.seen[dir] >= s.passed[dir]
}

// awaitEnd waits until the plugin has been shown the end of dir (or
// paused the reads of dir: the end waits in the socket), the
// connection is closed, delivered is closed (a stream toward a peer ended:
// the caller tells whether that means the plugin will not be shown the
// end) or timeout.
func (s *splitState) awaitEnd(dir sdk.Direction, delivered <-chan struct{}, timeout <-chan time.Time) waited {
	return s.await(delivered, timeout, func() bool { return s.ended[dir] || s.pausedAll(dir) })
}

// await waits until done (called with seenMu held) holds, the connection is
// closed or closing, stop is closed, or timeout.
func (s *splitState) await(stop <-chan struct{}, timeout <-chan time.Time, done func() bool) waited {
	for {
		s.seenMu.Lock()
		if done() {
			s.seenMu.Unlock()
			return waitDone
		}
		if s.closing {
			s.seenMu.Unlock()
			return waitClosed
		}
		ch := s.notify.next()
		s.seenMu.Unlock()
		select {
		case <-ch:
		case <-s.closed:
			return waitClosed
		case <-stop:
			return waitStopped
		case <-timeout:
			return waitTimeout
		}
	}
}

func (s *splitState) plan(dir sdk.Direction, n int) {
	s.mu.Lock()
	s.sizes[dir] = append(s.sizes[dir], n)
	s.mu.Unlock()
	s.seenMu.Lock()
	s.written[dir] += int64(n)
	s.seenMu.Unlock()
}

func (h *splitHook) Open(info *host.ConnInfo) (host.Filter, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.byID == nil {
		h.byID = map[uint64]*splitState{}
	}
	st := h.byID[info.ID]
	if st == nil {
		// The client-side link opens first.
		st = &splitState{id: info.ID, closed: make(chan struct{}), opened: make(chan struct{})}
		h.byID[info.ID] = st
		// Tell the waiting Open which connection this is.
		select {
		case h.p.pending <- st:
		default:
		}
		return &splitFilter{h: h, st: st, dir: host.ClientToServer}, nil
	}
	delete(h.byID, info.ID)
	return &splitFilter{h: h, st: st, dir: host.ServerToClient}, nil
}

type splitFilter struct {
	host.PassThrough
	h   *splitHook
	st  *splitState
	dir host.Direction // the direction this link re-cuts
}

func (f *splitFilter) Data(dir host.Direction, chunk []byte, s *host.Stream) error {
	if dir != f.dir {
		return s.Send(dir, chunk)
	}
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	d := sdk.Direction(dir)
	st.pending[d] = append(st.pending[d], chunk...)
	// Counted before the first piece goes: the plugin may pause at it.
	pass := 0
	for _, n := range st.sizes[d] {
		if pass+n > len(st.pending[d]) {
			break
		}
		pass += n
	}
	st.seenMu.Lock()
	st.passed[d] += int64(pass)
	st.seenMu.Unlock()
	for len(st.sizes[d]) > 0 && len(st.pending[d]) >= st.sizes[d][0] {
		n := st.sizes[d][0]
		st.sizes[d] = st.sizes[d][1:]
		if err := s.Send(dir, st.pending[d][:n]); err != nil {
			return err
		}
		st.pending[d] = st.pending[d][n:]
	}
	return nil
}

// Opened of the server-side link runs after the plugin's: it ends Open's
// wait.
func (f *splitFilter) Opened(*host.Stream) error {
	if f.dir == host.ServerToClient {
		close(f.st.opened)
	}
	return nil
}

// Closed ends the wait for a connection whose plugin filter was never made
// (the plugin's Open failed): nothing else will.
func (f *splitFilter) Closed() {
	if f.dir != host.ClientToServer {
		return
	}
	f.h.mu.Lock()
	watched := f.st.watched
	delete(f.h.byID, f.st.id) // when the server-side link was never opened
	f.h.mu.Unlock()
	if !watched {
		close(f.st.closed)
	}
}

func (f *splitFilter) End(dir host.Direction, s *host.Stream) error {
	if dir != f.dir {
		return nil
	}
	// Whatever was not planned (nothing, in a well-formed test) goes on.
	st := f.st
	st.mu.Lock()
	defer st.mu.Unlock()
	d := sdk.Direction(dir)
	if len(st.pending[d]) > 0 {
		b := st.pending[d]
		st.pending[d] = nil
		return s.Send(dir, b)
	}
	return nil
}

// watchHook wraps the plugin's hook to tell when its filter is closed.
type watchHook struct {
	p    *wasmPlugin
	plug *plugin.Plugin
}

func (w *watchHook) Open(info *host.ConnInfo) (host.Filter, error) {
	f, err := w.plug.Open(info)
	if err != nil {
		return nil, err
	}
	// The client-side link opened first and registered the state.
	w.p.split.mu.Lock()
	st := w.p.split.byID[info.ID]
	if st != nil {
		st.watched = true
	}
	w.p.split.mu.Unlock()
	return &watchFilter{Filter: f, st: st, p: w.p}, nil
}

type watchFilter struct {
	host.Filter
	st *splitState
	p  *wasmPlugin
}

// Opened opens the plugin's filter and records what it paused.
func (f *watchFilter) Opened(s *host.Stream) error {
	err := f.Filter.Opened(s)
	if f.st != nil {
		f.st.note(s)
	}
	return err
}

// Data shows chunk to the plugin and records that it did.
func (f *watchFilter) Data(dir host.Direction, chunk []byte, s *host.Stream) error {
	err := f.Filter.Data(dir, chunk, s)
	if f.st != nil {
		f.st.shown(dir, len(chunk))
		f.st.note(s)
	}
	return err
}

// End shows the end of dir to the plugin and records that it did.
func (f *watchFilter) End(dir host.Direction, s *host.Stream) error {
	err := f.Filter.End(dir, s)
	if f.st != nil {
		f.st.endShown(dir)
		f.st.note(s)
	}
	return err
}

func (f *watchFilter) Closed() {
	f.Filter.Closed()
	if f.st != nil {
		close(f.st.closed)
	}
}

// Timer passes the host's timer on to the plugin's filter (a [host.TimerFilter]).
func (f *watchFilter) Timer(s *host.Stream) error {
	t, ok := f.Filter.(host.TimerFilter)
	if !ok {
		return nil
	}
	err := t.Timer(s)
	if f.st != nil {
		f.st.note(s)
	}
	f.p.timerMu.Lock()
	f.p.timers.changed()
	f.p.timerMu.Unlock()
	return err
}
