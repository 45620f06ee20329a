// Command resp is the tunnel plugin that filters Redis commands by parsing
// the Redis protocol (RESP): commands from a list are blocked (the client
// gets an error reply in the place of the command's reply and keeps its
// connection) or renamed on their way to the server. It parses both
// directions: requests (multibulk arrays and inline commands, pipelined,
// split across chunks anywhere) to find each command's name, and replies
// (RESP2 and RESP3) to put the error of a blocked command after the
// replies of the commands sent before it. See README.md.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o resp.wasm ./plugins/resp
package main

import (
	"errors"
	"sort"
	"strconv"
	"strings"

	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

type config struct {
	Block  []string          `json:"block"`  // commands refused: "FLUSHALL", or "CONFIG SET" for a subcommand
	Allow  []string          `json:"allow"`  // when set, every other command is refused
	Rename map[string]string `json:"rename"` // command -> the name the server knows it by
	Error  string            `json:"error"`  // the error reply's text; {command} is the command
	Log    *bool             `json:"log"`    // log each refused command (default true)
}

// verdicts of a command.
const (
	pass = iota
	block
	rename
)

type rule struct {
	verdict int
	to      string // rename: the new name
}

const defaultError = "ERR command '{command}' is not allowed by the tunnel"

// maxName bounds a command or subcommand name the plugin reads; a longer
// one is in no list.
const maxName = 64

type plugin struct {
	rules map[string]rule // lower-case "name" or "name sub"
	sub   map[string]bool // names with a rule on a subcommand
	// hidden: the new names of renamed commands, refused when a client
	// sends one itself: it would reach the command past the rules written
	// for its usual name ("CONFIG SET" blocked, CONFIG renamed: the new
	// name with SET).
	hidden map[string]bool
	// renamed: with allow, the renames, applied to what the allow list
	// lets through (without allow they are rules of their own).
	renamed map[string]string
	allow   bool // rules hold the allowed commands; others are blocked
	errText string
	log     bool
	untrack map[string]bool // commands after which replies no longer follow requests one to one
	errBuf  []byte
	nameBuf []byte
	// plain[n][c]: no rule, no subcommand rule and no untracked command
	// has a name of n bytes starting with the lower-case letter c, so such
	// a command passes without a lookup (block mode only; names of
	// maxPlain bytes and more are always looked up).
	plain    [maxPlain][256]bool
	tagBuf   []byte
	counters blockedCounter
}

// normName checks and lower-cases a configured command: one word, or two
// ("CONFIG SET").
func normName(where, s string) (string, error) {
	f := strings.Fields(strings.ToLower(s))
	if len(f) == 0 || len(f) > 2 || strings.ContainsAny(s, "\r\n") {
		return "", errors.New(where + ": " + strconv.Quote(s) + ` must be a command name, or a command and a subcommand ("CONFIG SET")`)
	}
	for _, w := range f {
		if len(w) > maxName {
			return "", errors.New(where + ": " + strconv.Quote(s) + " is longer than " + strconv.Itoa(maxName) + " bytes")
		}
	}
	return strings.Join(f, " "), nil
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("resp", err)
	}
	if len(c.Block) == 0 && len(c.Allow) == 0 && len(c.Rename) == 0 {
		return nil, errors.New(`resp: nothing to do: configure "block", "allow" or "rename", e.g. {"block": ["FLUSHALL", "FLUSHDB"]}`)
	}
	if len(c.Block) > 0 && len(c.Allow) > 0 {
		return nil, errors.New(`resp: "block" and "allow" exclude each other: list what to refuse, or what to let through`)
	}
	p := &plugin{rules: map[string]rule{}, sub: map[string]bool{}, hidden: map[string]bool{}, renamed: map[string]string{}, errText: defaultError, log: true,
		untrack: map[string]bool{"subscribe": true, "psubscribe": true, "ssubscribe": true, "monitor": true, "sync": true, "psync": true, "client reply": true}}
	p.sub["client"] = true
	if c.Log != nil {
		p.log = *c.Log
	}
	if c.Error != "" {
		if strings.ContainsAny(c.Error, "\r\n") {
			return nil, errors.New(`resp: "error" must be one line (the plugin adds "-" and "\r\n")`)
		}
		p.errText = c.Error
	}
	add := func(list, s string, r rule) error {
		n, err := normName(list, s)
		if err != nil {
			return err
		}
		if _, dup := p.rules[n]; dup {
			return errors.New(list + ": " + strconv.Quote(s) + " is listed twice")
		}
		p.rules[n] = r
		if a, _, ok := strings.Cut(n, " "); ok {
			p.sub[a] = true
		}
		return nil
	}
	for _, s := range c.Block {
		if err := add("resp: block", s, rule{verdict: block}); err != nil {
			return nil, err
		}
	}
	if len(c.Allow) > 0 {
		p.allow = true
		for _, s := range c.Allow {
			if err := add("resp: allow", s, rule{verdict: pass}); err != nil {
				return nil, err
			}
		}
	}
	names := make([]string, 0, len(c.Rename))
	for from := range c.Rename {
		names = append(names, from)
	}
	sort.Strings(names) // errors in a stable order
	for _, from := range names {
		to := c.Rename[from]
		if to == "" || strings.ContainsAny(to, " \t\r\n\"'") || len(to) > maxName {
			return nil, errors.New("resp: rename " + strconv.Quote(from) + ": the new name " + strconv.Quote(to) + " must be one word of at most " + strconv.Itoa(maxName) + " bytes")
		}
		n, err := normName("resp: rename", from)
		if err != nil {
			return nil, err
		}
		if strings.Contains(n, " ") {
			return nil, errors.New("resp: rename " + strconv.Quote(from) + ": only a command's name can be renamed, not a subcommand")
		}
		if r, dup := p.rules[n]; dup && r.verdict == block {
			return nil, errors.New("resp: " + strconv.Quote(from) + " is both blocked and renamed")
		}
		if p.allow {
			// Renaming a command lets nothing through that the allow
			// list does not (it let CONFIG SET through, renamed, with
			// only "CONFIG GET" allowed).
			p.renamed[n] = to
			continue
		}
		p.rules[n] = rule{verdict: rename, to: to}
	}
	for _, to := range c.Rename {
		if t := strings.ToLower(to); !p.listed(t) {
			p.hidden[t] = true
		}
	}
	if !p.allow {
		for n := range p.plain {
			for c := range p.plain[n] {
				p.plain[n][c] = true
			}
		}
		for _, m := range []map[string]rule{p.rules} {
			for name := range m {
				p.noPlain(name)
			}
		}
		for name := range p.sub {
			p.noPlain(name)
		}
		for name := range p.untrack {
			p.noPlain(name)
		}
		for name := range p.hidden {
			p.noPlain(name)
		}
	}
	p.counters.init(p)
	return p, nil
}

// listed reports whether a rule names the command name (alone or with a
// subcommand).
func (p *plugin) listed(name string) bool {
	if _, ok := p.rules[name]; ok {
		return true
	}
	for k := range p.rules {
		if len(k) > len(name) && k[len(name)] == ' ' && k[:len(name)] == name {
			return true
		}
	}
	return false
}

// decide returns the rule of a command (name lower-cased; sub, when read,
// its first argument lower-cased).
func (p *plugin) decide(name, sub []byte, haveSub bool) rule {
	if p.hidden[string(name)] {
		return rule{verdict: block}
	}
	r := p.lookup(name, sub, haveSub)
	if p.allow && r.verdict == pass {
		if to, ok := p.renamed[string(name)]; ok {
			return rule{verdict: rename, to: to}
		}
	}
	return r
}

// lookup returns the rule of a command, or the default of the mode.
func (p *plugin) lookup(name, sub []byte, haveSub bool) rule {
	if haveSub {
		p.nameBuf = append(append(append(p.nameBuf[:0], name...), ' '), sub...)
		if r, ok := p.rules[string(p.nameBuf)]; ok {
			return r
		}
	}
	if r, ok := p.rules[string(name)]; ok {
		return r
	}
	if p.allow {
		return rule{verdict: block}
	}
	return rule{verdict: pass}
}

// blocksSub reports whether a rule blocks a subcommand of name.
func (p *plugin) blocksSub(name []byte) bool {
	if !p.sub[string(name)] {
		return false
	}
	for k, r := range p.rules {
		if r.verdict == block && len(k) > len(name) && k[len(name)] == ' ' && k[:len(name)] == string(name) {
			return true
		}
	}
	return false
}

// maxPlain bounds the name lengths of the plain table.
const maxPlain = 24

// noPlain marks the commands of name's length and first letter, in either
// case, as needing a lookup.
func (p *plugin) noPlain(name string) {
	name, _, _ = strings.Cut(name, " ")
	if len(name) >= maxPlain {
		return
	}
	c := name[0]
	p.plain[len(name)][c] = false
	if 'a' <= c && c <= 'z' {
		p.plain[len(name)][c-'a'+'A'] = false
	}
}

// unknown is the rule of a command in no list (a name too long to be).
func (p *plugin) unknown() rule {
	if p.allow {
		return rule{verdict: block}
	}
	return rule{verdict: pass}
}

// untracked reports whether a command makes the server's replies stop
// following the requests one to one (subscriptions, MONITOR, CLIENT REPLY).
func (p *plugin) untracked(name, sub []byte, haveSub bool) bool {
	if p.untrack[string(name)] {
		return true
	}
	if haveSub {
		p.nameBuf = append(append(append(p.nameBuf[:0], name...), ' '), sub...)
		return p.untrack[string(p.nameBuf)]
	}
	return false
}

// errorReply formats the error reply for a refused command.
func (p *plugin) errorReply(cmd []byte) []byte {
	b := append(p.errBuf[:0], '-')
	t := p.errText
	for {
		i := strings.Index(t, "{command}")
		if i < 0 {
			break
		}
		b = append(b, t[:i]...)
		for _, c := range cmd {
			if c < ' ' || c == 0x7f {
				c = '?'
			}
			b = append(b, c)
		}
		t = t[i+len("{command}"):]
	}
	b = append(append(b, t...), '\r', '\n')
	p.errBuf = b
	return b
}
