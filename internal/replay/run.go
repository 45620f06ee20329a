package replay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tunnelwasm/tunnel/host"
)

// Step is what the chain did with one replayed chunk.
type Step struct {
	// Dir is the direction the chunk was recorded in.
	Dir host.Direction
	// End: the step is Dir's half-close (its FIN), fed where it was
	// recorded, not a chunk; In is empty.
	End bool
	// In is the chunk fed to the chain.
	In []byte
	// Forwarded is what reached the chunk's destination meanwhile.
	Forwarded []byte
	// Replied is what the chain sent back to the chunk's sender meanwhile.
	Replied []byte
	// Failure is set when a plugin failed on this chunk: the plugin, the
	// cause and the policy applied.
	Failure string
	// AfterFailure says a plugin had failed on an earlier chunk of the
	// connection: it did not run on this one.
	AfterFailure bool
}

// Verdict names what happened to the chunk: "forwarded", "replaced",
// "forwarded N of the bytes, the rest held", "dropped or held"; for an
// End step "half-closed" (", after forwarding N held bytes" when the
// chain let go of bytes it held); "plugin failed on it" (", bypassed: forwarded" when
// the policy bypassed the plugin); after a plugin failure, "not run: a
// plugin had failed" (the connection was being closed) or "forwarded,
// bypassing the failed plugin"; with "; replied N bytes" when the chain
// answered.
func (s *Step) Verdict() string {
	v := "forwarded"
	none := len(s.Forwarded) == 0 && len(s.In) > 0
	switch {
	case s.End && len(s.Forwarded) > 0:
		v = "half-closed, after forwarding " + Bytes(len(s.Forwarded), "held ")
	case s.End:
		v = "half-closed"
	case none:
		v = "dropped or held"
	case len(s.Forwarded) < len(s.In) && bytes.HasPrefix(s.In, s.Forwarded):
		v = fmt.Sprintf("forwarded %d of the bytes, the rest held", len(s.Forwarded))
	case !bytes.Equal(s.Forwarded, s.In):
		v = "replaced"
	}
	switch {
	case s.Failure != "" && none:
		v = "plugin failed on it"
	case s.Failure != "":
		v = "plugin failed on it, bypassed: " + v
	case s.AfterFailure && none:
		v = "not run: a plugin had failed"
	case s.AfterFailure:
		v += ", bypassing the failed plugin"
	}
	if len(s.Replied) > 0 {
		v += "; replied " + Bytes(len(s.Replied), "")
	}
	return v
}

// Bytes says n bytes in English, with adj before the noun: "1 byte",
// "2 held bytes".
func Bytes(n int, adj string) string {
	if n == 1 {
		return "1 " + adj + "byte"
	}
	return strconv.Itoa(n) + " " + adj + "bytes"
}

// Result is the replay of one connection.
type Result struct {
	// Conn is the recorded connection.
	Conn *Conn
	// Steps, one per chunk fed (fewer when the chain closed the
	// connection first).
	Steps []Step
	// Late is what the chain sent after the last chunk (held bytes
	// released at the end, a goodbye), per destination.
	Late [2][]byte
	// Err is why the connection ended with an error ("" when it ended
	// cleanly): a filter's or plugin's failure, an abort.
	Err string
	// Cut is set when the recording ends before the connection did (no
	// FIN each way: a reset, see Conn.Reset, or the capture file was
	// rotated or stopped) and the replay closed it likewise; that close is
	// not an Err.
	Cut bool
	// Failure is set when a plugin failed on the connection, whatever its
	// policy: the plugin, the cause and the policy ("bypass": the chain
	// went on without the plugin, the connection was not closed).
	Failure string
}

// Options configure Run.
type Options struct {
	// Chain is the route's chain to replay through, first link nearest
	// the client.
	Chain []host.Link
	// Wrap, when set, is applied to the whole chain with the replay's
	// observers before it runs (to capture the replay with host/capture).
	Wrap func([]host.Link) []host.Link
	// Logger receives the proxy's and plugins' log (nil: discarded).
	Logger *slog.Logger
	// Timeout bounds the wait for the chain to take one chunk (default 10s).
	Timeout time.Duration
	// Log, when set, is the log the proxy logs to, made by NewLog with
	// the Logger given to the plugins of Chain: through it Run sees the
	// plugins' failures, those that a bypass policy hides from the
	// connection too. Nil: a NewLog(Logger), which sees only the proxy's.
	Log *Log
}

// A Log passes log records on and collects what Run reports from them:
// the errors, and the plugin failures per connection. It serves one Run at
// a time; a Run starts it afresh.
type Log struct{ e *errorLog }

// NewLog returns a Log that passes its records on to next (nil: discards
// them).
func NewLog(next *slog.Logger) *Log {
	e := &errorLog{conns: map[uint64]closeLine{}}
	e.logger = slog.New(e.handler(next))
	return &Log{e}
}

// Logger returns the logger of l, for the plugins and the proxy.
func (l *Log) Logger() *slog.Logger { return l.e.logger }

// Report is the replay of a capture.
type Report struct {
	Conns []Result
	// Errors are the messages logged at level ERROR during the replay: a
	// plugin that failed (even one whose failures are bypassed, when its
	// log is Options.Log), or failed to start.
	Errors []string
}

// Failed reports whether a plugin or filter failed during the replay.
func (r *Report) Failed() bool {
	if len(r.Errors) > 0 {
		return true
	}
	for _, c := range r.Conns {
		if c.Err != "" || c.Failure != "" {
			return true
		}
	}
	return false
}

// Run replays each connection through the chain, one after the other, on
// loopback: a real host.Proxy between a client and a fake target that
// speak the recorded bytes, in the recorded order and chunking, each chunk
// fed once the chain has handled the one before.
func Run(ctx context.Context, conns []Conn, opts Options) (*Report, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	defer ln.Close()
	obs := &observer{changed: make(chan struct{})}
	chain := append(append([]host.Link{{Name: "replay-client", Hook: obs.hook(0)}}, opts.Chain...), host.Link{Name: "replay-target", Hook: obs.hook(1)})
	if opts.Wrap != nil {
		chain = opts.Wrap(chain)
	}
	lg := opts.Log
	if lg == nil {
		lg = NewLog(opts.Logger)
	}
	errs := lg.e
	errs.mu.Lock()
	errs.failed = obs.failed
	// A Log kept across Runs: each Run's proxy numbers its connections
	// from 1 again, so what the last Run collected must not answer for
	// this one's.
	clear(errs.conns)
	errs.errors = nil
	errs.mu.Unlock()
	defer func() {
		errs.mu.Lock()
		errs.failed = nil
		errs.mu.Unlock()
	}()
	p := &host.Proxy{Logger: errs.logger}
	defer p.Close()
	if err := p.Apply([]host.Route{{Name: "replay", Listen: "127.0.0.1:0", Target: ln.Addr().String(), Chain: chain}}); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	addr := p.Addr("replay").String()
	rep := &Report{Conns: make([]Result, len(conns))}
	for i := range conns {
		res := &rep.Conns[i]
		res.Conn = &conns[i]
		if err := obs.replay(ctx, uint64(i+1), addr, ln, res, opts.Timeout); err != nil {
			rep.Conns = rep.Conns[:i+1]
			return rep, err
		}
		msg, reason := errs.wait(uint64(i+1), opts.Timeout)
		if res.Conn.Ended != [2]bool{true, true} && reason != "filter_error" && reason != "refused" {
			res.Cut, msg = true, ""
		}
		res.Err = msg
	}
	errs.mu.Lock()
	rep.Errors = errs.errors
	errs.mu.Unlock()
	return rep, nil
}

// observer is the pair of hooks around the chain: it sees each chunk
// enter and what leaves.
type observer struct {
	mu      sync.Mutex
	changed chan struct{}
	entered [2]int  // bytes the chain took, per direction
	ended   [2]bool // the chain passed on each direction's end
	closed  bool
	step    *Step // the chunk being fed
	late    *[2][]byte
	conn    uint64  // the proxy's number of the connection replayed
	res     *Result // its result
}

// failed records a plugin's failure on connection id.
func (o *observer) failed(id uint64, msg string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if id != o.conn || o.res == nil {
		return
	}
	if o.res.Failure == "" {
		o.res.Failure = msg
	} else {
		o.res.Failure += "; " + msg
	}
	if o.step != nil && o.step.Failure == "" && !o.step.AfterFailure {
		o.step.Failure = msg
	}
}

func (o *observer) hook(leg int) host.Hook { return &obsHook{o: o, leg: leg} }

type obsHook struct {
	o   *observer
	leg int
}

func (h *obsHook) Open(*host.ConnInfo) (host.Filter, error) { return &obsFilter{h: h}, nil }

type obsFilter struct {
	host.PassThrough
	h *obsHook
}

func (f *obsFilter) Data(dir host.Direction, b []byte, s *host.Stream) error {
	o := f.h.o
	entry := (dir == host.ClientToServer) == (f.h.leg == 0)
	if entry {
		err := s.Send(dir, b)
		o.mu.Lock()
		o.entered[dir] += len(b)
		o.notifyLocked()
		o.mu.Unlock()
		return err
	}
	o.mu.Lock()
	switch st := o.step; {
	case st != nil && st.Dir == dir:
		st.Forwarded = append(st.Forwarded, b...)
	case st != nil:
		st.Replied = append(st.Replied, b...)
	case o.late != nil:
		o.late[dir] = append(o.late[dir], b...)
	}
	o.mu.Unlock()
	return s.Send(dir, b)
}

// End records, at the exit of the chain, that every filter before has
// taken dir's end (and sent what it held): the chain is done with it.
func (f *obsFilter) End(dir host.Direction, s *host.Stream) error {
	if entry := (dir == host.ClientToServer) == (f.h.leg == 0); !entry {
		o := f.h.o
		o.mu.Lock()
		o.ended[dir] = true
		o.notifyLocked()
		o.mu.Unlock()
	}
	return nil
}

func (f *obsFilter) Closed() {
	if f.h.leg != 0 {
		return
	}
	o := f.h.o
	o.mu.Lock()
	o.closed = true
	o.notifyLocked()
	o.mu.Unlock()
}

func (o *observer) notifyLocked() {
	close(o.changed)
	o.changed = make(chan struct{})
}

// waitFor waits until cond holds (under mu) or the connection closed.
func (o *observer) waitFor(ctx context.Context, timeout time.Duration, cond func() bool) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		o.mu.Lock()
		ok, closed, ch := cond(), o.closed, o.changed
		o.mu.Unlock()
		if ok || closed {
			return nil
		}
		select {
		case <-ch:
		case <-t.C:
			return errors.New("replay: the chain took no bytes for " + timeout.String())
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// replay plays one connection.
func (o *observer) replay(ctx context.Context, id uint64, addr string, ln net.Listener, res *Result, timeout time.Duration) error {
	o.mu.Lock()
	o.entered, o.ended, o.closed, o.step, o.late, o.conn, o.res = [2]int{}, [2]bool{}, false, nil, nil, id, res
	o.mu.Unlock()
	client, err := net.Dial("tcp", addr)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	defer client.Close()
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(timeout))
	server, err := ln.Accept()
	if err != nil {
		return fmt.Errorf("replay: the tunnel did not connect to the fake target: %w", err)
	}
	defer server.Close()
	var wg sync.WaitGroup
	for _, c := range []net.Conn{client, server} {
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(io.Discard, c) }()
	}
	srcs := [2]net.Conn{client, server} // the sender of each direction
	// Room for every step (a chunk or a FIN each) from the start: the
	// proxy's goroutine writes into the current step through o.step while
	// the next is appended, which must never move the steps.
	res.Steps = make([]Step, 0, len(res.Conn.Chunks)+2)
	var finned [2]bool
	// endsBefore feeds the half-closes recorded before chunk i; false when
	// the chain closed the connection.
	endsBefore := func(i int) (bool, error) {
		for d := range srcs {
			if !res.Conn.Ended[d] || finned[d] || len(res.Conn.Chunks)-res.Conn.AfterEnd[d] > i {
				continue
			}
			finned[d] = true
			if !o.begin(res, Step{Dir: host.Direction(d), End: true}) {
				return false, nil
			}
			srcs[d].(*net.TCPConn).CloseWrite()
			if err := o.waitFor(ctx, timeout, func() bool { return o.ended[d] }); err != nil {
				return false, err
			}
		}
		return true, nil
	}
	for i, ch := range res.Conn.Chunks {
		if more, err := endsBefore(i); err != nil {
			return err
		} else if !more {
			break
		}
		o.mu.Lock()
		want := o.entered[ch.Dir] + len(ch.Data)
		o.mu.Unlock()
		if !o.begin(res, Step{Dir: ch.Dir, In: ch.Data}) {
			break
		}
		if _, err := srcs[ch.Dir].Write(ch.Data); err != nil {
			break // the chain closed the connection
		}
		if err := o.waitFor(ctx, timeout, func() bool { return o.entered[ch.Dir] >= want }); err != nil {
			return err
		}
	}
	if _, err := endsBefore(len(res.Conn.Chunks)); err != nil {
		return err
	}
	o.mu.Lock()
	o.step = nil
	o.late = &res.Late
	o.mu.Unlock()
	if res.Conn.Ended != [2]bool{true, true} {
		// The recording ended without both FINs (a reset, or the capture
		// stopped): end the connection the same way.
		client.Close()
		server.Close()
	}
	err = o.waitFor(ctx, timeout, func() bool { return false })
	client.Close()
	server.Close()
	wg.Wait()
	return err
}

// closeLine is what a connection's close log line says of how it ended.
type closeLine struct{ msg, reason string }

// errorLog collects the error each connection ended with, from the
// proxy's "connection closed" log line, and passes every record on.
type errorLog struct {
	logger  *slog.Logger
	mu      sync.Mutex
	conns   map[uint64]closeLine
	changed chan struct{}
	errors  []string
	failed  func(conn uint64, msg string) // a plugin failed on conn
}

func (e *errorLog) handler(next *slog.Logger) slog.Handler {
	var h slog.Handler = slog.DiscardHandler
	if next != nil {
		h = next.Handler()
	}
	return &errHandler{e: e, next: h}
}

// wait returns the error conn id ended with and the reason, once its
// close is logged.
func (e *errorLog) wait(id uint64, timeout time.Duration) (msg, reason string) {
	deadline := time.Now().Add(timeout)
	for {
		e.mu.Lock()
		c, ok := e.conns[id]
		ch := e.changed
		if ch == nil {
			ch = make(chan struct{})
			e.changed = ch
		}
		e.mu.Unlock()
		if ok {
			return c.msg, c.reason
		}
		select {
		case <-ch:
		case <-time.After(time.Until(deadline)):
			return "replay: the connection's close was never logged", ""
		}
	}
}

type errHandler struct {
	e     *errorLog
	next  slog.Handler
	attrs []slog.Attr
}

// connID reads a log record's conn attribute (the proxy logs a uint64;
// an int64 is read too).
func connID(v slog.Value) uint64 {
	switch v.Kind() {
	case slog.KindUint64:
		return v.Uint64()
	case slog.KindInt64:
		return uint64(v.Int64())
	}
	return 0
}

func (h *errHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return true
}

func (h *errHandler) Handle(ctx context.Context, r slog.Record) error {
	// The handler's attributes (WithAttrs) first, then the record's.
	attrs := slices.Clone(h.attrs)
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })
	get := func(key string) slog.Value {
		for _, a := range attrs {
			if a.Key == key {
				return a.Value
			}
		}
		return slog.StringValue("") // absent: "" as a string, 0 as conn
	}
	switch r.Message {
	case "plugin failed":
		msg := fmt.Sprintf("plugin %q failed in %s: %s", get("plugin").String(), get("callback").String(), get("cause").String())
		if policy := get("policy").String(); policy == "bypass" {
			msg += "; policy bypass: the chain went on without it"
		} else if policy != "" {
			msg += "; policy " + policy
		}
		h.e.mu.Lock()
		failed := h.e.failed
		h.e.mu.Unlock()
		if failed != nil {
			failed(connID(get("conn")), msg)
		}
	case "connection closed":
		h.e.mu.Lock()
		h.e.conns[connID(get("conn"))] = closeLine{get("err").String(), get("reason").String()}
		if h.e.changed != nil {
			close(h.e.changed)
			h.e.changed = nil
		}
		h.e.mu.Unlock()
	}
	if r.Level >= slog.LevelError {
		var b bytes.Buffer
		b.WriteString(r.Message)
		for _, a := range attrs {
			fmt.Fprintf(&b, " %s=%s", a.Key, a.Value)
		}
		h.e.mu.Lock()
		h.e.errors = append(h.e.errors, b.String())
		h.e.mu.Unlock()
	}
	if r.Message == "connection closed" {
		// The report says how each connection ended, in the recording's
		// addresses; this line has the replay's own loopback ports.
		return nil
	}
	if h.next.Enabled(ctx, r.Level) {
		return h.next.Handle(ctx, r)
	}
	return nil
}

func (h *errHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &errHandler{e: h.e, next: h.next.WithAttrs(as), attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *errHandler) WithGroup(name string) slog.Handler {
	return &errHandler{e: h.e, next: h.next.WithGroup(name), attrs: h.attrs}
}

// begin makes st the step the chain's output goes to, unless the chain
// has closed the connection (then it returns false and adds no step).
// The steps' room is made in advance, so o.step never moves.
func (o *observer) begin(res *Result, st Step) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return false
	}
	st.AfterFailure = res.Failure != ""
	res.Steps = append(res.Steps, st)
	o.step = &res.Steps[len(res.Steps)-1]
	return true
}
