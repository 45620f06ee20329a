// Command toxics is the tunnel plugin that injects network faults, per
// direction, like toxiproxy's toxics: latency with jitter (bytes are held
// and released by a timer, in order, and the end of the stream follows
// them), bandwidth (bytes released at a rate), a slicer (chunks cut into
// small pieces, optionally spaced in time), slow close (the half-close
// delayed), timeout (nothing passes any more; the connection is closed
// after a while) and a reset after N bytes (the connection is closed once
// N bytes have passed). The toxics of a direction can apply to a share of
// the connections (probability) and start only once a byte pattern has
// passed (a content trigger). See README.md for its configuration.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o toxics.wasm ./plugins/toxics
package main

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
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
	Bandwidth  int64  `json:"bandwidth"`   // bytes per second; 0: unlimited
	SlowClose  string `json:"slow_close"`  // delay of the half-close
	Timeout    string `json:"timeout"`     // stop forwarding; close after this ("0s": never)

	Probability *float64 `json:"probability"` // share of the connections the toxics apply to
	Trigger     string   `json:"trigger"`     // the toxics start once these bytes have passed
	TriggerOn   string   `json:"trigger_on"`  // whose bytes are watched: "client" or "server"
}

type config struct {
	Client *dirConfig `json:"client"` // bytes from the client (client -> server)
	Server *dirConfig `json:"server"` // bytes from the server (server -> client)
	Seed   uint64     `json:"seed"`   // of the jitter's random numbers
	// MaxHeld bounds the bytes one direction of a connection holds back:
	// past it the sender's reads are paused until half of it is out.
	MaxHeld int64 `json:"max_held"`
	// MaxHeldTotal bounds what all the connections of an instance hold
	// back: past it, a sender whose bytes are held is paused too.
	MaxHeldTotal int64 `json:"max_held_total"`
}

// Defaults of max_held (a window of 1 MiB) and max_held_total (an
// instance's 64 MiB memory_limit holds 16 MiB in a Go guest with room).
const (
	defaultMaxHeld      = 1 << 20
	defaultMaxHeldTotal = 16 << 20
)

// keepHeld is the largest buffer a direction keeps once it is empty.
const keepHeld = 64 << 10

// toxic is the parsed dirConfig.
type toxic struct {
	on         bool
	latency    time.Duration
	jitter     time.Duration
	slice      int
	sliceDelay time.Duration
	resetAfter int64
	bandwidth  int64
	slowClose  time.Duration
	timeoutOn  bool
	timeout    time.Duration // 0 with timeoutOn: never close
	prob       float64
	trigger    []byte
	triggerOn  int // direction whose bytes are watched
}

func (t *toxic) delays() bool {
	return t.latency > 0 || t.jitter > 0 || t.sliceDelay > 0 || t.bandwidth > 0
}

type plugin struct {
	t       [2]toxic
	rng     *rand.Rand
	maxHeld int
	// maxHeldTotal bounds heldNow, the bytes the connections of this
	// instance hold back at the moment.
	maxHeldTotal, heldNow int
}

// maxDur bounds every duration of the config: a delay past it is a typo,
// and past about 146 years the arithmetic of a chunk's due time (now +
// latency, 2*jitter) would wrap, delaying nothing or failing the instance.
const maxDur = 24 * time.Hour

func parseDur(name, s string) (time.Duration, error) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, errors.New(strconv.Quote(name) + ` must be a duration such as "100ms", not ` + strconv.Quote(s))
	}
	if d > maxDur {
		return 0, errors.New(strconv.Quote(name) + ` must be at most 24h, not ` + strconv.Quote(s))
	}
	return d, nil
}

func parseDir(side string, dir int, c *dirConfig) (toxic, error) {
	var t toxic
	if c == nil {
		return t, nil
	}
	var err error
	wrap := func(e error) error { return nofmt.Wrap("toxics: "+side, e) }
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
		return t, wrap(errors.New(`"slice" must be >= 0, not ` + strconv.Itoa(c.Slice)))
	}
	if c.ResetAfter < 0 {
		return t, wrap(errors.New(`"reset_after" must be >= 0, not ` + strconv.FormatInt(c.ResetAfter, 10)))
	}
	if t.sliceDelay > 0 && c.Slice == 0 {
		return t, wrap(errors.New(`"slice_delay" needs "slice"`))
	}
	if c.Bandwidth < 0 {
		return t, wrap(errors.New(`"bandwidth" must be >= 0 bytes per second, not ` + strconv.FormatInt(c.Bandwidth, 10)))
	}
	if t.slowClose, err = parseDur("slow_close", c.SlowClose); err != nil {
		return t, wrap(err)
	}
	if c.Timeout != "" {
		if t.timeout, err = parseDur("timeout", c.Timeout); err != nil {
			return t, wrap(err)
		}
		t.timeoutOn = true
	}
	t.slice, t.resetAfter, t.bandwidth = c.Slice, c.ResetAfter, c.Bandwidth
	t.on = t.delays() || t.slice > 0 || t.resetAfter > 0 || t.slowClose > 0 || t.timeoutOn
	t.prob = 1
	if c.Probability != nil {
		if *c.Probability < 0 || *c.Probability > 1 {
			return t, wrap(errors.New(`"probability" must be from 0 to 1, not ` + strconv.FormatFloat(*c.Probability, 'g', -1, 64)))
		}
		t.prob = *c.Probability
	}
	t.trigger = []byte(c.Trigger)
	t.triggerOn = dir
	switch c.TriggerOn {
	case "":
	case "client":
		t.triggerOn = int(sdk.ClientToServer)
	case "server":
		t.triggerOn = int(sdk.ServerToClient)
	default:
		return t, wrap(errors.New(`"trigger_on" must be "client" or "server", not ` + strconv.Quote(c.TriggerOn)))
	}
	if c.TriggerOn != "" && c.Trigger == "" {
		return t, wrap(errors.New(`"trigger_on" needs "trigger"`))
	}
	if !t.on && (c.Probability != nil || c.Trigger != "") {
		return t, wrap(errors.New(`"probability" and "trigger" need a toxic to apply`))
	}
	return t, nil
}

// heldBound is the value of a max_held setting: v, or def for 0; from 0
// to 1 GiB.
func heldBound(name string, v int64, def int, defText string) (int, error) {
	if v < 0 || v > 1<<30 {
		return 0, errors.New(`toxics: "` + name + `" must be from 0 (the default, ` + defText + `) to 1073741824 (1 GiB), not ` + strconv.FormatInt(v, 10))
	}
	if v == 0 {
		return def, nil
	}
	return int(v), nil
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("toxics", err)
	}
	var err error
	p := &plugin{rng: rand.New(rand.NewPCG(c.Seed, 0x70c1c5))}
	if p.maxHeld, err = heldBound("max_held", c.MaxHeld, defaultMaxHeld, "1 MiB"); err != nil {
		return nil, err
	}
	if p.maxHeldTotal, err = heldBound("max_held_total", c.MaxHeldTotal, defaultMaxHeldTotal, "16 MiB"); err != nil {
		return nil, err
	}
	if p.t[sdk.ClientToServer], err = parseDir("client", int(sdk.ClientToServer), c.Client); err != nil {
		return nil, err
	}
	if p.t[sdk.ServerToClient], err = parseDir("server", int(sdk.ServerToClient), c.Server); err != nil {
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
	busy   time.Duration // bandwidth: when the bytes queued so far are all sent
	ended  bool          // the source ended: half-close at endAt, once drained (DeferEnd)
	paused bool          // more than max_held is held: the source's reads are paused
	endAt  time.Duration
	passed int64 // bytes let through so far (reset_after)
	reset  bool  // reset_after reached: close once drained
}

// watch looks for a trigger pattern in one direction's bytes.
type watch struct {
	tail  []byte // the last len(pattern)-1 bytes seen
	fired bool
}

type conn struct {
	p       *plugin
	q       [2]queue
	active  [2]bool // the toxics of each direction apply now
	chosen  [2]bool // the probability drew this connection
	w       [2]watch
	armed   time.Duration // due time of the armed timer; 0: none
	closeAt time.Duration // timeout: when the connection is closed; 0: never
}

func (p *plugin) NewConn(*sdk.Conn) (sdk.Handler, error) {
	c := &conn{p: p}
	for d := range p.t {
		t := &p.t[d]
		c.chosen[d] = t.on && (t.prob >= 1 || p.rng.Float64() < t.prob)
		c.active[d] = c.chosen[d] && len(t.trigger) == 0
	}
	return c, nil
}

// delay returns the latency of a chunk: latency ± jitter, not below 0.
func (p *plugin) delay(t *toxic) time.Duration {
	d := t.latency
	if t.jitter > 0 {
		d += time.Duration(p.rng.Int64N(int64(2*t.jitter)+1)) - t.jitter
	}
	return max(d, 0)
}

// watchTriggers looks for the trigger patterns watching direction dir in
// data. It returns where in data the toxics of dir start: len(data) when
// they do not (yet) apply, 0 when they already did.
func (c *conn) watchTriggers(sc *sdk.Conn, dir sdk.Direction, data []byte) int {
	from := len(data)
	if c.active[dir&1] {
		from = 0
	}
	for d := range c.p.t {
		t := &c.p.t[d]
		if !c.chosen[d] || c.active[d] || t.triggerOn != int(dir) {
			continue
		}
		w := &c.w[d]
		end := find(w.tail, data, t.trigger)
		if end < 0 {
			keep := len(t.trigger) - 1
			w.tail = append(w.tail, data[max(0, len(data)-keep):]...)
			w.tail = w.tail[:copy(w.tail, w.tail[max(0, len(w.tail)-keep):])]
			continue
		}
		c.active[d], w.tail = true, nil
		sdk.Log(sdk.LevelInfo, "toxics: "+strconv.Quote(string(t.trigger))+" seen "+dir.String()+": toxics "+sdk.Direction(d).String()+" on")
		if d == int(dir) {
			from = end
		}
	}
	return from
}

// find returns the index in data just past the first occurrence of pat in
// tail+data that ends in data, or -1.
func find(tail, data, pat []byte) int {
	if len(tail) > 0 {
		// An occurrence across the boundary: in tail + the first bytes of data.
		head := data[:min(len(data), len(pat)-1)]
		j := bytes.Index(append(append(make([]byte, 0, len(tail)+len(head)), tail...), head...), pat)
		if j >= 0 {
			return j + len(pat) - len(tail)
		}
	}
	if j := bytes.Index(data, pat); j >= 0 {
		return j + len(pat)
	}
	return -1
}

func (c *conn) OnData(sc *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	from := c.watchTriggers(sc, dir, data)
	if !c.active[dir&1] {
		return sdk.Forward // not (yet) toxic
	}
	t := &c.p.t[dir&1]
	q := &c.q[dir&1]
	if from > 0 {
		// The bytes up to the trigger pass untouched.
		send(sc, dir, data[:from])
		data = data[from:]
	}
	now := sdk.Now()
	if t.timeoutOn {
		// Nothing passes any more; the connection closes after the timeout.
		if t.timeout > 0 && c.closeAt == 0 {
			c.closeAt = now + t.timeout
			sdk.Log(sdk.LevelInfo, "toxics: timeout "+dir.String()+": closing in "+t.timeout.String())
		}
		if end {
			// Keep the destination open: no end of stream either.
			if err := sc.DeferEnd(dir); err != nil {
				sdk.Log(sdk.LevelWarn, "toxics: defer end "+dir.String()+": "+err.Error())
			}
		}
		c.arm(sc, now)
		return sdk.Drop
	}
	if q.reset {
		return sdk.Drop
	}
	if t.resetAfter > 0 && q.passed+int64(len(data)) >= t.resetAfter {
		data = data[:t.resetAfter-q.passed]
		q.reset = true
	}
	q.passed += int64(len(data))
	if !t.delays() && len(q.pieces) == 0 && t.slowClose == 0 {
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
	due := max(now+c.p.delay(t), q.last) // in order: never before the bytes ahead
	step := t.slice
	if t.bandwidth > 0 && step == 0 {
		step = int(min(max(t.bandwidth/20, 1), 64<<10)) // a piece per 50 ms
	}
	for b := data; len(b) > 0; {
		k := len(b)
		if step > 0 {
			k = min(step, k)
		}
		if t.bandwidth > 0 {
			due = max(due, q.busy) + time.Duration(int64(k)*int64(time.Second)/t.bandwidth)
			q.busy = due
		}
		q.buf = append(q.buf, b[:k]...)
		q.pieces = append(q.pieces, piece{due: due, n: k})
		c.p.heldNow += k
		b = b[k:]
		due += t.sliceDelay
	}
	if len(q.pieces) > 0 {
		q.last = q.pieces[len(q.pieces)-1].due
	}
	if (len(q.buf) > c.p.maxHeld || c.p.heldNow > c.p.maxHeldTotal && len(q.buf) > 0) && !q.paused && !end {
		// A window, as a real network's: the sender waits rather than
		// the plugin holding whatever it writes; and so does one whose
		// bytes are held while the instance holds too much in all
		// (it resumes once its own are out, at the latest: no stall).
		if err := sc.PauseRead(dir); err != nil {
			sdk.Log(sdk.LevelWarn, "toxics: pause read "+dir.String()+": "+err.Error())
		} else {
			q.paused = true
		}
	}
	if end || q.reset {
		if len(q.pieces) == 0 && (q.reset || t.slowClose == 0) {
			if q.reset {
				c.resetConn(sc, dir)
			}
			return sdk.Drop // nothing held: the host ends dir now
		}
		if end {
			q.ended = true
			q.endAt = max(now, q.last) + t.slowClose
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
	sdk.Log(sdk.LevelInfo, "toxics: reset after "+strconv.FormatInt(c.p.t[dir&1].resetAfter, 10)+" bytes "+dir.String())
	if err := sc.Close(); err != nil {
		sdk.Log(sdk.LevelWarn, "toxics: close: "+err.Error())
	}
}

// arm sets the timer to the earliest event: a due piece, a deferred
// half-close, the timeout's close.
func (c *conn) arm(sc *sdk.Conn, now time.Duration) {
	next := time.Duration(-1)
	earlier := func(t time.Duration) {
		if next < 0 || t < next {
			next = t
		}
	}
	for d := range c.q {
		q := &c.q[d]
		switch {
		case len(q.pieces) > 0:
			earlier(q.pieces[0].due)
		case q.ended:
			earlier(q.endAt)
		}
	}
	if c.closeAt > 0 {
		earlier(c.closeAt)
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
// drained direction that ended, and closes the connection when a timeout
// says so.
func (c *conn) OnTimer(sc *sdk.Conn) {
	now := sdk.Now()
	c.armed = 0
	if c.closeAt > 0 && c.closeAt <= now {
		sdk.Log(sdk.LevelInfo, "toxics: timeout: closing the connection")
		if err := sc.Close(); err != nil {
			sdk.Log(sdk.LevelWarn, "toxics: close: "+err.Error())
		}
		c.closeAt = 0
		return
	}
	for d := range c.q {
		dir := sdk.Direction(d)
		q := &c.q[d]
		i, off := 0, 0
		for ; i < len(q.pieces) && q.pieces[i].due <= now; i++ {
			send(sc, dir, q.buf[off:off+q.pieces[i].n])
			off += q.pieces[i].n
		}
		if i > 0 {
			c.p.heldNow -= off
			q.pieces = q.pieces[:copy(q.pieces, q.pieces[i:])]
			q.buf = q.buf[:copy(q.buf, q.buf[off:])]
			if len(q.buf) == 0 && cap(q.buf) > keepHeld {
				// A burst's memory goes back to the instance: a
				// connection that once filled its max_held and stays
				// open must not keep a buffer that size, or a few
				// dozen such connections run the instance out of
				// memory_limit and every connection on it is reset.
				q.buf, q.pieces = nil, nil
			}
		}
		if q.paused && len(q.buf) <= c.p.maxHeld/2 && (c.p.heldNow <= c.p.maxHeldTotal/2 || len(q.buf) == 0) {
			q.paused = false
			if err := sc.ResumeRead(dir); err != nil {
				sdk.Log(sdk.LevelWarn, "toxics: resume read "+dir.String()+": "+err.Error())
			}
		}
		if len(q.pieces) > 0 {
			continue
		}
		if q.reset && i > 0 {
			c.resetConn(sc, dir)
			return
		}
		if q.ended && q.endAt <= now {
			q.ended = false
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

// OnClose forgets what the connection still held.
func (c *conn) OnClose(*sdk.Conn) {
	for d := range c.q {
		c.p.heldNow -= len(c.q[d].buf)
		c.q[d] = queue{}
	}
}
