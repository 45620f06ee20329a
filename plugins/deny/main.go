// Command deny is the tunnel plugin that blocks byte patterns (commands such
// as FLUSHALL): it drops each occurrence and answers the sender with a
// configured reply, or closes the connection. Patterns split across chunks
// are found too. See README.md for its configuration.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o deny.wasm ./plugins/deny
package main

import (
	"errors"
	"strconv"

	"github.com/tunnelwasm/tunnel/plugins/internal/match"
	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

type config struct {
	Pattern    string   `json:"pattern"`
	Patterns   []string `json:"patterns"`
	IgnoreCase bool     `json:"ignore_case"`
	Reply      string   `json:"reply"`
	Action     string   `json:"action"`
	From       string   `json:"from"`
}

type plugin struct {
	scan  [2]bool // by direction: look for the patterns in it
	m     *match.Matcher
	pats  []string
	reply []byte
	close bool
	msg   []byte // log line scratch
}

type conn struct {
	p  *plugin
	st [2]match.State
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("deny", err)
	}
	pats := c.Patterns
	switch {
	case c.Pattern != "" && len(pats) > 0:
		return nil, errors.New(`deny: give either "pattern" or "patterns", not both`)
	case c.Pattern != "":
		pats = []string{c.Pattern}
	case len(pats) == 0:
		return nil, errors.New(`deny: no pattern: set "pattern" = "..." or "patterns" = ["...", ...]`)
	}
	var bs [][]byte
	for i, s := range pats {
		if s == "" {
			return nil, errors.New("deny: pattern " + strconv.Itoa(i+1) + " is empty")
		}
		bs = append(bs, []byte(s))
	}
	p := &plugin{m: match.New(bs, c.IgnoreCase), pats: pats, reply: []byte(c.Reply)}
	switch c.Action {
	case "", "drop":
	case "close":
		p.close = true
	default:
		return nil, errors.New(`deny: "action" must be "drop" or "close", not ` + strconv.Quote(c.Action))
	}
	switch c.From {
	case "", "both":
		p.scan = [2]bool{true, true}
	case "client":
		p.scan[sdk.ClientToServer] = true
	case "server":
		p.scan[sdk.ServerToClient] = true
	default:
		return nil, errors.New(`deny: "from" must be "client", "server" or "both", not ` + strconv.Quote(c.From))
	}
	return p, nil
}

func (p *plugin) NewConn(*sdk.Conn) (sdk.Handler, error) { return &conn{p: p}, nil }

func (c *conn) OnData(sc *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	p := c.p
	if !p.scan[dir&1] {
		return sdk.Forward
	}
	r := p.m.Feed(&c.st[dir&1], data, end, nil)
	if r.Unchanged {
		return sdk.Forward
	}
	if r.Matches == 0 {
		send(sc, dir, r.Out)
		return sdk.Drop
	}
	p.msg = append(p.msg[:0], "deny: blocked "...)
	p.msg = strconv.AppendQuote(p.msg, p.pats[r.First])
	p.msg = append(p.msg, " from the "...)
	if dir == sdk.ClientToServer {
		p.msg = append(p.msg, "client"...)
	} else {
		p.msg = append(p.msg, "server"...)
	}
	if p.close {
		send(sc, dir, r.Out[:r.FirstOut])
		send(sc, dir.Reverse(), p.reply)
		p.msg = append(p.msg, "; closing the connection"...)
		sdk.LogBytes(sdk.LevelWarn, p.msg)
		if err := sc.Close(); err != nil {
			sdk.Log(sdk.LevelWarn, "deny: close: "+err.Error())
		}
		return sdk.Drop
	}
	if r.Matches > 1 {
		p.msg = append(p.msg, " and "...)
		p.msg = strconv.AppendInt(p.msg, int64(r.Matches-1), 10)
		p.msg = append(p.msg, " more"...)
	}
	sdk.LogBytes(sdk.LevelWarn, p.msg)
	send(sc, dir, r.Out)
	for range r.Matches {
		send(sc, dir.Reverse(), p.reply)
	}
	return sdk.Drop
}

func send(sc *sdk.Conn, dir sdk.Direction, b []byte) {
	if len(b) == 0 {
		return
	}
	if err := sc.Send(dir, b); err != nil {
		sdk.Log(sdk.LevelWarn, "deny: send "+dir.String()+": "+err.Error())
	}
}

func (c *conn) OnClose(*sdk.Conn) {}
