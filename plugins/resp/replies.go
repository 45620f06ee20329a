package main

import "github.com/tunnelwasm/tunnel/sdk"

// Parser states of the replies (server -> client).
const (
	repType = iota // at an element's type byte
	repLine        // a simple element: up to '\n'
	repNum         // the length or count of a bulk or aggregate
	repBulk        // a bulk's bytes and CRLF
)

// maxDepth bounds the nesting of aggregates the parser follows.
const maxDepth = 128

// frame is an aggregate being read: how many elements are left.
type frame struct{ left int64 }

// replyState parses RESP2 and RESP3 replies to count them: each top-level
// element is one reply, except RESP3 push messages ('>') and attributes
// ('|'), which come on top of replies.
type replyState struct {
	st     int
	kind   byte
	top    byte // type of the top-level element being read
	num    numReader
	bulk   int64
	stack  []frame
	broken bool // unknown bytes: counting stopped
}

// replies counts the server's replies and puts each queued error reply
// after the reply it waits for.
func (h *conn) replies(c *sdk.Conn, data []byte, end bool) sdk.Action {
	r := &h.rst
	if h.closing {
		return sdk.Drop // the protocol error's reply is out: closed
	}
	if r.broken || h.waiting() == 0 && h.limit >= 0 && h.got >= h.limit {
		// Not counting (or no longer needed: replies no longer follow
		// requests and nothing waits).
		if end {
			h.flushQueue(c)
		}
		return sdk.Forward
	}
	w := &h.w
	w.reset(data)
	from := 0
	for i := 0; i < len(data) && !w.closes; {
		switch r.st {
		case repType:
			if len(r.stack) == 0 {
				if next := fastReply(data, i); next > 0 {
					// A whole simple reply or bulk string in one go.
					r.top = data[i]
					i = next
					from = h.elementDone(from, i)
					continue
				}
			}
			k := data[i]
			i++
			if len(r.stack) == 0 {
				r.top = k
			}
			switch k {
			case '+', '-', ':', '_', ',', '#', '(':
				r.st = repLine
			case '$', '!', '=', '*', '~', '>', '%', '|':
				r.st, r.kind = repNum, k
				r.num.reset()
			default:
				w.pass(from, len(data))
				h.breakCount("unknown reply type '" + printable(k) + "'")
				return h.finishReplies(c)
			}
		case repLine:
			j := i
			for j < len(data) && data[j] != '\n' {
				j++
			}
			if j == len(data) {
				i = j
				continue
			}
			i = j + 1
			from = h.elementDone(from, i)
		case repNum:
			n, done, msg := r.num.read(data[i:])
			i += n
			if msg != "" {
				w.pass(from, len(data))
				h.breakCount(msg)
				return h.finishReplies(c)
			}
			if !done {
				continue
			}
			v := r.num.v
			switch r.kind {
			case '$', '!', '=':
				if v < 0 {
					from = h.elementDone(from, i)
					continue
				}
				r.bulk, r.st = v+2, repBulk
				continue
			case '%', '|':
				v *= 2
			}
			if v <= 0 {
				from = h.elementDone(from, i)
				continue
			}
			if len(r.stack) == maxDepth {
				w.pass(from, len(data))
				h.breakCount("replies nested too deep")
				return h.finishReplies(c)
			}
			r.stack = append(r.stack, frame{left: v})
			r.st = repType
		case repBulk:
			n := min(int64(len(data)-i), r.bulk)
			i += int(n)
			r.bulk -= n
			if r.bulk == 0 {
				from = h.elementDone(from, i)
			}
		}
	}
	if w.closes {
		return h.finishReplies(c) // nothing after the protocol error's reply
	}
	w.pass(from, len(data))
	if end {
		h.insertQueue()
	}
	return h.finishReplies(c)
}

// finishReplies passes on what the call collected toward the client, and
// closes the connection after it when it holds the protocol error's reply.
func (h *conn) finishReplies(c *sdk.Conn) sdk.Action {
	if !h.w.closes {
		return h.w.finish(c, sdk.ServerToClient)
	}
	h.w.finish(c, sdk.ServerToClient) // sent, not forwarded: before the close
	h.close(c)
	return sdk.Drop
}

// insertQueue passes on every waiting error reply now.
func (h *conn) insertQueue() {
	for _, q := range h.queue[h.qhead:] {
		h.w.insertQueued(q)
	}
	h.queue, h.qhead, h.qbytes = h.queue[:0], 0, 0
}

// fastReply returns the index past the reply at data[i] when it is a
// whole simple string, error, integer or bulk string, else 0.
func fastReply(data []byte, i int) int {
	switch data[i] {
	case '+', '-', ':':
		for j := i + 1; j < len(data); j++ {
			if data[j] == '\n' {
				return j + 1
			}
		}
	case '$':
		if l, j := fastNum(data, i+1); l >= 0 && int64(len(data)-j) >= l+2 {
			return j + int(l) + 2
		}
	}
	return 0
}

// elementDone ends the element that ends at data[i]; when it completes a
// reply, the errors waiting for that reply are inserted after it. It
// returns the start of the bytes not yet passed on.
func (h *conn) elementDone(from, i int) int {
	r := &h.rst
	r.st = repType
	for len(r.stack) > 0 {
		top := &r.stack[len(r.stack)-1]
		top.left--
		if top.left > 0 {
			return from
		}
		r.stack = r.stack[:len(r.stack)-1]
	}
	if r.top == '>' || r.top == '|' {
		return from // a push message, or the attribute before a reply
	}
	h.got++
	if h.waiting() == 0 || h.queue[h.qhead].after > h.got {
		return from
	}
	h.w.pass(from, i)
	for ; h.qhead < len(h.queue) && h.queue[h.qhead].after <= h.got; h.qhead++ {
		h.w.insertQueued(h.queue[h.qhead])
		h.qbytes -= len(h.queue[h.qhead].reply)
		h.queue[h.qhead].reply = nil
	}
	// Sent entries are dropped from the front by moving qhead; the rest
	// is moved down only once it is at most half the slice (amortized
	// constant time per entry: a pipeline of N blocked commands each
	// after an allowed one used to cost N²/2 entry copies).
	switch {
	case h.qhead == len(h.queue):
		h.queue, h.qhead, h.qbytes = h.queue[:0], 0, 0
	case h.qhead >= 64 && 2*h.qhead >= len(h.queue):
		h.queue = h.queue[:copy(h.queue, h.queue[h.qhead:])]
		h.qhead = 0
	}
	return i
}

// breakCount stops counting replies on bytes the parser does not know:
// the waiting errors go now, and later ones at once.
func (h *conn) breakCount(why string) {
	sdk.Log(sdk.LevelWarn, "resp: "+why+" from the server: error replies of blocked commands are sent at once from now on")
	h.rst.broken = true
	h.insertQueue()
	h.limit = 0
}

// flushQueue sends every waiting error reply now, and closes the
// connection after the protocol error's.
func (h *conn) flushQueue(c *sdk.Conn) {
	closes := false
	for _, q := range h.queue[h.qhead:] {
		if err := c.Send(sdk.ServerToClient, q.reply); err != nil {
			sdk.Log(sdk.LevelWarn, "resp: reply: "+err.Error())
		}
		closes = closes || q.close
	}
	h.queue, h.qhead, h.qbytes = h.queue[:0], 0, 0
	if closes {
		h.close(c)
	}
}
