package host

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tunnelwasm/tunnel/internal/addr"
)

// Stream is a filter's handle on its connection, from its place in the chain.
// Its methods may only be called from inside the filter's callbacks (Opened,
// Data, End, Timer), except Abort, which any goroutine may call.
type Stream struct {
	c      *conn
	idx    int  // the filter's link index
	opened bool // its Opened callback has run (chain.openLocked)
}

// Info describes the connection.
func (s *Stream) Info() *ConnInfo { return &s.c.info }

// TargetAddr returns the address of the target the tunnel connected to
// (ConnInfo.Target with a host name resolved, an IPv4-mapped address
// unmapped), or the zero AddrPort while it is not connected: before the
// dial, before a late dial's target is chosen, after a dial that failed.
// It may be called from any goroutine.
func (s *Stream) TargetAddr() netip.AddrPort {
	if s.c.dialled.Load() {
		return s.c.dialledAddr
	}
	return netip.AddrPort{}
}

// Send passes b on in direction dir from this filter's place in the chain: to
// the next filter of that direction, or to the destination socket when there
// is none. Sending toward ServerToClient from a client -> server callback
// answers the client. b is copied or consumed before Send returns.
func (s *Stream) Send(dir Direction, b []byte) error {
	if dir > ServerToClient {
		return fmt.Errorf("send: invalid direction %d", dir)
	}
	ch := &s.c.ch
	ch.noLend++ // the caller may change b once Send returns: copy it
	err := ch.deliverLocked(dir, s.c.rs.next[s.idx][dir], b)
	ch.noLend--
	return err
}

// Forward is Send for bytes the filter passes on unchanged and will not
// change afterwards, typically the chunk of the Data call or part of it:
// when every filter on the way forwarded them, they are written from the
// chunk's own buffer instead of being copied (the filtered path's bulk
// throughput depends on it). The filter must not modify b after Forward,
// even during the same call; bytes that are not part of the chunk being
// delivered are copied, as by Send.
func (s *Stream) Forward(dir Direction, b []byte) error {
	if dir > ServerToClient {
		return fmt.Errorf("forward: invalid direction %d", dir)
	}
	return s.c.ch.deliverLocked(dir, s.c.rs.next[s.idx][dir], b)
}

// CanSend reports whether Send toward dir can succeed: nil, ErrNotAttached
// (no filter sees that direction: it is spliced by the kernel) or
// ErrWriteClosed (the destination is already half-closed).
func (s *Stream) CanSend(dir Direction) error {
	if dir > ServerToClient {
		return fmt.Errorf("send: invalid direction %d", dir)
	}
	ch := &s.c.ch
	order := s.c.rs.chains[dir]
	if len(order) == 0 {
		return ErrNotAttached
	}
	if s.c.rs.next[s.idx][dir] >= len(order) && ch.wclosed[dir] {
		return ErrWriteClosed
	}
	return nil
}

// CloseWrite ends the stream dir at its destination once the bytes already
// sent are written (the TCP half-close). Later sends toward dir fail with
// ErrWriteClosed.
func (s *Stream) CloseWrite(dir Direction) error {
	if dir > ServerToClient {
		return fmt.Errorf("close write: invalid direction %d", dir)
	}
	ch := &s.c.ch
	if ch.wclosed[dir] {
		return nil
	}
	if len(s.c.rs.chains[dir]) == 0 {
		return ErrNotAttached
	}
	ch.wclosed[dir] = true
	ch.cwPending[dir] = true
	return nil
}

// Close closes the connection once the bytes already sent are written, with
// a FIN toward both peers. It takes effect when the callback returns: what
// the filters send during that callback, before or after Close (a goodbye,
// say), is written first. Bytes sent toward a target not dialled yet are
// dropped.
func (s *Stream) Close() { s.c.ch.closeReq = true }

// Closing reports whether a filter of the connection has called Close:
// the connection then ends once the callback in progress returns and what
// was sent is written. A filter that passes a chunk on learns, when Send
// or Forward returns, whether the filters after it closed the connection.
func (s *Stream) Closing() bool { return s.c.ch.closeReq }

// Abort closes the connection at once: both peers see a reset, and cause is
// logged with the connection. Unlike the other methods it may be called
// from any goroutine, at any time (for example by a hook whose shared state
// failed); it does not wait for the connection's filters or sockets.
func (s *Stream) Abort(cause error) {
	if cause == nil {
		cause = errors.New("aborted by a filter")
	}
	s.c.setReason(reasonFilterError)
	s.c.abort(cause)
}

// DeferEnd, called from End, keeps the stream dir open at its destination
// after the End callbacks: the half-close waits until a filter calls
// CloseWrite(dir) (from a Timer callback, say, once it has sent the bytes
// it delays) or closes the connection. Meanwhile the connection stays up.
// Without it, the destination is half-closed as soon as every End has run,
// and a later Send toward it fails with ErrWriteClosed.
func (s *Stream) DeferEnd(dir Direction) error {
	ch := &s.c.ch
	if dir > ServerToClient || !ch.ending[dir] {
		return fmt.Errorf("defer end: only from the End callback of that direction")
	}
	if ch.deferred[dir] == nil {
		ch.deferred[dir] = make(chan struct{})
	}
	return nil
}

// PauseRead stops reading dir's source (the client for ClientToServer)
// until ResumeRead(dir): its socket's receive buffer fills and TCP stops
// the sender, so a filter that delays bytes (a rate limit, a slow link)
// slows the sender down instead of buffering what it keeps sending. From
// a callback of dir's own chunks it takes effect before the next read;
// chunks of dir the engine has already read (the rest of a chunk a link
// split, or, on the goroutine engine, one read that was waiting on the
// socket when a Timer or the other direction paused it) may still come.
// Meanwhile the source's end of stream is not seen, a reset is (off Unix,
// only once the reads resume), and the route's idle timeout runs: the
// pause is not activity, so a connection that moves no bytes (read, or
// written, a filter's sends included) for longer than the timeout ends as
// idle. A connection that a filter closes, or that is torn down, stops
// waiting.
// The pause is the filter's: dir is read again once every filter that
// paused it has resumed it (the 64th filter of a chain and those after it
// share one pause). dir must have filters (else ErrNotAttached: the kernel
// forwards it). Pausing twice counts once. In Closed it returns an error
// wrapping ErrWriteClosed.
func (s *Stream) PauseRead(dir Direction) error {
	c := s.c
	if err := c.canPause("pause read", dir); err != nil {
		return err
	}
	if c.ch.done {
		return fmt.Errorf("pause read: %w", ErrWriteClosed)
	}
	if c.il.c == nil && c.pauseWake[dir] == nil {
		c.pauseWake[dir] = make(chan struct{}, 1)
	}
	c.paused[dir].Or(s.pauseBit())
	return nil
}

// ResumeRead ends this filter's PauseRead of dir (if any): dir is read
// again unless another filter pauses it too. Like Abort, and unlike the
// other methods, it may be called from any goroutine (a hook whose filter
// can no longer run resumes what it paused).
func (s *Stream) ResumeRead(dir Direction) error {
	c := s.c
	if err := c.canPause("resume read", dir); err != nil {
		return err
	}
	bit := s.pauseBit()
	if old := c.paused[dir].And(^bit); old&bit == 0 || old&^bit != 0 {
		return nil // not paused by this filter, or still by another
	}
	if c.il.c != nil {
		c.il.wake()
		return nil
	}
	select {
	case c.pauseWake[dir] <- struct{}{}: // made before the bit was set
	default: // a token is there already
	}
	return nil
}

// pauseBit is the filter's bit in conn.paused.
func (s *Stream) pauseBit() uint64 { return 1 << min(s.idx, 63) }

// ReadPaused reports whether dir's reads are paused (PauseRead, by this
// filter or another link of the chain). It may be called from any
// goroutine.
func (s *Stream) ReadPaused(dir Direction) bool {
	return dir <= ServerToClient && s.c.paused[dir].Load() != 0
}

// canPause checks the direction of PauseRead and ResumeRead.
func (c *conn) canPause(op string, dir Direction) error {
	if dir > ServerToClient {
		return fmt.Errorf("%s: invalid direction %d", op, dir)
	}
	if len(c.rs.chains[dir]) == 0 {
		return fmt.Errorf("%s: %w", op, ErrNotAttached)
	}
	return nil
}

// A TimerFilter is a [Filter] with a timer: [Stream.SetTimer] arms it, and
// Timer is called when it fires, with the connection's filters locked as in
// any other callback. Timer may send, half-close or close, like Data; an
// error aborts the connection. Use it for what is not a reaction to bytes:
// a delay (latency injection), "hold until a full line or 50 ms", a
// keep-alive, a rate limit's refill.
//
// What a Timer sends is paced by the peer it goes to, as bytes passed on
// from Data are: on a route whose hooks are all inline ([InlineHook]) it
// is queued, and the source of its direction is not read while it waits
// (up to 64 MiB per socket, past which the connection ends with Reason
// filter_error); on the other routes the Timer call waits while the
// peer's socket is full, as a Data call does. A filter that delays bytes
// should also pause their source while it holds them ([Stream.PauseRead]);
// a timer that makes bytes of its own (a keep-alive) should check how much
// it has sent against what its peer can take.
type TimerFilter interface {
	Filter
	Timer(s *Stream) error
}

// ErrNoTimer: SetTimer was called by a filter that does not implement TimerFilter.
var ErrNoTimer = errors.New("the filter does not implement TimerFilter, so its timer could never fire")

// SetTimer arms the filter's timer to fire after d (at least once the
// current callback returns), replacing any pending one: each filter has one
// timer per connection. The filter must implement [TimerFilter].
func (s *Stream) SetTimer(d time.Duration) error {
	ch := &s.c.ch
	if ch.done || s.idx >= len(ch.filters) {
		// From a Closed callback, or a Stream kept past its callback (not
		// allowed): the connection is gone.
		return fmt.Errorf("set timer: %w", ErrWriteClosed)
	}
	if _, ok := ch.filters[s.idx].(TimerFilter); !ok {
		return fmt.Errorf("%s: %w", s.c.rs.Chain[s.idx].Name, ErrNoTimer)
	}
	ch.setTimerLocked(s.idx, max(d, 0))
	return nil
}

// StopTimer disarms the filter's timer, if armed.
func (s *Stream) StopTimer() {
	if t := s.c.ch.timers; t != nil {
		t[s.idx].due = 0
	}
}

// A Tag is a key/value note a filter puts on its connection (a verdict, a
// protocol detail such as the SNI): later links of the chain can read it,
// and the close log line shows every tag as tag.KEY=VALUE.
type Tag struct{ Key, Value string }

// Bounds of the tags of one connection.
const (
	MaxTags        = 32
	MaxTagKeyLen   = 64
	MaxTagValueLen = 256
)

// SetTag sets the connection's tag key to value (an empty value removes
// it). Keys are up to MaxTagKeyLen bytes of letters, digits and ._-; values
// up to MaxTagValueLen bytes; a connection has at most MaxTags tags.
func (s *Stream) SetTag(key, value string) error {
	if len(key) == 0 || len(key) > MaxTagKeyLen || strings.IndexFunc(key, badTagRune) >= 0 {
		return fmt.Errorf("tag key %q: want 1 to %d letters, digits, '.', '_' or '-'", key, MaxTagKeyLen)
	}
	if len(value) > MaxTagValueLen {
		return fmt.Errorf("tag %q: value of %d bytes is over the limit of %d", key, len(value), MaxTagValueLen)
	}
	ch := &s.c.ch
	for i := range ch.tags {
		if ch.tags[i].Key == key {
			if value == "" {
				ch.tags = slices.Delete(ch.tags, i, i+1)
			} else {
				ch.tags[i].Value = value
			}
			return nil
		}
	}
	if value == "" {
		return nil
	}
	if len(ch.tags) >= MaxTags {
		return fmt.Errorf("tag %q: the connection already has %d tags", key, MaxTags)
	}
	ch.tags = append(ch.tags, Tag{Key: key, Value: value})
	return nil
}

// Tag returns the value of the connection's tag key, and whether it is set.
func (s *Stream) Tag(key string) (string, bool) {
	for _, t := range s.c.ch.tags {
		if t.Key == key {
			return t.Value, true
		}
	}
	return "", false
}

func badTagRune(r rune) bool {
	return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
}

// Errors of SetTarget.
var (
	// ErrNotLateDial: the route dials its own Target; see Route.LateDial.
	ErrNotLateDial = errors.New("the route dials its fixed target (Route.LateDial is off)")
	// ErrTargetChosen: a filter already chose the target.
	ErrTargetChosen = errors.New("the target is already chosen")
)

// SetTarget chooses the address the connection is dialled to, on a route
// with [Route.LateDial]: the dial waits until a filter calls it (from
// Opened, Data, End or Timer), and the client's bytes the chain sends on
// until then are held and delivered once the target is connected. Only the
// first call counts. A target that is the route's own listen address (as
// Route.Target may not be) is refused: each connection it makes would
// choose it again.
func (s *Stream) SetTarget(target string) error {
	c := s.c
	if !c.rs.LateDial {
		return ErrNotLateDial
	}
	if c.target.Load() != nil {
		return ErrTargetChosen
	}
	if err := addr.Check(target); err != nil {
		return fmt.Errorf("set target: %w", err)
	}
	if l := c.selfListen(target); l != "" {
		return fmt.Errorf("set target: %s is the route's own listen address %s: the connection would dial the tunnel itself, and so would that one", target, l)
	}
	c.info.Target = target
	c.target.Store(&target)
	if c.ch.firing {
		// The pump reading the client waits for its next bytes, or for
		// a resume of its paused reads: wake it to dial now.
		c.poke(ClientToServer)
		if w := c.pauseWake[ClientToServer]; w != nil { // made under the chain's lock, as here
			select {
			case w <- struct{}{}:
			default: // a token is there already
			}
		}
	}
	return nil
}

// selfListen returns the route's listen address if dialling target would
// reach it (addr.Loops), with a port 0 listener's bound port; else "".
func (c *conn) selfListen(target string) string {
	listen := c.rs.Listen
	if h, port, err := net.SplitHostPort(listen); err == nil && port == "0" && !c.rs.AcceptProxy {
		// info.Listen is then the socket's own address, not a PROXY
		// header's.
		if la, ok := c.info.Listen.(*net.TCPAddr); ok {
			listen = net.JoinHostPort(h, strconv.Itoa(la.Port))
		}
	}
	if addr.Loops(listen, target) {
		return listen
	}
	return ""
}
