// Command dump is the tunnel plugin that prints every chunk it sees, as a
// hex dump (like `hexdump -C`) or as escaped text, to its standard output or
// to the tunnel's log, and forwards it unchanged. See README.md for its
// configuration.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o dump.wasm ./plugins/dump
package main

import (
	"errors"
	"strconv"

	"github.com/tunnelwasm/tunnel/internal/hexdump"
	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

type config struct {
	Format string `json:"format"`
	Output string `json:"output"`
}

type plugin struct {
	sdk.DefaultHandler
	text  bool
	toLog bool
	buf   []byte // scratch, reused for every chunk
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("dump", err)
	}
	p := &plugin{}
	switch c.Format {
	case "", "hex":
	case "text":
		p.text = true
	default:
		return nil, errors.New(`dump: "format" must be "hex" or "text", not ` + strconv.Quote(c.Format))
	}
	switch c.Output {
	case "", "stdout":
	case "log":
		p.toLog = true
	default:
		return nil, errors.New(`dump: "output" must be "stdout" or "log", not ` + strconv.Quote(c.Output))
	}
	return sdk.Shared(p), nil
}

func (p *plugin) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	b := p.buf[:0]
	if len(data) > 0 {
		b = hexdump.Header(b, c.ID(), int(dir), len(data))
		if p.text {
			b = hexdump.Text(b, data)
		} else {
			b = hexdump.Hex(b, data)
		}
	}
	if end {
		b = hexdump.End(b, c.ID(), int(dir))
	}
	if len(b) > 0 {
		if p.toLog {
			sdk.LogBytes(sdk.LevelInfo, b[:len(b)-1]) // the log adds its own line end
		} else {
			_, _ = sdk.Stdout().Write(b)
		}
	}
	p.buf = b
	return sdk.Forward
}
