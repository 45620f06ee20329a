// Command toxics is the tunnel plugin that injects network faults, per
// direction, like toxiproxy's toxics: latency with jitter (bytes are held
// and released by a timer, in order, and the end of the stream follows
// them), a slicer (chunks cut into small pieces, optionally spaced in
// time) and a reset after N bytes (the connection is closed once N bytes
// have passed). See README.md for its configuration.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o toxics.wasm ./plugins/toxics
package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

// dirConfig is the toxics of one direction.
type dirConfig struct {
	Latency    string `json:"latency"`     // e.g. "100ms"
	Jitter     string `json:"jitter"`      // e.g. "20ms": latency ± up to jitter
	Slice      int    `json:"slice"`       // bytes per piece; 0: chunks as they come
	SliceDelay string `json:"slice_delay"` // time between pieces
	ResetAfter int64  `json:"reset_after"` // close after this many bytes; 0: never
}

type config struct {
	Client *dirConfig `json:"client"` // bytes from the client (client -> server)
	Server *dirConfig `json:"server"` // bytes from the server (server -> client)
	Seed   uint64     `json:"seed"`   // of the jitter's random numbers
}

// toxic is the parsed dirConfig.
type toxic struct {
	on         bool
	latency    time.Duration
	jitter     time.Duration
	slice      int
	sliceDelay time.Duration
	resetAfter int64
}

func (t *toxic) delays() bool { return t.latency > 0 || t.jitter > 0 || t.sliceDelay > 0 }

type plugin struct {
	t   [2]toxic
	rng *rand.Rand
}

func parseDur(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf(`%q must be a duration such as "100ms", not %q`, name, s)
	}
	return d, nil
}

func parseDir(side string, c *dirConfig) (toxic, error) {
	var t toxic
	if c == nil {
		return t, nil
	}
	var err error
	wrap := func(e error) error { return fmt.Errorf("toxics: %s: %w", side, e) }
	if t.latency, err = parseDur("latency", c.Latency); err != nil {
		return t, wrap(err)
	}
	if t.jitter, err = parseDur("jitter", c.Jitter); err != nil {
		return t, wrap(err)
	}
	if t.sliceDelay, err = parseDur("slice_delay", c.SliceDelay); err != nil {
		return t, wrap(err)
	}
	if c.Slice < 0 {
		return t, wrap(fmt.Errorf(`"slice" must be >= 0, not %d`, c.Slice))
	}
	if c.ResetAfter < 0 {
		return t, wrap(fmt.Errorf(`"reset_after" must be >= 0, not %d`, c.ResetAfter))
	}
	if t.sliceDelay > 0 && c.Slice == 0 {
		return t, wrap(errors.New(`"slice_delay" needs "slice"`))
	}
	t.slice, t.resetAfter = c.Slice, c.ResetAfter
	t.on = t.delays() || t.slice > 0 || t.resetAfter > 0
	return t, nil
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, fmt.Errorf("toxics: %w", err)
	}
	p := &plugin{rng: rand.New(rand.NewPCG(c.Seed, 0x70c1c5))}
	var err error
	if p.t[sdk.ClientToServer], err = parseDir("client", c.Client); err != nil {
		return nil, err
	}
	if p.t[sdk.ServerToClient], err = parseDir("server", c.Server); err != nil {
		return nil, err
	}
	if !p.t[0].on && !p.t[1].on {
		return nil, errors.New(`toxics: no toxic: configure "client" and/or "server", e.g. {"client": {"latency": "100ms"}}`)
	}
	return p, nil
}

// piece is a run of bytes of a queue, due at a time.
type piece struct {
	due time.Duration
	n   int
}

// queue is what one direction holds back, in order.
type queue struct {
	buf    []byte
	pieces []piece
	last   time.Duration // due time of the last piece queued: later ones are never due before it
	ended  bool          // the source ended: half-close once drained (DeferEnd)
	passed int64         // bytes let through so far (reset_after)
	reset  bool          // reset_after reached: close once drained
}

type conn struct {
	p     *plugin
	q     [2]queue
	armed time.Duration // due time of the armed timer; 0: none
}

func (p *plugin) NewConn(*sdk.Conn) (sdk.Handler, error) { return &conn{p: p}, nil }

// delay returns the latency of a chunk: latency ± jitter, not below 0.
func (p *plugin) delay(t *toxic) time.Duration {
	d := t.latency
	if t.jitter > 0 {
		d += time.Duration(p.rng.Int64N(int64(2*t.jitter)+1)) - t.jitter
	}
	return max(d, 0)
}

func (c *conn) OnData(sc *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	t := &c.p.t[dir&1]
	if !t.on {
		return sdk.Forward
	}
	q := &c.q[dir&1]
	if q.reset {
		return sdk.Drop
	}
	if t.resetAfter > 0 && q.passed+int64(len(data)) >= t.resetAfter {
		data = data[:t.resetAfter-q.passed]
		q.reset = true
	}
	q.passed += int64(len(data))
	if !t.delays() && len(q.pieces) == 0 {
		// No delay: slice (or not) now.
		if t.slice > 0 {
			for b := data; len(b) > 0; {
				k := min(t.slice, len(b))
				send(sc, dir, b[:k])
				b = b[k:]
			}
		} else {
			send(sc, dir, data)
		}
		if q.reset {
			c.resetConn(sc, dir)
		}
		return sdk.Drop
	}
	now := sdk.Now()
	due := max(now+c.p.delay(t), q.last) // in order: never before the bytes ahead
	for b := data; len(b) > 0; {
		k := len(b)
		if t.slice > 0 {
			k = min(t.slice, k)
		}
		q.buf = append(q.buf, b[:k]...)
		q.pieces = append(q.pieces, piece{due: due, n: k})
		b = b[k:]
		due += t.sliceDelay
	}
	if len(q.pieces) > 0 {
		q.last = q.pieces[len(q.pieces)-1].due
	}
	if end || q.reset {
		q.ended = end
		if len(q.pieces) == 0 {
			if q.reset {
				c.resetConn(sc, dir)
			}
			return sdk.Drop // nothing held: the host ends dir now
		}
		if end {
			if err := sc.DeferEnd(dir); err != nil {
				sdk.Log(sdk.LevelWarn, "toxics: defer end "+dir.String()+": "+err.Error())
			}
		}
	}
	c.arm(sc, now)
	return sdk.Drop
}

// resetConn closes the connection once reset_after bytes went out.
func (c *conn) resetConn(sc *sdk.Conn, dir sdk.Direction) {
	sdk.Logf(sdk.LevelInfo, "toxics: reset after %d bytes %s", c.p.t[dir&1].resetAfter, dir)
	if err := sc.Close(); err != nil {
		sdk.Log(sdk.LevelWarn, "toxics: close: "+err.Error())
	}
}

// arm sets the timer to the earliest due piece of either direction.
func (c *conn) arm(sc *sdk.Conn, now time.Duration) {
	next := time.Duration(-1)
	for d := range c.q {
		if q := &c.q[d]; len(q.pieces) > 0 && (next < 0 || q.pieces[0].due < next) {
			next = q.pieces[0].due
		}
	}
	if next < 0 {
		if c.armed != 0 {
			_ = sc.StopTimer()
			c.armed = 0
		}
		return
	}
	if c.armed == next {
		return
	}
	c.armed = next
	if err := sc.SetTimer(next - now); err != nil {
		sdk.Log(sdk.LevelWarn, "toxics: set timer: "+err.Error())
	}
}

// OnTimer releases the pieces that are due, in order, then the end of a
// drained direction that ended.
func (c *conn) OnTimer(sc *sdk.Conn) {
	now := sdk.Now()
	c.armed = 0
	for d := range c.q {
		dir := sdk.Direction(d)
		q := &c.q[d]
		i, off := 0, 0
		for ; i < len(q.pieces) && q.pieces[i].due <= now; i++ {
			send(sc, dir, q.buf[off:off+q.pieces[i].n])
			off += q.pieces[i].n
		}
		if i == 0 {
			continue
		}
		q.pieces = q.pieces[:copy(q.pieces, q.pieces[i:])]
		q.buf = q.buf[:copy(q.buf, q.buf[off:])]
		if len(q.pieces) > 0 {
			continue
		}
		if q.reset {
			c.resetConn(sc, dir)
			return
		}
		if q.ended {
			if err := sc.CloseWrite(dir); err != nil {
				sdk.Log(sdk.LevelWarn, "toxics: close write "+dir.String()+": "+err.Error())
			}
		}
	}
	c.arm(sc, now)
}

func send(sc *sdk.Conn, dir sdk.Direction, b []byte) {
	if len(b) == 0 {
		return
	}
	if err := sc.Send(dir, b); err != nil {
		sdk.Log(sdk.LevelWarn, "toxics: send "+dir.String()+": "+err.Error())
	}
}

func (c *conn) OnClose(*sdk.Conn) {}
