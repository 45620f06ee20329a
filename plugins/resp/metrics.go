package main

import "github.com/tunnelwasm/tunnel/sdk"

// blockedCounter is the metric blocked_total (exported by the tunnel as
// tunnel_plugin_<plugin>_blocked_total), one series per blocked command
// of the list (label command, lower case), and one with command="other"
// for the commands an allow list refuses (their names are not labels: a
// client could make up any number of them).
type blockedCounter struct {
	byName  map[string]int // index into counters
	counter []sdk.Counter  // the last one is command="other"
	pending []int64        // counts not yet added, by index (see flush)
}

func (b *blockedCounter) init(p *plugin) {
	b.byName = map[string]int{}
	for name, r := range p.rules {
		if r.verdict == block && !p.allow {
			b.byName[name] = len(b.counter)
			b.counter = append(b.counter, sdk.NewCounter("blocked_total", "command", name))
		}
	}
	if p.allow {
		b.counter = append(b.counter, sdk.NewCounter("blocked_total", "command", "other"))
	} else {
		b.counter = append(b.counter, sdk.Counter{}) // the zero Counter does nothing
	}
	b.pending = make([]int64, len(b.counter))
}

// inc counts a block; flush passes the counts on to the host, one call per
// command rather than one per block.
func (b *blockedCounter) inc(name []byte) {
	if i, ok := b.byName[string(name)]; ok {
		b.pending[i]++
		return
	}
	b.pending[len(b.pending)-1]++
}

func (b *blockedCounter) flush() {
	for i, n := range b.pending {
		if n > 0 {
			b.counter[i].Add(n)
			b.pending[i] = 0
		}
	}
}
