// Command sharedguest is a test plugin of the ABI v2 shared state and
// metrics: each chunk from the client is one command, answered toward the
// client (the chunk is dropped):
//
//	get K          the value of K, or "nil"
//	set K V        StateSet(K, V); "ok" or the error ("-" is the empty value)
//	setn K N       StateSet(K, N bytes of 'x')
//	del K          StateDelete(K)
//	add K N        StateAdd(K, N): "= sum"
//	cas K OLD NEW  StateCompareAndSwap ("-" is the empty value): "true"/"false"
//	gauge N        sets the gauge "level"
//	observe N      observes N in the histogram "sizes"
//	defbad         defines a metric with an invalid name: its error
//	panic          panics (the instance fails)
//
// Every command counts in commands_total{cmd=...}, defined at first use.
package main

import (
	"strconv"
	"strings"

	"github.com/tunnelwasm/tunnel/sdk"
)

type guest struct {
	level sdk.Gauge
	sizes sdk.Histogram
}

func newPlugin([]byte) (sdk.Plugin, error) {
	return &guest{
		level: sdk.NewGauge("level"),
		sizes: sdk.NewHistogram("sizes", []float64{1, 10, 100}),
	}, nil
}

func (p *guest) NewConn(*sdk.Conn) (sdk.Handler, error) { return p, nil }

func (p *guest) OnClose(*sdk.Conn) {}

func value(s string) []byte {
	if s == "-" {
		return nil
	}
	return []byte(s)
}

func (p *guest) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if dir != sdk.ClientToServer || len(data) == 0 {
		return sdk.Forward
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return sdk.Drop
	}
	sdk.NewCounter("commands_total", "cmd", f[0]).Inc()
	reply := "bad command"
	arg := func(i int) string {
		if i < len(f) {
			return f[i]
		}
		return ""
	}
	num := func(i int) int64 { n, _ := strconv.ParseInt(arg(i), 10, 64); return n }
	errText := func(err error) string {
		if err != nil {
			return err.Error()
		}
		return "ok"
	}
	switch f[0] {
	case "get":
		if v, ok := sdk.StateGet(arg(1)); ok {
			reply = string(v)
		} else {
			reply = "nil"
		}
	case "set":
		reply = errText(sdk.StateSet(arg(1), value(arg(2))))
	case "setn":
		reply = errText(sdk.StateSet(arg(1), []byte(strings.Repeat("x", int(num(2))))))
	case "del":
		sdk.StateDelete(arg(1))
		reply = "ok"
	case "add":
		n, err := sdk.StateAdd(arg(1), num(2))
		if err != nil {
			reply = err.Error()
		} else {
			reply = "= " + strconv.FormatInt(n, 10)
		}
	case "cas":
		ok, err := sdk.StateCompareAndSwap(arg(1), value(arg(2)), value(arg(3)))
		reply = strconv.FormatBool(ok)
		if err != nil {
			reply = err.Error()
		}
	case "gauge":
		p.level.Set(num(1))
		reply = "ok"
	case "observe":
		p.sizes.Observe(float64(num(1)))
		reply = "ok"
	case "defbad":
		reply = errText(sdk.NewCounter("bad-name").Err())
	case "panic":
		panic("asked to")
	}
	c.Send(sdk.ServerToClient, []byte(reply+"\n"))
	return sdk.Drop
}

func init() { sdk.Register(newPlugin) }

func main() {}
