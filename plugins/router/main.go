// Command router is the tunnel plugin that chooses a connection's target
// from its first bytes, like sslh: one port for SSH, TLS (by SNI), HTTP/1
// (by Host) and Redis, each protocol and name mapped to a target, with a
// default for the rest. It runs on a route with dial = "plugin" and reads
// only what the client sends first; once the target is chosen, every byte
// passes untouched. See README.md for its configuration.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o router.wasm ./plugins/router
package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

// Protocols the router recognises.
const (
	protoTLS     = "tls"
	protoHTTP    = "http"
	protoSSH     = "ssh"
	protoRedis   = "redis"
	protoUnknown = "unknown" // the first bytes are none of the above
	protoTimeout = "timeout" // the client sent nothing (or too little) in time
)

var protocols = []string{protoTLS, protoHTTP, protoSSH, protoRedis, protoUnknown, protoTimeout}

// Limits of the configuration.
const (
	defaultMaxBytes = 32 << 10
	maxMaxBytes     = 1 << 20
	defaultTimeout  = 2 * time.Second
)

type ruleConfig struct {
	Protocol string `json:"protocol"`
	Name     string `json:"name"`
	Target   string `json:"target"`
}

type config struct {
	Rules    []ruleConfig `json:"rules"`
	Default  string       `json:"default"`
	MaxBytes int          `json:"max_bytes"`
	Timeout  string       `json:"timeout"`
}

// rule is a parsed ruleConfig.
type rule struct {
	proto  string // "" any
	name   string // "" any; exact, lower case
	suffix string // for "*.example.com": ".example.com"
	target string
}

type plugin struct {
	rules    []rule
	def      string
	maxBytes int
	timeout  time.Duration
	scratch  []byte // reassembled TLS handshake, reused
}

func checkTarget(where, addr string) error {
	host, port, ok := nofmt.SplitHostPort(addr)
	if !ok || host == "" {
		return errors.New(where + `: target must be "host:port", not ` + strconv.Quote(addr))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New(where + ": target " + strconv.Quote(addr) + ": the port must be a number from 1 to 65535")
	}
	return nil
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("router", err)
	}
	if len(c.Rules) == 0 && c.Default == "" {
		return nil, errors.New(`router: no rules and no default: configure e.g. {"rules": [{"protocol": "ssh", "target": "127.0.0.1:22"}], "default": "127.0.0.1:8080"}`)
	}
	p := &plugin{def: c.Default, maxBytes: defaultMaxBytes, timeout: defaultTimeout}
	for i, rc := range c.Rules {
		where := "router: rule " + strconv.Itoa(i+1)
		r := rule{proto: rc.Protocol, target: rc.Target}
		if r.proto != "" && !contains(protocols, r.proto) {
			return nil, errors.New(where + ": unknown protocol " + strconv.Quote(r.proto) + "; use one of " + strings.Join(protocols, ", "))
		}
		name := strings.ToLower(strings.TrimSuffix(rc.Name, "."))
		switch {
		case name == "" || name == "*":
		case strings.HasPrefix(name, "*."):
			r.suffix = name[1:]
		case strings.Contains(name, "*"):
			return nil, errors.New(where + ": name " + strconv.Quote(rc.Name) + `: a wildcard is only allowed as "*.suffix"`)
		default:
			r.name = name
		}
		if (r.name != "" || r.suffix != "") && r.proto != protoTLS && r.proto != protoHTTP {
			return nil, errors.New(where + `: a name needs protocol "tls" (the SNI) or "http" (the Host header)`)
		}
		if err := checkTarget(where, r.target); err != nil {
			return nil, err
		}
		p.rules = append(p.rules, r)
	}
	if c.Default != "" {
		if err := checkTarget("router: default", c.Default); err != nil {
			return nil, err
		}
	}
	if c.MaxBytes != 0 {
		if c.MaxBytes < 64 || c.MaxBytes > maxMaxBytes {
			return nil, errors.New(`router: "max_bytes" must be from 64 to ` + strconv.Itoa(maxMaxBytes) + ", not " + strconv.Itoa(c.MaxBytes))
		}
		p.maxBytes = c.MaxBytes
	}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return nil, errors.New(`router: "timeout" must be a positive duration such as "2s", not ` + strconv.Quote(c.Timeout))
		}
		p.timeout = d
	}
	return p, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// route returns the target for a protocol and name: an exact name first,
// then the longest matching "*.suffix", then a rule of the protocol without
// a name, then a rule without a protocol, then the default. Among equals,
// the first rule wins.
func (p *plugin) route(proto, name string) string {
	best, rank := "", 0
	for i := range p.rules {
		r := &p.rules[i]
		var k int
		switch {
		case r.proto != "" && r.proto != proto:
			continue
		case r.name != "":
			if r.name != name {
				continue
			}
			k = 1 << 30
		case r.suffix != "":
			if !strings.HasSuffix(name, r.suffix) || len(name) == len(r.suffix) {
				continue
			}
			k = 1<<20 + len(r.suffix)
		case r.proto != "":
			k = 2
		default:
			k = 1
		}
		if k > rank {
			best, rank = r.target, k
		}
	}
	if best == "" {
		return p.def
	}
	return best
}

// conn is the state of one connection: the first bytes, kept until the
// target is chosen.
type conn struct {
	p       *plugin
	decided bool
	buf     []byte
}

func (p *plugin) NewConn(c *sdk.Conn) (sdk.Handler, error) {
	h := &conn{p: p}
	if err := c.SetTimer(p.timeout); err != nil {
		return nil, nofmt.Wrap("router: set timer", err)
	}
	return h, nil
}

func (h *conn) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if h.decided || dir != sdk.ClientToServer {
		return sdk.Forward
	}
	b := data
	if len(h.buf) > 0 {
		h.buf = append(h.buf, data...)
		b = h.buf
	}
	proto, name, more := h.p.classify(b)
	if more && !end && len(b) < h.p.maxBytes {
		if len(h.buf) == 0 {
			h.buf = append(make([]byte, 0, min(max(2*len(data), 4096), h.p.maxBytes)), data...)
		}
		return sdk.Drop
	}
	if more {
		// Out of bytes (the bound) or the client ended: what it is so far.
		proto = partialProto(b)
	}
	h.decide(c, proto, name)
	if len(h.buf) == 0 {
		return sdk.Forward
	}
	if err := c.Send(dir, h.buf); err != nil {
		sdk.Log(sdk.LevelWarn, "router: send: "+err.Error())
	}
	h.buf = nil
	return sdk.Drop
}

// partialProto names what an undecided beginning looks like.
func partialProto(b []byte) string {
	if len(b) >= 3 && b[0] == 0x16 && b[1] == 3 {
		return protoTLS
	}
	return protoUnknown
}

// OnTimer: the client did not say enough in time (a protocol where the
// server speaks first, or a slow client).
func (h *conn) OnTimer(c *sdk.Conn) {
	if h.decided {
		return
	}
	proto := protoTimeout
	if len(h.buf) > 0 {
		proto = partialProto(h.buf)
	}
	h.decide(c, proto, "")
	if len(h.buf) > 0 {
		if err := c.Send(sdk.ClientToServer, h.buf); err != nil {
			sdk.Log(sdk.LevelWarn, "router: send: "+err.Error())
		}
		h.buf = nil
	}
}

// decide chooses the target (or closes the connection when none fits) and
// records the choice in the connection's tags.
func (h *conn) decide(c *sdk.Conn, proto, name string) {
	h.decided = true
	_ = c.StopTimer()
	target := h.p.route(proto, name)
	setTag(c, "router.protocol", proto)
	if name != "" {
		setTag(c, "router.name", name)
	}
	if target == "" {
		if name != "" {
			sdk.Log(sdk.LevelWarn, "router: no target for "+proto+" "+strconv.Quote(name)+" and no default: closing")
		} else {
			sdk.Log(sdk.LevelWarn, "router: no target for "+proto+" and no default: closing")
		}
		h.buf = nil
		if err := c.Close(); err != nil {
			sdk.Log(sdk.LevelWarn, "router: close: "+err.Error())
		}
		return
	}
	setTag(c, "router.target", target)
	if err := c.SetTarget(target); err != nil {
		sdk.Log(sdk.LevelWarn, "router: set target "+target+": "+err.Error())
	}
}

func setTag(c *sdk.Conn, k, v string) {
	if len(v) > 256 {
		v = v[:256]
	}
	if err := c.SetTag(k, v); err != nil {
		sdk.Log(sdk.LevelWarn, "router: tag "+k+": "+err.Error())
	}
}

func (h *conn) OnClose(*sdk.Conn) {}
