package main

import (
	"bytes"
	"strconv"

	"github.com/tunnelwasm/tunnel/sdk"
)

// Parser states of the requests (client -> server).
const (
	reqStart    = iota // at a command's first byte
	reqArrayLen        // after '*': the argument count
	reqBulkLen         // an argument's "$<len>\r\n"
	reqBulkData        // an argument's bytes and CRLF
	reqInline          // an inline command: up to '\n'
)

// Bounds of what the plugin keeps of one command while it decides.
const (
	maxArgs   = 1<<31 - 1 // Redis's bound on a command's argument count (INT_MAX)
	maxInline = 64 << 10  // Redis's own limit on an inline command
	maxNumLen = 20
)

// conn is one connection: both parsers and the error replies waiting for
// the replies ahead of them.
type conn struct {
	p *plugin

	// Requests.
	st      int
	num     numReader
	args    int64 // arguments left in the current command, this one included
	nargs   int64 // the command's argument count
	argIdx  int   // index of the argument being read
	bulk    int64 // bytes left of the current argument, CRLF included
	bulkLen int64 // the current argument's length
	keeping bool  // the command's first bytes are kept until its name is known
	kept    []byte
	verdict int // of the current command once decided
	name    []byte
	sub     []byte
	haveSub bool
	nameEnd int // bytes of the command up to the end of its name
	// The name or subcommand is longer than maxName: in no list.
	nameLong, subLong bool
	// The name or subcommand holds a NUL byte: Redis compares names with
	// strcasecmp, which stops there, so name and sub end before it.
	nameCut, subCut bool
	inline          []byte

	// Replies.
	rst    replyState
	sent   int64    // commands passed to the server (each owes a reply)
	got    int64    // replies read
	limit  int64    // replies are counted reliably up to this one; -1: always
	queue  []queued // queue[qhead:] wait; the ones before were sent
	qhead  int
	qbytes int // bytes of the replies in queue[qhead:]
	// closing: the protocol error's reply is among the bytes this call
	// passes on; the connection is closed once they are sent.
	closing bool

	blocked int64
	w       writer

	// Batched per requests call: a chunk may hold thousands of blocked
	// commands, and a host call (send, tag, log) for each would make the
	// call outlast the plugin's call_timeout.
	now      []byte // error replies due at once, sent in one go
	tagged   int64  // the blocked count the tag resp.blocked shows
	logged   int    // blocks logged one by one in this call
	unlogged int64  // blocks of this call past maxLogsPerCall
}

// maxQueued bounds the bytes of the error replies waiting for the replies
// ahead of them (well below the 4 MiB a call may send by default, as
// they are all sent in one call when the bound is reached).
const maxQueued = 1 << 20

// maxNow bounds the error replies one call sends at once: past it the
// connection is closed (a protocol error), rather than the call sending
// more than the plugin's max_output (4 MiB by default), which would fail
// the instance and every connection on it. With the default error text a
// 64 KiB chunk of blocked commands makes about 440 KB; a long custom one
// can make more.
const maxNow = 2 << 20

// waiting returns how many error replies wait for replies ahead of them.
func (h *conn) waiting() int { return len(h.queue) - h.qhead }

// queued is an error reply to send once the replies up to after are out;
// close: the connection is closed once it is sent (a protocol error).
type queued struct {
	after int64
	reply []byte
	close bool
}

func (p *plugin) NewConn(*sdk.Conn) (sdk.Handler, error) {
	return &conn{p: p, limit: -1}, nil
}

// writer collects what one OnData call passes on: runs of the input and
// inserted bytes. While it holds only the input's first n bytes it copies
// nothing.
type writer struct {
	data   []byte
	direct bool
	n      int
	buf    []byte
	closes bool // the protocol error's reply was inserted: the last bytes of the call
}

func (w *writer) reset(data []byte) {
	w.data, w.direct, w.n, w.buf, w.closes = data, true, 0, w.buf[:0], false
}

func (w *writer) copyMode() {
	if w.direct {
		w.buf = append(w.buf[:0], w.data[:w.n]...)
		w.direct = false
	}
}

// pass passes data[i:j] on.
func (w *writer) pass(i, j int) {
	if i == j {
		return
	}
	if w.direct && i == w.n {
		w.n = j
		return
	}
	w.copyMode()
	w.buf = append(w.buf, w.data[i:j]...)
}

// insert passes b on.
func (w *writer) insert(b []byte) {
	if len(b) == 0 {
		return
	}
	w.copyMode()
	w.buf = append(w.buf, b...)
}

// insertQueued passes on a queued error reply.
func (w *writer) insertQueued(q queued) {
	w.insert(q.reply)
	w.closes = w.closes || q.close
}

// finish sends what was collected and returns the action.
func (w *writer) finish(c *sdk.Conn, dir sdk.Direction) sdk.Action {
	if w.direct && w.n == len(w.data) {
		return sdk.Forward
	}
	out := w.buf
	if w.direct {
		out = w.data[:w.n]
	}
	if len(out) > 0 {
		if err := c.Send(dir, out); err != nil {
			sdk.Log(sdk.LevelWarn, "resp: send "+dir.String()+": "+err.Error())
		}
	}
	return sdk.Drop
}

func (h *conn) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if dir == sdk.ServerToClient {
		return h.replies(c, data, end)
	}
	return h.requests(c, data, end)
}

func (h *conn) OnClose(*sdk.Conn) {}

// protocolError answers a request the server would refuse as Redis does:
// the replies of the commands before it, then the error, then the
// connection closed. Past it the plugin could no longer tell commands
// apart, so nothing more goes to the server.
func (h *conn) protocolError(c *sdk.Conn, msg string) sdk.Action {
	h.w.finish(c, sdk.ClientToServer) // the commands before it
	h.flushBlocked(c)
	st := h.st
	h.st = -1
	reply := []byte("-ERR Protocol error: " + msg + "\r\n")
	after := h.sent
	if st == reqBulkLen && !h.keeping && h.verdict == pass {
		// The command's start went to the server, and was counted, but
		// the server never gets the whole of it: it owes it no reply.
		after--
	}
	if h.limit >= 0 && after > h.limit {
		after = h.limit
	}
	if h.rst.broken || h.waiting() == 0 && h.got >= after {
		sdk.Log(sdk.LevelWarn, "resp: protocol error from the client: "+msg+"; closing")
		if err := c.Send(sdk.ServerToClient, reply); err != nil {
			sdk.Log(sdk.LevelWarn, "resp: send: "+err.Error())
		}
		h.close(c)
		return sdk.Drop
	}
	// Replies are owed for commands sent before it: closing now would
	// lose them (Redis answers them first).
	sdk.Log(sdk.LevelWarn, "resp: protocol error from the client: "+msg+"; closing once the replies owed are sent")
	h.queue = append(h.queue, queued{after: after, reply: reply, close: true})
	h.qbytes += len(reply)
	return sdk.Drop
}

// close closes the connection once what was sent is written.
func (h *conn) close(c *sdk.Conn) {
	h.closing = true
	if err := c.Close(); err != nil {
		sdk.Log(sdk.LevelWarn, "resp: close: "+err.Error())
	}
}

// maxLogsPerCall bounds the blocks logged one by one in one call; the
// others of the call are logged as one line.
const maxLogsPerCall = 8

// requests parses the client's bytes: each command is passed, dropped
// (blocked) or renamed as soon as its name is known.
func (h *conn) requests(c *sdk.Conn, data []byte, end bool) sdk.Action {
	act := h.parseRequests(c, data, end)
	h.flushBlocked(c)
	return act
}

// flushBlocked sends the error replies due at once, the tag and the log
// line of the blocks of the current call.
func (h *conn) flushBlocked(c *sdk.Conn) {
	if len(h.now) > 0 {
		if err := c.Send(sdk.ServerToClient, h.now); err != nil {
			sdk.Log(sdk.LevelWarn, "resp: reply: "+err.Error())
		}
		h.now = h.now[:0]
	}
	if h.blocked == h.tagged {
		return // nothing blocked in this call: nothing to tag, count or log
	}
	h.tagged = h.blocked
	if err := c.SetTag("resp.blocked", strconv.FormatInt(h.blocked, 10)); err != nil {
		sdk.Log(sdk.LevelWarn, "resp: tag: "+err.Error())
	}
	h.p.counters.flush()
	if h.unlogged > 0 {
		sdk.Log(sdk.LevelWarn, "resp: blocked "+strconv.FormatInt(h.unlogged, 10)+" more commands")
	}
	h.logged, h.unlogged = 0, 0
}

func (h *conn) parseRequests(c *sdk.Conn, data []byte, end bool) sdk.Action {
	if h.st < 0 {
		return sdk.Drop // after a protocol error
	}
	w := &h.w
	w.reset(data)
	keepFrom := 0 // start of the bytes of data kept while deciding
	i := 0
	for i < len(data) {
		switch h.st {
		case reqStart:
			if len(h.now) > maxNow {
				return h.protocolError(c, "more than "+strconv.Itoa(maxNow)+" bytes of error replies for one chunk of blocked commands")
			}
			keepFrom = i
			if data[i] == '*' {
				if next := h.p.fastCommand(data, i); next > 0 {
					// A whole command that no rule names: it passes.
					w.pass(i, next)
					h.sent++
					i = next
					continue
				}
			}
			if data[i] != '*' {
				h.st, h.inline = reqInline, h.inline[:0]
				continue
			}
			h.keeping, h.kept = true, h.kept[:0]
			h.name, h.sub, h.haveSub, h.nameLong, h.subLong, h.argIdx = h.name[:0], h.sub[:0], false, false, false, 0
			h.nameCut, h.subCut = false, false
			h.st = reqArrayLen
			h.num.reset()
			h.num.strict = true
			i++
		case reqArrayLen, reqBulkLen:
			if h.st == reqBulkLen && h.bulkLen == -1 { // expecting '$'
				if data[i] != '$' {
					return h.protocolError(c, "expected '$', got '"+printable(data[i])+"'")
				}
				if h.verdict == pass && !h.keeping {
					w.pass(i, i+1)
				}
				h.bulkLen = 0
				i++
				continue
			}
			n, done, msg := h.num.read(data[i:])
			if msg == "invalid length" { // in Redis's words
				msg = "invalid bulk length"
				if h.st == reqArrayLen {
					msg = "invalid multibulk length"
				}
			}
			if msg != "" {
				return h.protocolError(c, msg)
			}
			if h.verdict == pass && !h.keeping {
				w.pass(i, i+n)
			}
			i += n
			if !done {
				continue
			}
			if h.st == reqArrayLen {
				if h.num.v > maxArgs {
					return h.protocolError(c, "invalid multibulk length")
				}
				h.args, h.nargs = h.num.v, h.num.v
				if h.num.v <= 0 { // "*0\r\n", "*-1\r\n": Redis ignores it
					h.endCommand(data, keepFrom, i)
					continue
				}
				h.verdict = pass
				h.nextArg()
				continue
			}
			if h.num.v < 0 || h.num.v > maxBulk {
				return h.protocolError(c, "invalid bulk length")
			}
			h.bulk, h.bulkLen = h.num.v+2, h.num.v
			h.st = reqBulkData
		case reqBulkData:
			n := int(min(int64(len(data)-i), h.bulk))
			// A name (or subcommand) longer than any in a list is decided
			// once its first maxName+1 bytes are read rather than kept
			// whole: a NUL among them ends the name Redis looks up.
			long := h.keeping && h.bulkLen > maxName
			if read := h.bulkLen + 2 - h.bulk; long && read <= maxName {
				n = min(n, int(maxName+1-read))
			}
			if h.keeping {
				h.collect(data[i : i+n])
			} else if h.verdict != block {
				w.pass(i, i+n)
			}
			i += n
			h.bulk -= int64(n)
			if long && h.bulkLen+2-h.bulk > maxName {
				h.decideMultibulk(c, data, keepFrom, i)
			}
			if h.bulk > 0 {
				continue
			}
			h.argIdx++
			h.args--
			if h.keeping && h.argIdx == 1 {
				h.nameEnd = len(h.kept) + i - keepFrom
			}
			if h.keeping && (h.argIdx == 2 || h.argIdx == 1 && (h.nameLong || h.args == 0 || !h.p.sub[string(h.name)])) {
				h.decideMultibulk(c, data, keepFrom, i)
			}
			if h.args == 0 {
				h.endCommand(data, keepFrom, i)
				continue
			}
			h.nextArg()
		case reqInline:
			j := i
			for j < len(data) && data[j] != '\n' {
				j++
			}
			if len(h.inline)+j-i > maxInline {
				return h.protocolError(c, "too big inline request")
			}
			h.inline = append(h.inline, data[i:j]...)
			if j == len(data) {
				i = j
				continue
			}
			i = j + 1
			h.inlineCommand(c)
			h.st = reqStart
		}
	}
	// Keep what is undecided for the next chunk.
	switch {
	case h.st == reqInline:
		if end {
			w.insert(h.inline) // an unfinished line: the server decides
		}
	case h.keeping && h.st != reqStart:
		if end {
			w.insert(h.kept)
			w.pass(keepFrom, len(data))
		} else {
			h.kept = append(h.kept, data[keepFrom:]...)
		}
	}
	return w.finish(c, sdk.ClientToServer)
}

func printable(b byte) string {
	if b < ' ' || b > '~' {
		return "\\x" + strconv.FormatUint(uint64(b), 16)
	}
	return string(b)
}

// fastCommand reads, at data[i], a whole multibulk command whose name's
// length and first letter no rule has (see plugin.plain) in one go, and
// returns the index past it; 0 when the command is not whole in data, is
// malformed, or needs a look: the state machine takes it then. Most
// commands of a busy connection go this way: fewer calls and branches per
// byte, which a WebAssembly guest pays dearly for.
func (p *plugin) fastCommand(data []byte, i int) int {
	n, j := fastNum(data, i+1)
	if n <= 0 || n > maxArgs {
		return 0
	}
	for a := int64(0); a < n; a++ {
		if j >= len(data) || data[j] != '$' {
			return 0
		}
		var l int64
		l, j = fastNum(data, j+1)
		if l < 0 || int64(len(data)-j) < l+2 {
			return 0
		}
		if a == 0 && (l == 0 || l >= maxPlain || !p.plain[l][data[j]] || bytes.IndexByte(data[j:j+int(l)], 0) >= 0) {
			return 0
		}
		j += int(l) + 2
	}
	return j
}

// fastNum reads "<digits>\r\n" at data[j]: the number and the index past
// it, or -1 when that is not there whole.
func fastNum(data []byte, j int) (int64, int) {
	var v int64
	k := j
	// At most 18 digits: a number that cannot wrap past int64 (a bulk
	// length of 18446744073709551617 was read as 1, framing the command
	// otherwise than Redis, which refuses it); a longer one is left to
	// the state machine, which refuses it.
	for ; k < len(data) && k-j < 18; k++ {
		c := data[k]
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	if k == j || k+1 >= len(data) || data[k] != '\r' || data[k+1] != '\n' || data[j] == '0' && k > j+1 {
		return -1, 0 // a leading zero: the state machine refuses it
	}
	return v, k + 2
}

// nextArg starts reading an argument's "$<len>".
func (h *conn) nextArg() {
	h.st = reqBulkLen
	h.num.reset()
	h.num.max, h.num.strict = maxBulk, true
	h.bulkLen = -1 // '$' not yet seen
}

// maxBulk is Redis's bound on an argument's length (proto-max-bulk-len).
const maxBulk = 512 << 20

// numReader reads "<digits>\r\n" (an optional '-' first) across chunks.
// With max set (a bulk length), a '-' or a number past max is refused at
// the byte that makes it so: the bytes read are passed on as they come,
// and a whole bad length would reach the server, which would answer it
// with a protocol error of its own.
type numReader struct {
	v     int64
	n     int
	neg   bool
	sawCR bool
	max   int64
	// strict: as Redis's string2ll, no leading zero and no "-0" (a
	// request's lengths; Redis refuses them as protocol errors).
	strict bool
}

func (r *numReader) reset() { *r = numReader{} }

// read takes bytes of b: how many it took, whether the number is complete
// (then r.v), and an error.
func (r *numReader) read(b []byte) (n int, done bool, msg string) {
	for n < len(b) {
		ch := b[n]
		n++
		switch {
		case r.sawCR:
			if ch != '\n' {
				return n, false, "expected '\\n' after '\\r'"
			}
			if r.n == 0 || r.strict && r.neg && r.v == 0 {
				return n, false, "invalid length"
			}
			if r.neg {
				r.v = -r.v
			}
			return n, true, ""
		case ch == '\r':
			r.sawCR = true
		case ch == '-' && r.n == 0 && !r.neg && r.max == 0:
			r.neg = true
		case '0' <= ch && ch <= '9' && r.n < maxNumLen && !(r.strict && r.n > 0 && r.v == 0):
			if r.v > (1<<63-1-int64(ch-'0'))/10 {
				// Past int64, which Redis's string2ll refuses (it used to
				// wrap: "*18446744073709551617" was read as *1).
				return n, false, "invalid length"
			}
			r.v = r.v*10 + int64(ch-'0')
			r.n++
			if r.max > 0 && r.v > r.max {
				return n, false, "invalid length"
			}
		default:
			return n, false, "invalid length"
		}
	}
	return n, false, ""
}

// collect keeps the name and the first argument of a command being decided.
func (h *conn) collect(b []byte) {
	// The bytes of the argument proper, without its CRLF.
	left := h.bulk - 2 // of the argument proper, before b
	if left <= 0 {
		return
	}
	b = b[:min(int64(len(b)), left)]
	dst, long, cut := &h.name, &h.nameLong, &h.nameCut
	if h.argIdx == 1 {
		dst, long, cut = &h.sub, &h.subLong, &h.subCut
		h.haveSub = true
	}
	for _, ch := range b {
		if *long || *cut {
			return
		}
		switch {
		case ch == 0:
			*cut = true // Redis's strcasecmp stops here
		case len(*dst) == maxName:
			*long = true
		default:
			if 'A' <= ch && ch <= 'Z' {
				ch += 'a' - 'A'
			}
			*dst = append(*dst, ch)
		}
	}
}

// decideMultibulk applies the verdict once the name (and the subcommand,
// when a rule needs it) is read: the kept bytes and data[keepFrom:i] are
// the command so far.
func (h *conn) decideMultibulk(c *sdk.Conn, data []byte, keepFrom, i int) {
	h.keeping = false
	haveSub := h.haveSub && !h.subLong
	r := h.p.decide(h.name, h.sub, haveSub)
	if h.nameLong {
		r = h.p.unknown()
	}
	if h.nameCut {
		switch {
		case r.verdict == rename:
			// Redis does not know the renamed name: the command goes as
			// it came, and the server refuses it.
			r = rule{verdict: pass}
		case r.verdict == pass && h.argIdx == 0 && h.p.blocksSub(h.name):
			// Decided within a long name: its subcommand, which Redis
			// would look up, is not read.
			r = rule{verdict: block}
		}
	}
	h.verdict = r.verdict
	w := &h.w
	switch r.verdict {
	case pass:
		w.insert(h.kept)
		w.pass(keepFrom, i)
		h.passed(h.name, h.sub, haveSub)
	case block:
		h.refuse(c, h.name, h.sub, haveSub)
	case rename:
		b := append(h.p.nameBuf[:0], '*')
		b = strconv.AppendInt(b, h.nargs, 10)
		b = append(b, "\r\n$"...)
		b = strconv.AppendInt(b, int64(len(r.to)), 10)
		b = append(b, "\r\n"...)
		b = append(b, r.to...)
		b = append(b, "\r\n"...)
		w.insert(b)
		// What follows the name, as it came.
		if h.nameEnd <= len(h.kept) {
			w.insert(h.kept[h.nameEnd:])
			w.pass(keepFrom, i)
		} else {
			w.pass(keepFrom+h.nameEnd-len(h.kept), i)
		}
		h.verdict = pass
		h.passed(h.name, h.sub, haveSub)
	}
	h.kept = h.kept[:0]
}

// endCommand ends a multibulk command at data[i].
func (h *conn) endCommand(data []byte, keepFrom, i int) {
	if h.keeping { // "*0\r\n"
		h.keeping = false
		h.w.insert(h.kept)
		h.w.pass(keepFrom, i)
		h.kept = h.kept[:0]
	}
	h.verdict = pass
	h.st = reqStart
}

// passed counts a command sent to the server.
func (h *conn) passed(name, sub []byte, haveSub bool) {
	if h.limit < 0 && h.p.untracked(name, sub, haveSub) {
		h.limit = h.sent // replies past this one may not follow the requests
	}
	h.sent++
}

// refuse answers a blocked command with the error, after the replies of
// the commands sent before it.
func (h *conn) refuse(c *sdk.Conn, name, sub []byte, haveSub bool) {
	shown := name
	if haveSub && h.p.rules[string(name)].verdict != block {
		if r, ok := h.p.rules[string(append(append(append(h.p.nameBuf[:0], name...), ' '), sub...))]; ok && r.verdict == block {
			shown = h.p.nameBuf
		}
	}
	reply := h.p.errorReply(shown)
	h.blocked++
	h.p.counters.inc(shown)
	if h.p.log {
		if h.logged < maxLogsPerCall {
			h.logged++
			sdk.Log(sdk.LevelWarn, "resp: blocked "+strconv.Quote(string(shown)))
		} else {
			h.unlogged++
		}
	}
	after := h.sent
	if h.limit >= 0 && after > h.limit {
		after = h.limit
	}
	if h.waiting() == 0 && h.got >= after {
		h.now = append(h.now, reply...) // sent at the end of the call
		return
	}
	if h.qbytes+len(reply) > maxQueued {
		// The replies ahead do not come (a blocking command) or come
		// slower than the client sends: stop ordering the errors rather
		// than keep an unbounded queue.
		sdk.Log(sdk.LevelWarn, "resp: more than "+strconv.Itoa(maxQueued)+" bytes of error replies waiting for the replies ahead of them: error replies of blocked commands are sent at once from now on")
		for _, q := range h.queue[h.qhead:] {
			h.now = append(h.now, q.reply...)
		}
		h.queue, h.qhead, h.qbytes = h.queue[:0], 0, 0
		h.limit = 0
		h.now = append(h.now, reply...)
		return
	}
	h.queue = append(h.queue, queued{after: after, reply: append([]byte(nil), reply...)})
	h.qbytes += len(reply)
}

// inlineCommand handles a whole inline command line (with its '\n').
func (h *conn) inlineCommand(c *sdk.Conn) {
	w := &h.w
	text := h.inline // without the '\n'
	name, rest, ok := firstArg(text)
	if !ok || len(name) == 0 {
		// Empty, or unbalanced quotes: the server answers (or skips) it.
		w.insert(h.inline)
		w.insert([]byte{'\n'})
		if k := bytes.IndexByte(text, 0); k >= 0 {
			text = text[:k] // Redis splits the line as a C string
		}
		if ok && len(trimSpace(text)) > 0 {
			h.sent++
		}
		return
	}
	// A quoted name or subcommand may hold a NUL ("flushall\x00x"):
	// Redis's strcasecmp stops there, as for a multibulk one.
	name, nameCut := cutNUL(name)
	long := len(name) > maxName
	h.name = lowerInto(h.name[:0], name)
	h.haveSub = false
	if h.p.sub[string(h.name)] {
		if sub, _, ok := firstArg(rest); ok && len(sub) > 0 {
			if sub, _ = cutNUL(sub); len(sub) <= maxName {
				h.sub, h.haveSub = lowerInto(h.sub[:0], sub), true
			}
		}
	}
	r := h.p.decide(h.name, h.sub, h.haveSub)
	if long {
		r = h.p.unknown()
	}
	if nameCut && r.verdict == rename {
		r = rule{verdict: pass} // Redis does not know it by the new name either
	}
	switch r.verdict {
	case pass:
		w.insert(h.inline)
		w.insert([]byte{'\n'})
		h.passed(h.name, h.sub, h.haveSub)
	case block:
		h.refuse(c, h.name, h.sub, h.haveSub)
	case rename:
		w.insert([]byte(r.to))
		w.insert(rest)
		w.insert([]byte{'\n'})
		h.passed(h.name, h.sub, h.haveSub)
	}
}

// cutNUL returns b up to its first NUL byte, and whether it had one.
func cutNUL(b []byte) ([]byte, bool) {
	if k := bytes.IndexByte(b, 0); k >= 0 {
		return b[:k], true
	}
	return b, false
}

func lowerInto(dst, b []byte) []byte {
	for _, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		dst = append(dst, ch)
	}
	return dst
}

func isSpace(ch byte) bool {
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n' || ch == '\v' || ch == '\f'
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && isSpace(b[0]) {
		b = b[1:]
	}
	for len(b) > 0 && isSpace(b[len(b)-1]) {
		b = b[:len(b)-1]
	}
	return b
}

// firstArg splits an inline command as Redis does (sdssplitargs): the
// first argument, unquoted, and the rest of the line after it. ok is false
// for unbalanced quotes. As in sdssplitargs, a quote inside a word opens a
// quoted part of that same word (FLUSH"ALL" and FLUSHALL"" are FLUSHALL),
// a closing quote must be followed by a space or the end and ends the
// argument, an unquoted word ends at ' ', '\t', '\r' or '\n' only, and a
// NUL byte ends the line (sdssplitargs reads a C string).
func firstArg(line []byte) (arg, rest []byte, ok bool) {
	for k, ch := range line {
		if ch == 0 {
			line = line[:k]
			break
		}
	}
	i := 0
	for i < len(line) && isSpace(line[i]) {
		i++
	}
	if i == len(line) {
		return nil, nil, true
	}
	// A word without quotes, the common case, is a slice of the line.
	j := i
	for j < len(line) && line[j] != ' ' && line[j] != '\t' && line[j] != '\r' && line[j] != '\n' && line[j] != '"' && line[j] != '\'' {
		j++
	}
	if j == len(line) || line[j] != '"' && line[j] != '\'' {
		return line[i:j], line[j:], true
	}
	out := append([]byte(nil), line[i:j]...)
	inq, insq := false, false
	for ; j < len(line); j++ {
		ch := line[j]
		switch {
		case inq:
			switch {
			case ch == '\\' && j+3 < len(line) && line[j+1] == 'x' && isHex(line[j+2]) && isHex(line[j+3]):
				out = append(out, hexVal(line[j+2])<<4|hexVal(line[j+3]))
				j += 3
			case ch == '\\' && j+1 < len(line):
				j++
				switch e := line[j]; e {
				case 'n':
					out = append(out, '\n')
				case 'r':
					out = append(out, '\r')
				case 't':
					out = append(out, '\t')
				case 'b':
					out = append(out, '\b')
				case 'a':
					out = append(out, '\a')
				default:
					out = append(out, e)
				}
			case ch == '"':
				// The closing quote must be followed by a space or the end.
				if j+1 < len(line) && !isSpace(line[j+1]) {
					return nil, nil, false
				}
				return out, line[j+1:], true
			default:
				out = append(out, ch)
			}
		case insq:
			switch {
			case ch == '\\' && j+1 < len(line) && line[j+1] == '\'':
				out = append(out, '\'')
				j++
			case ch == '\'':
				if j+1 < len(line) && !isSpace(line[j+1]) {
					return nil, nil, false
				}
				return out, line[j+1:], true
			default:
				out = append(out, ch)
			}
		default:
			switch ch {
			case ' ', '\t', '\r', '\n':
				return out, line[j:], true
			case '"':
				inq = true
			case '\'':
				insq = true
			default:
				out = append(out, ch)
			}
		}
	}
	if inq || insq {
		return nil, nil, false
	}
	return out, line[len(line):], true
}

func isHex(ch byte) bool {
	return '0' <= ch && ch <= '9' || 'a' <= ch && ch <= 'f' || 'A' <= ch && ch <= 'F'
}

func hexVal(ch byte) byte {
	switch {
	case ch <= '9':
		return ch - '0'
	case ch <= 'F':
		return ch - 'A' + 10
	}
	return ch - 'a' + 10
}
