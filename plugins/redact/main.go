// Command redact is the tunnel plugin that masks secrets in the bytes that
// pass: credit-card numbers (13 to 19 digits, spaces or dashes between
// them, that pass the Luhn check), bearer tokens ("Bearer <token>"),
// tokens after configured prefixes ("sk_live_...") and configured literal
// strings. Masking keeps the length ('*' for each byte, so framing such as
// Content-Length stays right) or replaces each match with a fixed text. A
// secret split across chunks is found as if it came in one piece: the
// plugin holds back the few bytes at the end of a chunk that could start
// one (at most the longest pattern, or 37 bytes of a card number), and
// masks a token's bytes as they stream after its prefix, however long it
// is. See README.md.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o redact.wasm ./plugins/redact
package main

import (
	"errors"
	"strconv"

	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

type config struct {
	From         string   `json:"from"`           // "client", "server" or "both" (default)
	Cards        bool     `json:"cards"`          // credit-card numbers (Luhn-checked)
	CardKeepLast int      `json:"card_keep_last"` // digits left visible at the end of a card number
	Bearer       bool     `json:"bearer"`         // "Bearer <token>": the token
	Prefixes     []string `json:"prefixes"`       // the token after each prefix
	Literals     []string `json:"literals"`       // these strings
	IgnoreCase   bool     `json:"ignore_case"`    // ASCII case-insensitive prefixes and literals
	Mask         string   `json:"mask"`           // one byte, default "*"
	Replacement  *string  `json:"replacement"`    // set: each match is replaced by this (length not kept)
}

// pattern is a literal or a prefix.
type pattern struct {
	b      []byte // lower-cased when fold
	fold   bool
	prefix bool // the token after it is masked; the prefix itself stays
	// spaces: spaces and tabs between the prefix and its token stay (an
	// HTTP credential is "auth-scheme 1*SP token68": "Bearer  abc" too).
	spaces bool
}

type plugin struct {
	dirs     [2]bool
	pats     []pattern
	maxPat   int
	cards    bool
	keepLast int
	mask     byte
	repl     []byte
	preserve bool
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("redact", err)
	}
	p := &plugin{cards: c.Cards, keepLast: c.CardKeepLast, mask: '*', preserve: true}
	switch c.From {
	case "", "both":
		p.dirs = [2]bool{true, true}
	case "client":
		p.dirs[sdk.ClientToServer] = true
	case "server":
		p.dirs[sdk.ServerToClient] = true
	default:
		return nil, errors.New(`redact: "from" must be "client", "server" or "both", not ` + strconv.Quote(c.From))
	}
	if c.CardKeepLast < 0 || c.CardKeepLast > 6 {
		return nil, errors.New(`redact: "card_keep_last" must be from 0 to 6, not ` + strconv.Itoa(c.CardKeepLast))
	}
	if c.CardKeepLast > 0 && !c.Cards {
		return nil, errors.New(`redact: "card_keep_last" needs "cards": true`)
	}
	if c.Mask != "" {
		if len(c.Mask) != 1 {
			return nil, errors.New(`redact: "mask" must be one byte, not ` + strconv.Quote(c.Mask))
		}
		p.mask = c.Mask[0]
	}
	if c.Replacement != nil {
		p.preserve, p.repl = false, []byte(*c.Replacement)
	}
	if c.Bearer {
		_ = p.add("prefix", 0, "bearer ", true, true, true)
	}
	for i, s := range c.Prefixes {
		if err := p.add("prefix", i, s, true, c.IgnoreCase, false); err != nil {
			return nil, err
		}
	}
	for i, s := range c.Literals {
		if err := p.add("literal", i, s, false, c.IgnoreCase, false); err != nil {
			return nil, err
		}
	}
	if len(p.pats) == 0 && !p.cards {
		return nil, errors.New(`redact: nothing to redact: set "cards", "bearer", "prefixes" or "literals", e.g. {"cards": true, "bearer": true}`)
	}
	return p, nil
}

// add adds a prefix or literal pattern.
func (p *plugin) add(kind string, i int, s string, prefix, fold, spaces bool) error {
	if s == "" {
		return errors.New("redact: " + kind + " " + strconv.Itoa(i+1) + " is empty")
	}
	if len(s) > 256 {
		return errors.New("redact: " + kind + " " + strconv.Itoa(i+1) + " is longer than 256 bytes")
	}
	b := []byte(s)
	if fold {
		b = lower(b)
	}
	p.pats = append(p.pats, pattern{b: b, fold: fold, prefix: prefix, spaces: spaces})
	p.maxPat = max(p.maxPat, len(b))
	return nil
}

func lower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = lowerByte(c)
	}
	return out
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// stream is the state of one direction.
type stream struct {
	pend     []byte // bytes held back: they may start a secret
	prev     byte   // the byte before pend (or before the next chunk)
	inToken  bool   // masking the token after a prefix
	spaces   bool   // inToken, before the token: spaces and tabs stay
	replaced bool   // the token's replacement was sent (replacement mode)
}

type conn struct {
	p     *plugin
	s     [2]stream
	count int
}

func (p *plugin) NewConn(*sdk.Conn) (sdk.Handler, error) { return &conn{p: p}, nil }

func (h *conn) OnClose(*sdk.Conn) {}

func (h *conn) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if !h.p.dirs[dir&1] {
		return sdk.Forward
	}
	st := &h.s[dir&1]
	out, n, unchanged := h.p.scan(st, data, end, &scratch)
	if unchanged {
		return sdk.Forward
	}
	if n > 0 {
		h.count += n
		if err := c.SetTag("redact.count", strconv.Itoa(h.count)); err != nil {
			sdk.Log(sdk.LevelWarn, "redact: tag: "+err.Error())
		}
	}
	if len(out) > 0 {
		if err := c.Send(dir, out); err != nil {
			sdk.Log(sdk.LevelWarn, "redact: send "+dir.String()+": "+err.Error())
		}
	}
	return sdk.Drop
}

// scratch is the instance's work and output buffers (one call at a time).
var scratch buffers

type buffers struct{ work, out []byte }
