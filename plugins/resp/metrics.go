package main

import "github.com/tunnelwasm/tunnel/sdk"

// blockedCounter is the metric blocked_total (exported by the tunnel as
// tunnel_plugin_<plugin>_blocked_total), one series per blocked command
// of the list (label command, lower case), and one with command="other"
// for the commands an allow list refuses (their names are not labels: a
// client could make up any number of them).
type blockedCounter struct {
	byName map[string]sdk.Counter
	other  sdk.Counter
}

func (b *blockedCounter) init(p *plugin) {
	b.byName = map[string]sdk.Counter{}
	if p.allow {
		b.other = sdk.NewCounter("blocked_total", "command", "other")
		return
	}
	for name, r := range p.rules {
		if r.verdict == block {
			b.byName[name] = sdk.NewCounter("blocked_total", "command", name)
		}
	}
}

func (b *blockedCounter) inc(name []byte) {
	if c, ok := b.byName[string(name)]; ok {
		c.Inc()
		return
	}
	b.other.Inc()
}
