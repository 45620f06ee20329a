// Command probe is a test plugin that exercises every part of package sdk,
// driven by commands in the client's chunks. Its tests run it natively
// (sdktest) and compiled (plugintest), and expect the same behaviour.
//
// A client -> server chunk that starts with '!' is a command:
//
//	!info         reply "route=R id=N client=C target=T listen=L\n"
//	!reply X      reply X toward the client, drop the chunk
//	!upper X      send X upper-cased toward the server instead of the chunk
//	!hold...      hold until a chunk holds '.', then forward all of it
//	!closewrite   half-close toward the server, then try to send and
//	              half-close again (logged)
//	!close        reply "bye\n" and close the connection
//	!log          log one line at each level, and at levels 6 and -9
//	!stdout X     write X to stdout
//	!badarg       send in direction 7 (logged)
//	!other        send on the previous connection (logged)
//	!never        arm the timer at the end of time (math.MaxInt64 ns);
//	              the timer replies "timer\n" if it ever fires
//	!soon         arm the timer 1 ms ahead
//	!at           arm the timer 50 ms ahead; the timer replies "timer
//	              after Nms\n", N read on sdk.Now
//	!later        hold the chunk and arm the timer 1 ms ahead; the timer
//	              half-closes toward the server before its reply
//	!panic        panic (the instance dies; the host's failure policy applies)
//
// Anything else is forwarded. Config: {"greet": "..."} is sent to the client
// when a connection opens; {"refuse": true} refuses every connection;
// {"log_end": true} logs "end D" when the end of direction D is shown.
package main

import (
	"bytes"
	"math"
	"strconv"
	"time"

	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

type config struct {
	Greet  string `json:"greet"`
	Refuse bool   `json:"refuse"`
	LogEnd bool   `json:"log_end"`
	Panic  bool   `json:"panic"` // the factory panics
}

type plugin struct {
	cfg  config
	last *sdk.Conn // the previous connection opened, for !other
}

type handler struct {
	p *plugin
	// closeLater: the timer half-closes toward the server (!later).
	closeLater bool
	// armed is when !at armed the timer (sdk.Now), or 0.
	armed time.Duration
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	p := &plugin{}
	if err := sdk.DecodeConfig(raw, &p.cfg); err != nil {
		return nil, err
	}
	if p.cfg.Panic {
		panic("probe: boom in the factory")
	}
	sdk.Log(sdk.LevelDebug, "probe: configured")
	return p, nil
}

func (p *plugin) NewConn(c *sdk.Conn) (sdk.Handler, error) {
	if p.cfg.Refuse {
		return nil, errRefused
	}
	if p.cfg.Greet != "" {
		if err := c.Send(sdk.ServerToClient, []byte(p.cfg.Greet)); err != nil {
			sdk.Log(sdk.LevelError, "greet: "+err.Error())
		}
	}
	p.last = c
	return &handler{p: p}, nil
}

type refusal struct{}

func (refusal) Error() string { return "probe refuses everyone" }

var errRefused = refusal{}

func logErr(what string, err error) {
	msg := what + ": "
	if err == nil {
		msg += "ok"
	} else {
		msg += err.Error()
	}
	sdk.Log(sdk.LevelInfo, msg)
}

func (h *handler) OnData(c *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	if end && h.p.cfg.LogEnd {
		sdk.Log(sdk.LevelInfo, "end "+dir.String())
	}
	if dir != sdk.ClientToServer || len(data) == 0 || data[0] != '!' {
		return sdk.Forward
	}
	cmd, arg, _ := bytes.Cut(data[1:], []byte(" "))
	switch string(cmd) {
	case "info":
		i := c.Info()
		line := "route=" + i.Route + " id=" + strconv.FormatUint(c.ID(), 10) +
			" client=" + i.Client + " target=" + i.Target + " listen=" + i.Listen + "\n"
		logErr("info", c.Send(sdk.ServerToClient, []byte(line)))
	case "reply":
		logErr("reply", c.Send(dir.Reverse(), arg))
	case "upper":
		logErr("upper", c.Send(dir, bytes.ToUpper(arg)))
	case "closewrite":
		logErr("closewrite", c.CloseWrite(sdk.ClientToServer))
		logErr("send after closewrite", c.Send(sdk.ClientToServer, []byte("x")))
		logErr("closewrite again", c.CloseWrite(sdk.ClientToServer))
	case "close":
		logErr("bye", c.Send(sdk.ServerToClient, []byte("bye\n")))
		logErr("close", c.Close())
	case "log":
		sdk.Log(sdk.LevelDebug, "debug line")
		sdk.Log(sdk.LevelInfo, "info line")
		sdk.Logf(sdk.LevelWarn, "warn line %d", 3)
		sdk.LogBytes(sdk.LevelError, []byte("error line"))
		sdk.Log(sdk.Level(6), "level 6 line")   // a warning for the host
		sdk.Log(sdk.Level(-9), "level -9 line") // a debug line
	case "stdout":
		_, err := sdk.Stdout().Write(arg)
		logErr("stdout", err)
	case "never":
		logErr("never", c.SetTimer(math.MaxInt64))
	case "soon":
		logErr("soon", c.SetTimer(time.Millisecond))
	case "at":
		h.armed = sdk.Now()
		logErr("at", c.SetTimer(50*time.Millisecond))
	case "later":
		h.closeLater = true
		logErr("later", c.SetTimer(time.Millisecond))
		return sdk.Hold
	case "panic":
		panic("probe: boom")
	case "badarg":
		logErr("badarg", c.Send(7, []byte("x")))
	case "other":
		var other *sdk.Conn
		if h.p.last != c {
			other = h.p.last
		}
		if other == nil {
			logErr("other", nil)
			break
		}
		logErr("other", other.Send(sdk.ClientToServer, []byte("x")))
	default:
		if bytes.HasPrefix(data, []byte("!hold")) {
			if !end && bytes.IndexByte(data, '.') < 0 {
				return sdk.Hold
			}
			return sdk.Forward
		}
		return sdk.Forward
	}
	return sdk.Drop
}

// OnTimer replies "timer\n" to the client (with the time since !at armed
// it), after a half-close toward the server for !later.
func (h *handler) OnTimer(c *sdk.Conn) {
	if h.closeLater {
		logErr("closewrite", c.CloseWrite(sdk.ClientToServer))
	}
	if h.armed != 0 {
		ms := strconv.FormatInt(int64((sdk.Now()-h.armed)/time.Millisecond), 10)
		logErr("timer", c.Send(sdk.ServerToClient, []byte("timer after "+ms+"ms\n")))
		return
	}
	logErr("timer", c.Send(sdk.ServerToClient, []byte("timer\n")))
}

func (h *handler) OnClose(c *sdk.Conn) {
	sdk.Log(sdk.LevelInfo, "closed #"+strconv.FormatUint(c.ID(), 10))
	logErr("send in OnClose", c.Send(sdk.ServerToClient, []byte("x")))
}
