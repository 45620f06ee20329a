// Command ratelimit is the tunnel plugin that limits each client IP
// address: new connections per second, and bytes per second. The limits
// are token buckets kept in the plugin's shared state (ABI v2), so every
// instance of the plugin and every connection from one address draw from
// the same buckets, and timed with the host's monotonic clock. A
// connection over its limit gets an optional reply and is closed; bytes
// over theirs are delayed (shaped, with the connection's timer) or close
// the connection. See README.md.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o ratelimit.wasm ./plugins/ratelimit
package main

import (
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

type config struct {
	ConnectionsPerSecond float64 `json:"connections_per_second"`
	ConnectionsBurst     int64   `json:"connections_burst"`
	BytesPerSecond       float64 `json:"bytes_per_second"`
	BytesBurst           int64   `json:"bytes_burst"`
	BytesFrom            string  `json:"bytes_from"` // "client" (default), "server" or "both"
	OnBytes              string  `json:"on_bytes"`   // "delay" (default) or "close"
	MaxDelayed           int64   `json:"max_delayed"`
	MaxDelayedTotal      int64   `json:"max_delayed_total"`
	Reply                string  `json:"reply"` // sent to the client before a close
}

// bucket is a token bucket as a GCRA: the state is one time, the
// theoretical arrival time (TAT) of the next unit; a unit costs interval,
// and at most burst units may be taken ahead of time.
type bucket struct {
	on       bool
	interval float64 // ns per unit
	tau      int64   // ns: how far ahead of now the TAT may run (burst × interval)
}

func newBucket(rate float64, burst int64) bucket {
	if rate <= 0 {
		return bucket{}
	}
	iv := 1e9 / rate
	return bucket{on: true, interval: iv, tau: int64(math.Min(float64(burst)*iv, math.MaxInt64/4))}
}

const (
	defaultMaxDelayed = 4 << 20
	// defaultMaxDelayedTotal bounds the bytes all the connections of one
	// instance hold: they share its memory (a Go guest's heap needs about
	// twice what it holds), and a guest that runs out fails every
	// connection on it.
	defaultMaxDelayedTotal = 16 << 20
	onDelay                = "delay"
	onClose                = "close"
)

type plugin struct {
	conns      bucket
	bytes      bucket
	dirs       [2]bool
	close      bool // on_bytes = "close"
	maxDelayed int64
	// maxDelayedTotal bounds delayedNow, the bytes the connections of
	// this instance hold at the moment.
	maxDelayedTotal, delayedNow int64
	reply                       []byte

	limitedConns sdk.Counter
	limitedBytes sdk.Counter
	delayedBytes sdk.Counter
	delayedGauge sdk.Gauge // delayed_bytes: what the instances hold now
	warned       bool      // the state store was full
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("ratelimit", err)
	}
	if c.ConnectionsPerSecond < 0 || c.BytesPerSecond < 0 || c.ConnectionsBurst < 0 || c.BytesBurst < 0 || c.MaxDelayed < 0 || c.MaxDelayedTotal < 0 {
		return nil, errors.New("ratelimit: rates, bursts, max_delayed and max_delayed_total must not be negative")
	}
	if c.ConnectionsPerSecond == 0 && c.BytesPerSecond == 0 {
		return nil, errors.New(`ratelimit: no limit: set "connections_per_second" and/or "bytes_per_second", e.g. {"connections_per_second": 10, "connections_burst": 20}`)
	}
	if c.ConnectionsBurst > 0 && c.ConnectionsPerSecond == 0 {
		return nil, errors.New(`ratelimit: "connections_burst" needs "connections_per_second"`)
	}
	if c.BytesBurst > 0 && c.BytesPerSecond == 0 {
		return nil, errors.New(`ratelimit: "bytes_burst" needs "bytes_per_second"`)
	}
	p := &plugin{maxDelayed: defaultMaxDelayed, maxDelayedTotal: defaultMaxDelayedTotal, reply: []byte(c.Reply)}
	if c.ConnectionsPerSecond > 0 {
		burst := c.ConnectionsBurst
		if burst == 0 {
			burst = int64(math.Max(1, math.Ceil(c.ConnectionsPerSecond)))
		}
		p.conns = newBucket(c.ConnectionsPerSecond, burst)
	}
	if c.BytesPerSecond > 0 {
		burst := c.BytesBurst
		if burst == 0 {
			burst = int64(math.Max(64<<10, c.BytesPerSecond))
		}
		p.bytes = newBucket(c.BytesPerSecond, burst)
	}
	switch c.BytesFrom {
	case "", "client":
		p.dirs[sdk.ClientToServer] = true
	case "server":
		p.dirs[sdk.ServerToClient] = true
	case "both":
		p.dirs = [2]bool{true, true}
	default:
		return nil, errors.New(`ratelimit: "bytes_from" must be "client", "server" or "both", not ` + strconv.Quote(c.BytesFrom))
	}
	switch c.OnBytes {
	case "", onDelay:
	case onClose:
		p.close = true
	default:
		return nil, errors.New(`ratelimit: "on_bytes" must be "delay" or "close", not ` + strconv.Quote(c.OnBytes))
	}
	if c.MaxDelayed > 0 {
		p.maxDelayed = c.MaxDelayed
	}
	if c.MaxDelayedTotal > 0 {
		p.maxDelayedTotal = c.MaxDelayedTotal
	}
	p.limitedConns = sdk.NewCounter("limited_total", "limit", "connections")
	p.limitedBytes = sdk.NewCounter("limited_total", "limit", "bytes")
	p.delayedBytes = sdk.NewCounter("delayed_bytes_total")
	p.delayedGauge = sdk.NewGauge("delayed_bytes")
	return p, nil
}

// take draws cost units from the bucket at key at time at (sdk.Now): it
// returns how long after at the caller must wait before they are its (0:
// now), and whether it may have them at all within the burst (when not,
// nothing is drawn unless force).
// The read-modify-write is a compare-and-swap loop on the shared state, so
// instances racing on one key each draw their own units.
func (p *plugin) take(key string, b *bucket, cost int64, force bool, at time.Duration) (wait time.Duration, ok bool) {
	now := int64(at)
	// Bounded as tau is: a tiny rate's interval (1e-12/s: 1e21 ns) would
	// overflow int64 and refuse even the first unit.
	inc := int64(math.Min(float64(cost)*b.interval, maxCost))
	for range 16 {
		old, _ := sdk.StateGet(key)
		tat, valid := sdk.StateInt(old)
		if !valid || tat < now {
			tat = now
		}
		next := tat + inc
		if next < tat {
			next = math.MaxInt64 // a tiny rate's forced draws, piled up
		}
		ahead := next - now - b.tau
		if ahead > 0 && !force {
			return time.Duration(ahead), false
		}
		swapped, err := sdk.StateCompareAndSwap(key, old, sdk.StateValue(next))
		if err != nil {
			if !p.warned {
				p.warned = true
				sdk.Log(sdk.LevelWarn, "ratelimit: shared state: "+err.Error()+": not limiting what the store cannot hold")
			}
			return 0, true
		}
		if swapped {
			return time.Duration(max(ahead, 0)), true
		}
	}
	sdk.Log(sdk.LevelWarn, "ratelimit: "+key+": too much contention; letting it pass")
	return 0, true
}

// maxCost (ns) bounds what take charges a bucket for one draw.
const maxCost = math.MaxInt64 / 4

// release deletes the bucket at key when it is full again (its TAT is
// past), which is the same as no bucket: the state holds only the
// addresses that are using their limit.
func release(key string) {
	old, ok := sdk.StateGet(key)
	if !ok {
		return
	}
	if tat, valid := sdk.StateInt(old); !valid || tat <= int64(sdk.Now()) {
		_, _ = sdk.StateCompareAndSwap(key, old, nil)
	}
}

// clientIP is the host of the client's address.
func clientIP(c *sdk.Conn) string {
	addr := c.Info().Client
	if host, _, ok := nofmt.SplitHostPort(addr); ok {
		return host
	}
	return addr
}

func (p *plugin) NewConn(c *sdk.Conn) (sdk.Handler, error) {
	ip := clientIP(c)
	h := &conn{p: p, ip: ip}
	if p.conns.on {
		if _, ok := p.take("c:"+ip, &p.conns, 1, false, sdk.Now()); !ok {
			p.limitedConns.Inc()
			sdk.Log(sdk.LevelWarn, "ratelimit: "+ip+": over the connection rate: closing")
			h.refuse(c, "connections")
			return h, nil
		}
		h.tookConn = true
	}
	if p.bytes.on {
		for d := range p.dirs {
			if p.dirs[d] {
				h.keys[d] = "b" + strconv.Itoa(d) + ":" + ip
			}
		}
	}
	return h, nil
}

// piece is a run of delayed bytes, due at a time.
type piece struct {
	due time.Duration
	n   int
}

// queue is what one direction delays, in order.
type queue struct {
	buf    []byte
	pieces []piece
	ended  bool // the source ended: half-close once drained
	paused bool // the source's reads are paused while bytes wait (PauseRead)
}

type conn struct {
	p        *plugin
	ip       string
	keys     [2]string // bucket of each limited direction
	q        [2]queue
	armed    time.Duration
	closed   bool
	tookConn bool
}

// refuse replies (if configured) and closes the connection.
func (h *conn) refuse(c *sdk.Conn, limit string) {
	h.closed = true
	if err := c.SetTag("ratelimit.limited", limit); err != nil {
		sdk.Log(sdk.LevelWarn, "ratelimit: tag: "+err.Error())
	}
	if len(h.p.reply) > 0 {
		if err := c.Send(sdk.ServerToClient, h.p.reply); err != nil {
			sdk.Log(sdk.LevelWarn, "ratelimit: reply: "+err.Error())
		}
	}
	if err := c.Close(); err != nil {
		sdk.Log(sdk.LevelWarn, "ratelimit: close: "+err.Error())
	}
}

func (h *conn) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if h.closed {
		return sdk.Drop
	}
	key := h.keys[dir&1]
	if key == "" {
		return sdk.Forward
	}
	q := &h.q[dir&1]
	if len(data) > 0 {
		// One reading of the clock for the draw and the due time: a
		// second one, later, put the due time off by the time between.
		now := sdk.Now()
		wait, ok := h.p.take(key, &h.p.bytes, int64(len(data)), !h.p.close, now)
		if !ok {
			return h.overBytes(c, "over the byte rate "+dir.String())
		}
		if wait == 0 && len(q.pieces) == 0 {
			return sdk.Forward
		}
		due, k := now+wait, 0
		if n := len(q.pieces); n > 0 {
			due = max(due, q.pieces[n-1].due)
		} else {
			// What the bucket allows now goes now; the rest waits.
			k = h.p.conforming(len(data), due, now)
		}
		// The bounds count what would wait, not what goes at once; and a
		// run that finds nothing waiting is held whatever max_delayed
		// says: its sender is paused from here on, so it is at most one
		// read of the tunnel's (a max_delayed below that closed every
		// ordinary upload at its first read). max_delayed bounds what
		// piles up behind it; max_delayed_total, the instance's memory.
		if len(q.pieces) > 0 && int64(len(q.buf)+len(data)-k) > h.p.maxDelayed {
			return h.overBytes(c, "more than "+strconv.FormatInt(h.p.maxDelayed, 10)+" bytes delayed "+dir.String())
		}
		if h.p.delayedNow+int64(len(data)-k) > h.p.maxDelayedTotal {
			return h.overBytes(c, "the connections of this instance hold more than "+strconv.FormatInt(h.p.maxDelayedTotal, 10)+" bytes delayed (max_delayed_total)")
		}
		if k > 0 { // never all of data: its last byte is due later
			if err := c.Send(dir, data[:k]); err != nil {
				sdk.Log(sdk.LevelWarn, "ratelimit: send: "+err.Error())
			}
			data = data[k:]
		}
		h.p.holding(int64(len(data)))
		h.p.delayedBytes.Add(int64(len(data)))
		q.buf = append(q.buf, data...)
		q.pieces = append(q.pieces, piece{due: due, n: len(data)})
		if !q.paused {
			// Slow the sender down rather than hold what it keeps
			// sending: the tunnel stops reading it until the bytes
			// that wait are sent.
			if err := c.PauseRead(dir); err != nil {
				sdk.Log(sdk.LevelWarn, "ratelimit: pause read: "+err.Error())
			} else {
				q.paused = true
			}
		}
		h.arm(c, now)
	}
	if end && len(q.pieces) > 0 {
		q.ended = true
		if err := c.DeferEnd(dir); err != nil {
			sdk.Log(sdk.LevelWarn, "ratelimit: defer end: "+err.Error())
		}
	}
	return sdk.Drop
}

// overBytes closes the connection for a byte limit, saying why.
func (h *conn) overBytes(c *sdk.Conn, why string) sdk.Action {
	h.p.limitedBytes.Inc()
	sdk.Log(sdk.LevelWarn, "ratelimit: "+h.ip+": "+why+": closing")
	h.refuse(c, "bytes")
	return sdk.Drop
}

// holding counts n more bytes delayed (n < 0: fewer) by the instance.
func (p *plugin) holding(n int64) {
	p.delayedNow += n
	p.delayedGauge.Add(n)
}

// conforming returns how many of the first bytes of a run of n, whose
// last byte the bucket allows at due, it allows at now: the bytes go out
// as the bucket refills, not the whole run once its last byte may.
func (p *plugin) conforming(n int, due, now time.Duration) int {
	if due <= now {
		return n
	}
	if float64(n)*p.bytes.interval > maxCost {
		// take charged the run maxCost, not a cost per byte: which of
		// its bytes the bucket allows is unknown until due.
		return 0
	}
	later := math.Ceil(float64(due-now) / p.bytes.interval) // bytes not allowed yet
	if later >= float64(n) {
		return 0
	}
	return n - int(later)
}

// slice is how often the timer sends what the bucket allows of a run that
// is not due yet: the receiver gets a steady stream, and bytes keep moving
// (an idle timeout sees them) while the sender is paused.
const slice = 100 * time.Millisecond

// arm sets the timer to the earliest moment a queue's first run may send
// some bytes: its due time, or a slice from now (or a byte's interval, if
// longer), whichever is first.
func (h *conn) arm(c *sdk.Conn, now time.Duration) {
	step := time.Duration(math.Min(math.Max(float64(slice), h.p.bytes.interval), float64(time.Hour)))
	next := time.Duration(-1)
	for d := range h.q {
		if q := &h.q[d]; len(q.pieces) > 0 {
			at := min(q.pieces[0].due, now+step)
			if next < 0 || at < next {
				next = at
			}
		}
	}
	if next < 0 || h.armed != 0 && h.armed <= next {
		// A timer that fires no later is armed already: moving it later
		// (bytes of the other direction queued in OnData) would put off
		// the slice this direction waits for.
		return
	}
	if err := c.SetTimer(next - now); err != nil {
		sdk.Log(sdk.LevelWarn, "ratelimit: set timer: "+err.Error())
		return
	}
	h.armed = next
}

// OnTimer sends the delayed bytes that are due.
// keepDelayed is the largest delay buffer a connection keeps once empty.
const keepDelayed = 64 << 10

func (h *conn) OnTimer(c *sdk.Conn) {
	now := sdk.Now()
	h.armed = 0
	for d := range h.q {
		dir := sdk.Direction(d)
		q := &h.q[d]
		i, off := 0, 0
		for ; i < len(q.pieces) && q.pieces[i].due <= now; i++ {
			off += q.pieces[i].n
		}
		if i < len(q.pieces) {
			// The first run not due yet: what the bucket allows of it.
			k := h.p.conforming(q.pieces[i].n, q.pieces[i].due, now)
			q.pieces[i].n -= k
			off += k
		}
		if off == 0 {
			continue
		}
		if err := c.Send(dir, q.buf[:off]); err != nil {
			sdk.Log(sdk.LevelWarn, "ratelimit: send: "+err.Error())
		}
		q.pieces = q.pieces[:copy(q.pieces, q.pieces[i:])]
		q.buf = q.buf[:copy(q.buf, q.buf[off:])]
		h.p.holding(-int64(off))
		if len(q.buf) == 0 && cap(q.buf) > keepDelayed {
			// A burst's memory goes back to the instance; a connection
			// paced at its rate, which drains at nearly every fire,
			// keeps its small buffers rather than regrow them.
			q.buf, q.pieces = nil, nil
		}
		if len(q.pieces) == 0 && q.paused {
			q.paused = false
			if err := c.ResumeRead(dir); err != nil {
				sdk.Log(sdk.LevelWarn, "ratelimit: resume read: "+err.Error())
			}
		}
		if len(q.pieces) == 0 && q.ended {
			if err := c.CloseWrite(dir); err != nil {
				sdk.Log(sdk.LevelWarn, "ratelimit: close write: "+err.Error())
			}
		}
	}
	h.arm(c, now)
}

// OnClose forgets the client's buckets that are full again, and the bytes
// it still held.
func (h *conn) OnClose(*sdk.Conn) {
	for d := range h.q {
		h.p.holding(-int64(len(h.q[d].buf)))
		h.q[d] = queue{}
	}
	if h.tookConn {
		release("c:" + h.ip)
	}
	for _, k := range h.keys {
		if k != "" {
			release(k)
		}
	}
}
