// Command replace is the tunnel plugin that finds byte strings in the
// traffic and replaces them, also when a string is split across chunks.
// See README.md for its configuration.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o replace.wasm ./plugins/replace
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

// rule is one find/replace pair. Text fields take JSON strings; the _hex
// variants take arbitrary bytes written in hex.
type rule struct {
	From    *string `json:"from"`
	To      *string `json:"to"`
	FromHex *string `json:"from_hex"`
	ToHex   *string `json:"to_hex"`
}

type config struct {
	From       *string `json:"from"`
	To         *string `json:"to"`
	FromHex    *string `json:"from_hex"`
	ToHex      *string `json:"to_hex"`
	Rules      []rule  `json:"rules"`
	IgnoreCase bool    `json:"ignore_case"`
}

type plugin struct {
	m    *match.Matcher
	repl [][]byte
}

type conn struct {
	p  *plugin
	st [2]match.State
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("replace", err)
	}
	rules := c.Rules
	one := rule{From: c.From, To: c.To, FromHex: c.FromHex, ToHex: c.ToHex}
	single := one != rule{}
	switch {
	case single && len(rules) > 0:
		return nil, errors.New(`replace: give either "from"/"to" or "rules", not both`)
	case single:
		rules = []rule{one}
	case len(rules) == 0:
		return nil, errors.New(`replace: no rule: set "from" and "to", or "rules" = [{ from = "...", to = "..." }, ...]`)
	}
	var pats [][]byte
	p := &plugin{}
	for i, r := range rules {
		where := "replace: "
		if !single {
			where = "replace: rule " + strconv.Itoa(i+1) + ": "
		}
		from, err := pick(r.From, r.FromHex, "from")
		if err != nil {
			return nil, errors.New(where + err.Error())
		}
		if len(from) == 0 {
			return nil, errors.New(where + `"from" is empty`)
		}
		to, err := pick(r.To, r.ToHex, "to")
		if err != nil {
			return nil, errors.New(where + err.Error())
		}
		for j, prev := range pats {
			if string(prev) == string(from) || c.IgnoreCase && equalFold(prev, from) {
				return nil, errors.New(where + `"from" ` + strconv.Quote(string(from)) + " is the same as in rule " + strconv.Itoa(j+1) + ", which always wins")
			}
		}
		pats = append(pats, from)
		p.repl = append(p.repl, to)
	}
	p.m = match.New(pats, c.IgnoreCase)
	return p, nil
}

// pick returns the bytes of a text-or-hex field pair.
func pick(text, hexText *string, name string) ([]byte, error) {
	switch {
	case text != nil && hexText != nil:
		return nil, errors.New("give " + strconv.Quote(name) + " or " + strconv.Quote(name+"_hex") + ", not both")
	case hexText != nil:
		b, err := nofmt.DecodeHex(*hexText)
		if err != nil {
			return nil, errors.New(strconv.Quote(name+"_hex") + " is not hex: " + err.Error())
		}
		return b, nil
	case text != nil:
		return []byte(*text), nil
	}
	if name == "to" {
		return nil, nil // no "to": delete the match
	}
	return nil, errors.New(strconv.Quote(name) + " is missing")
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (p *plugin) NewConn(*sdk.Conn) (sdk.Handler, error) { return &conn{p: p}, nil }

func (c *conn) OnData(sc *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	r := c.p.m.Feed(&c.st[dir&1], data, end, c.p.repl)
	if r.Unchanged {
		return sdk.Forward
	}
	if len(r.Out) > 0 {
		if err := sc.Send(dir, r.Out); err != nil {
			sdk.Log(sdk.LevelWarn, "replace: send: "+err.Error())
		}
	}
	return sdk.Drop
}

func (c *conn) OnClose(*sdk.Conn) {}
