package main

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/tunnelwasm/tunnel/host/plugintest"
	"github.com/tunnelwasm/tunnel/sdk"
	"github.com/tunnelwasm/tunnel/sdk/sdktest"
	"go.uber.org/goleak"
)

const (
	c2s = sdk.ClientToServer
	s2c = sdk.ServerToClient
)

func TestNative(t *testing.T) { testResp(t, sdktest.Native, 1) }

// TestWasm runs the same tests through a real tunnel; the split tests take
// every 5th offset there.
func TestWasm(t *testing.T) { testResp(t, plugintest.Wasm(t, "."), 5) }

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// cmd encodes a command as a RESP array of bulk strings, as clients send.
func cmd(args ...string) string {
	s := fmt.Sprintf("*%d\r\n", len(args))
	for _, a := range args {
		s += fmt.Sprintf("$%d\r\n%s\r\n", len(a), a)
	}
	return s
}

const blockConfig = `{"block": ["FLUSHALL", "flushdb", "CONFIG SET"], "rename": {"KEYS": "SECRET_KEYS"}}`

func errFor(name string) string {
	return "-ERR command '" + name + "' is not allowed by the tunnel\r\n"
}

func testResp(t *testing.T, start sdktest.Starter, step int) {
	t.Run("pipelined: the error takes the blocked command's place among the replies", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte(cmd("SET", "a", "1")+cmd("flushall")+cmd("GET", "a")+cmd("FlushDB", "ASYNC")))
		want := cmd("SET", "a", "1") + cmd("GET", "a")
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		c.Write(s2c, []byte("+OK\r\n$1\r\n1\r\n"))
		want = "+OK\r\n" + errFor("flushall") + "$1\r\n1\r\n" + errFor("flushdb")
		if got := c.Read(s2c, len(want)); string(got) != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
		sdktest.Finish(c)
		if v, _ := c.Tag("resp.blocked"); v != "2" {
			t.Errorf("tag resp.blocked = %q, want 2", v)
		}
		for _, name := range []string{"flushall", "flushdb"} {
			if m := sdktest.Metric(t, p, "blocked_total", "command", name); m.Value != 1 {
				t.Errorf("blocked_total{command=%q} = %d, want 1", name, m.Value)
			}
		}
		if m := sdktest.Metric(t, p, "blocked_total", "command", "config set"); m.Value != 0 {
			t.Errorf("blocked_total{command=\"config set\"} = %d, want 0", m.Value)
		}
		wantLogs := []sdktest.Log{{Level: sdk.LevelWarn, Msg: `resp: blocked "flushall"`}, {Level: sdk.LevelWarn, Msg: `resp: blocked "flushdb"`}}
		if logs := p.Logs(); fmt.Sprint(logs) != fmt.Sprint(wantLogs) {
			t.Errorf("logs %q, want %q", logs, wantLogs)
		}
	})
	t.Run("names of the same length and letter as a blocked one", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"block": ["set", "DEL"], "log": false}`})
		c := p.Open()
		c.Write(c2s, []byte(cmd("SET", "a", "1")+cmd("SUN", "x")+cmd("setnx", "a", "1")+cmd("GET", "a")+cmd("dEl", "a")+cmd("DAL")))
		want := cmd("SUN", "x") + cmd("setnx", "a", "1") + cmd("GET", "a") + cmd("DAL")
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		c.Write(s2c, []byte("-ERR unknown\r\n:1\r\n$1\r\n1\r\n-ERR unknown\r\n"))
		want = errFor("set") + "-ERR unknown\r\n:1\r\n$1\r\n1\r\n" + errFor("del") + "-ERR unknown\r\n"
		if got := c.Read(s2c, len(want)); string(got) != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
		c.End(c2s)
		c.End(s2c)
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("nothing outstanding: the error at once", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte(cmd("FLUSHALL")))
		if got := c.Read(s2c, len(errFor("flushall"))); string(got) != errFor("flushall") {
			t.Fatalf("client got %q", got)
		}
		c.Write(c2s, []byte(cmd("PING")))
		if got := c.Read(c2s, 14); string(got) != cmd("PING") {
			t.Fatalf("server got %q", got)
		}
		c.End(c2s)
		c.End(s2c)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q more", got)
		}
		c.Wait()
	})
	t.Run("a pipeline split at every offset, both ways", func(t *testing.T) {
		req := cmd("SET", "k", strings.Repeat("v", 40)) + cmd("CONFIG", "SET", "save", "") + cmd("CONFIG", "GET", "save") +
			"flushall\r\n" + "PING\r\n" + cmd("keys", "*") + cmd("FLUSHDB") + "\"FLUSHALL\"\r\n" + cmd("GET", "k")
		wantReq := cmd("SET", "k", strings.Repeat("v", 40)) + cmd("CONFIG", "GET", "save") + "PING\r\n" +
			cmd("SECRET_KEYS", "*") + cmd("GET", "k")
		// RESP3 replies: a map, a push message in between, an attribute
		// before a reply, nested arrays, a null.
		rep := []string{"+OK\r\n", "%1\r\n$4\r\nsave\r\n$0\r\n\r\n", "+PONG\r\n", "|1\r\n+ttl\r\n:3\r\n*2\r\n*1\r\n$1\r\nk\r\n_\r\n", "$40\r\n" + strings.Repeat("v", 40) + "\r\n"}
		push := ">2\r\n$7\r\nmessage\r\n$2\r\nhi\r\n"
		replies := rep[0] + rep[1] + push + rep[2] + rep[3] + rep[4]
		want := rep[0] + errFor("config set") + rep[1] + errFor("flushall") + push + rep[2] + rep[3] + errFor("flushdb") + errFor("flushall") + rep[4]
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"block": ["FLUSHALL", "flushdb", "CONFIG SET"], "rename": {"KEYS": "SECRET_KEYS"}, "log": false}`})
		for i := 1; i < len(req); i += step {
			c := p.Open()
			c.Write(c2s, []byte(req[:i]))
			c.Write(c2s, []byte(req[i:]))
			if got := c.Read(c2s, len(wantReq)); string(got) != wantReq {
				t.Fatalf("split at %d: server got\n%q\nwant\n%q", i, got, wantReq)
			}
			j := i % len(replies)
			c.Write(s2c, []byte(replies[:j]))
			c.Write(s2c, []byte(replies[j:]))
			if got := c.Read(s2c, len(want)); string(got) != want {
				t.Fatalf("split at %d, replies at %d: client got\n%q\nwant\n%q", i, j, got, want)
			}
			sdktest.Finish(c)
		}
	})
	t.Run("a renamed command's new name sent by the client is refused", func(t *testing.T) {
		// The server knows CONFIG only as Cfg_S3cr3t: a client that sent
		// that name itself got CONFIG SET past the rule (it used to pass).
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"block": ["CONFIG SET"], "rename": {"CONFIG": "Cfg_S3cr3t", "KEYS": "CONFIG"}, "log": false}`})
		c := p.Open()
		c.Write(c2s, []byte(cmd("cfg_s3cr3t", "SET", "hz", "50")+"CFG_S3CR3T get hz\r\n"+cmd("Cfg_S3cr3t\x00x", "GET", "hz")+
			cmd("CONFIG", "GET", "hz")+cmd("config", "set", "hz", "50")+"keys *\r\n"))
		want := cmd("Cfg_S3cr3t", "GET", "hz") + "CONFIG *\r\n"
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		c.Write(s2c, []byte("*0\r\n*0\r\n"))
		want = errFor("cfg_s3cr3t") + errFor("cfg_s3cr3t") + errFor("cfg_s3cr3t") + "*0\r\n" + errFor("config set") + "*0\r\n"
		if got := c.Read(s2c, len(want)); string(got) != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
		sdktest.Finish(c)
	})
	t.Run("with allow, a rename lets nothing through that the list does not", func(t *testing.T) {
		// Only CONFIG GET allowed, CONFIG renamed: CONFIG SET went to the
		// server as Cfg_S3cr3t SET, and KEYS, renamed but not allowed,
		// went too.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"allow": ["CONFIG GET", "GET"], "rename": {"CONFIG": "Cfg_S3cr3t", "KEYS": "K2"}, "log": false}`})
		c := p.Open()
		c.Write(c2s, []byte(cmd("CONFIG", "GET", "hz")+cmd("config", "SET", "hz", "50")+"keys *\r\n"+cmd("GET", "k")))
		want := cmd("Cfg_S3cr3t", "GET", "hz") + cmd("GET", "k")
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		c.Write(s2c, []byte("*0\r\n$-1\r\n"))
		want = "*0\r\n" + errFor("config") + errFor("keys") + "$-1\r\n"
		if got := c.Read(s2c, len(want)); string(got) != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
		sdktest.Finish(c)
	})
	t.Run("inline commands: quoted, escaped, renamed", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte("  \"\\x46LUSHALL\" \r\n'flushdb'\r\n\r\nkeys user:*\r\nPING\r\n"))
		want := "\r\nSECRET_KEYS user:*\r\nPING\r\n"
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		if got := c.Read(s2c, len(errFor("flushall")+errFor("flushdb"))); string(got) != errFor("flushall")+errFor("flushdb") {
			t.Fatalf("client got %q", got)
		}
		c.End(c2s)
		c.End(s2c)
		c.ReadAll(c2s)
		c.Wait()
	})
	t.Run("inline commands: a quote inside a word, as Redis splits it", func(t *testing.T) {
		// Redis's sdssplitargs reads FLUSH"ALL", FLUSHALL"" and FLUSH'ALL' as
		// FLUSHALL, and CONFIG SE"T" as CONFIG SET; a NUL ends the line.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte("FLUSH\"ALL\"\r\nFLUSHALL\"\"\r\nFLUSH'ALL'\r\nCONFIG SE\"T\" maxmemory 1\r\nflushall\x00x\r\nPING\r\nFLUSHALL\v\r\n"))
		want := "PING\r\nFLUSHALL\v\r\n" // "flushall\v" is not a command Redis knows
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		wantErr := errFor("flushall") + errFor("flushall") + errFor("flushall") + errFor("config set") + errFor("flushall")
		if got := c.Read(s2c, len(wantErr)); string(got) != wantErr {
			t.Fatalf("client got %q, want %q", got, wantErr)
		}
		c.End(c2s)
		c.End(s2c)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q more", got)
		}
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("a name or subcommand ends at a NUL byte, as Redis compares names", func(t *testing.T) {
		// Redis finds a command by a hash of the whole name but compares
		// with strcasecmp, which stops at a NUL: "flushall\x00<any>" runs
		// FLUSHALL whenever it lands in FLUSHALL's hash bucket (one try in
		// a few hundred; for CONFIG's subcommands one in a few).
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		long := "flushall\x00" + strings.Repeat("x", 100)
		c.Write(c2s, []byte(cmd("FLUSHALL\x001")+cmd("CONFIG", "SET\x00x", "maxmemory", "1")+cmd(long)+
			cmd("CONFIG", "set\x00"+strings.Repeat("y", 100), "maxmemory", "1")+cmd("PING")))
		want := cmd("PING")
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		c.Write(s2c, []byte("+PONG\r\n"))
		wantErr := errFor("flushall") + errFor("config set") + errFor("flushall") + errFor("config set") + "+PONG\r\n"
		if got := c.Read(s2c, len(wantErr)); string(got) != wantErr {
			t.Fatalf("client got %q, want %q", got, wantErr)
		}
		c.End(c2s)
		c.End(s2c)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q more", got)
		}
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("an inline name or subcommand ends at a NUL byte too", func(t *testing.T) {
		// "\x00" in a quoted inline argument is a NUL: the inline forms of
		// the commands above ran FLUSHALL and CONFIG SET past the plugin
		// (12 and 265 times in 2000 tries against redis-server 7.0).
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte(`"FLUSHALL\x001"`+"\r\n"+`config "SET\x00x" maxmemory 1`+"\r\n"+
			`"flushall\x00`+strings.Repeat("x", 100)+"\"\n"+`"KEYS\x00" *`+"\r\n"+"\x00junk\r\n"+cmd("flushall")+"PING\r\n"))
		want := `"KEYS\x00" *` + "\r\n" + "\x00junk\r\n" + "PING\r\n" // a renamed name with a NUL goes as it came
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q, want %q", got, want)
		}
		// Redis answers the KEYS line, not the one that starts with a NUL.
		c.Write(s2c, []byte("-ERR unknown command\r\n+PONG\r\n"))
		wantErr := errFor("flushall") + errFor("config set") + errFor("flushall") + "-ERR unknown command\r\n" + errFor("flushall") + "+PONG\r\n"
		if got := c.Read(s2c, len(wantErr)); string(got) != wantErr {
			t.Fatalf("client got %q, want %q", got, wantErr)
		}
		c.End(c2s)
		c.End(s2c)
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q more", got)
		}
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("more error replies for one chunk than a call may send: the connection is closed, the instance lives", func(t *testing.T) {
		// 1500 blocked commands with a 3000-byte error text make 4.5 MB of
		// replies for one 13 KB chunk: past the 4 MiB a call may send, the
		// call failed and with it every connection of the instance.
		errText := "ERR " + strings.Repeat("x", 3000) + " {command}"
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"block": ["FLUSHALL"], "log": false, "error": "` + errText + `"}`})
		reply := "-" + strings.ReplaceAll(errText, "{command}", "flushall") + "\r\n"
		c := p.Open()
		c.Write(c2s, []byte(strings.Repeat("FLUSHALL\n", 1500)+"PING\r\n"))
		got := string(c.ReadAll(s2c))
		n := strings.Count(got, reply)
		if n*len(reply) > maxNow+len(reply) || n == 0 || !strings.HasSuffix(got, "-ERR Protocol error: more than 2097152 bytes of error replies for one chunk of blocked commands\r\n") {
			t.Fatalf("client got %d error replies (%d bytes) and %q at the end; want at most %d bytes of them, then the protocol error", n, n*len(reply), got[max(0, len(got)-120):], maxNow)
		}
		if b := c.ReadAll(c2s); len(b) != 0 {
			t.Fatalf("server got %q", b)
		}
		c.Wait()
		c2 := p.Open() // the instance still serves
		c2.Write(c2s, []byte("PING\r\n"))
		if b := c2.Read(c2s, 6); string(b) != "PING\r\n" {
			t.Fatalf("the next connection: server got %q", b)
		}
		sdktest.Finish(c2)
	})
	t.Run("many blocks in one chunk: one send, one tag, bounded log lines", func(t *testing.T) {
		// A host call (log, tag, metric, send) per blocked command made one
		// 64 KiB chunk of "FLUSHALL\n" outlast the call timeout.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		const n = 500
		c.Write(c2s, []byte(strings.Repeat("FLUSHALL\n", n)+"PING\r\n"))
		if got := c.Read(c2s, 6); string(got) != "PING\r\n" {
			t.Fatalf("server got %q", got)
		}
		if got := c.Read(s2c, n*len(errFor("flushall"))); string(got) != strings.Repeat(errFor("flushall"), n) {
			t.Fatalf("client got %q", got)
		}
		sdktest.Finish(c)
		if v, _ := c.Tag("resp.blocked"); v != strconv.Itoa(n) {
			t.Errorf("tag resp.blocked = %q, want %d", v, n)
		}
		if m := sdktest.Metric(t, p, "blocked_total", "command", "flushall"); m.Value != n {
			t.Errorf("blocked_total = %d, want %d", m.Value, n)
		}
		logs := p.Logs()
		if len(logs) > 9 || len(logs) == 0 || logs[0].Msg != `resp: blocked "flushall"` {
			t.Fatalf("%d log lines: %q", len(logs), logs)
		}
		if last := logs[len(logs)-1].Msg; !strings.HasPrefix(last, "resp: blocked ") || !strings.HasSuffix(last, " more commands") {
			t.Errorf("last log line %q, want a count of the other blocks", last)
		}
	})
	t.Run("a long pipeline alternating allowed and blocked commands", func(t *testing.T) {
		// Each reply let out one queued error and moved the whole queue
		// down: quadratic, past the call timeout at 15000 pairs (whose
		// errors, 810 KB, stay under maxQueued).
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"block": ["FLUSHDB"], "log": false}`})
		c := p.Open()
		const n = 15000
		c.Write(c2s, []byte(strings.Repeat(cmd("INCR", "n")+cmd("FLUSHDB"), n)))
		if got := c.Read(c2s, n*len(cmd("INCR", "n"))); string(got) != strings.Repeat(cmd("INCR", "n"), n) {
			t.Fatalf("server got %d bytes, not the %d INCRs", len(got), n)
		}
		var replies, want strings.Builder
		for k := 1; k <= n; k++ {
			fmt.Fprintf(&replies, ":%d\r\n", k)
			fmt.Fprintf(&want, ":%d\r\n%s", k, errFor("flushdb"))
		}
		c.Write(s2c, []byte(replies.String()))
		if got := c.Read(s2c, want.Len()); string(got) != want.String() {
			t.Fatalf("client got %d bytes, want %d", len(got), want.Len())
		}
		sdktest.Finish(c)
	})
	t.Run("blocked commands behind a reply that does not come: bounded queue", func(t *testing.T) {
		// Long error replies reach maxQueued with few commands.
		errText := "ERR " + strings.Repeat("x", 1000) + " {command}"
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"block": ["FLUSHALL"], "log": false, "error": "` + errText + `"}`})
		c := p.Open()
		reply := "-" + strings.ReplaceAll(errText, "{command}", "flushall") + "\r\n"
		n := maxQueued/len(reply) + 10
		c.Write(c2s, []byte(cmd("BLPOP", "k", "0")+strings.Repeat("FLUSHALL\n", n)))
		if got := c.Read(c2s, len(cmd("BLPOP", "k", "0"))); string(got) != cmd("BLPOP", "k", "0") {
			t.Fatalf("server got %q", got)
		}
		// The errors no longer wait for BLPOP's reply: they all come.
		if got := c.Read(s2c, n*len(reply)); string(got) != strings.Repeat(reply, n) {
			t.Fatalf("client got %d bytes", len(got))
		}
		sdktest.Finish(c)
	})
	t.Run("more than 1048576 arguments, as Redis allows", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		head := "*1100000\r\n$4\r\nSADD\r\n$1\r\ns\r\n"
		c.Write(c2s, []byte(head))
		if got := c.Read(c2s, len(head)); string(got) != head {
			t.Fatalf("server got %q", got)
		}
		c.End(c2s)
		c.End(s2c)
		c.ReadAll(c2s)
		if got := c.ReadAll(s2c); len(got) != 0 {
			t.Fatalf("client got %q", got)
		}
		c.Wait()
	})
	t.Run("a 300 KB value in small chunks passes byte for byte", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		val := bytes.Repeat([]byte("0123456789abcdef*$\r\n"), 15000)
		req := []byte(cmd("SET", "big", string(val)) + cmd("FLUSHALL") + cmd("GET", "big"))
		want := []byte(cmd("SET", "big", string(val)) + cmd("GET", "big"))
		for b := req; len(b) > 0; {
			k := min(7777, len(b))
			c.Write(c2s, b[:k])
			b = b[k:]
		}
		c.End(c2s)
		if got := c.ReadAll(c2s); sha256.Sum256(got) != sha256.Sum256(want) {
			t.Fatalf("server got %d bytes, want %d", len(got), len(want))
		}
		reply := []byte("+OK\r\n$300000\r\n" + string(val) + "\r\n")
		for b := reply; len(b) > 0; {
			k := min(5000, len(b))
			c.Write(s2c, b[:k])
			b = b[k:]
		}
		c.End(s2c)
		wantReply := append([]byte("+OK\r\n"+errFor("flushall")), reply[5:]...)
		if got := c.ReadAll(s2c); sha256.Sum256(got) != sha256.Sum256(wantReply) {
			t.Fatalf("client got %d bytes, want %d", len(got), len(wantReply))
		}
		c.Wait()
	})
	t.Run("a long name streams: nothing is kept", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		long := cmd(strings.Repeat("x", 200000), "a") + cmd("CONFIG", strings.Repeat("y", 100000)) + cmd("FLUSHALL")
		want := cmd(strings.Repeat("x", 200000), "a") + cmd("CONFIG", strings.Repeat("y", 100000))
		for b := long; len(b) > 0; {
			k := min(3000, len(b))
			c.Write(c2s, []byte(b[:k]))
			b = b[k:]
		}
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %d bytes, want %d", len(got), len(want))
		}
		c.End(c2s)
		c.Write(s2c, []byte("-ERR unknown\r\n-ERR bad\r\n"))
		want = "-ERR unknown\r\n-ERR bad\r\n" + errFor("flushall")
		if got := c.Read(s2c, len(want)); string(got) != want {
			t.Fatalf("client got %q", got)
		}
		c.End(s2c)
		c.ReadAll(c2s)
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("allow list and a custom error", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: `{"allow": ["GET", "SET", "PING"], "error": "NOPERM {command} is off"}`})
		c := p.Open()
		c.Write(c2s, []byte(cmd("get", "a")+cmd("DEL", "a")+"ping\r\n"))
		want := cmd("get", "a") + "ping\r\n"
		if got := c.Read(c2s, len(want)); string(got) != want {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("$-1\r\n+PONG\r\n"))
		want = "$-1\r\n-NOPERM del is off\r\n+PONG\r\n"
		if got := c.Read(s2c, len(want)); string(got) != want {
			t.Fatalf("client got %q", got)
		}
		c.End(c2s)
		c.End(s2c)
		c.ReadAll(s2c)
		c.Wait()
		if m := sdktest.Metric(t, p, "blocked_total", "command", "other"); m.Value != 1 {
			t.Errorf("blocked_total{command=other} = %d, want 1", m.Value)
		}
	})
	t.Run("after SUBSCRIBE the error goes at once", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte(cmd("SUBSCRIBE", "a", "b")))
		c.Read(c2s, len(cmd("SUBSCRIBE", "a", "b")))
		sub := "*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n"
		c.Write(s2c, []byte(sub))
		c.Read(s2c, len(sub))
		c.Write(c2s, []byte(cmd("FLUSHALL")))
		if got := c.Read(s2c, len(errFor("flushall"))); string(got) != errFor("flushall") {
			t.Fatalf("client got %q", got)
		}
		c.End(c2s)
		c.End(s2c)
		c.ReadAll(s2c)
		c.Wait()
	})
	t.Run("a protocol error is answered as Redis does, and closes", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte("*1\r\nFLUSHALL\r\n"))
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Fatalf("server got %q", got)
		}
		if got := c.ReadAll(s2c); string(got) != "-ERR Protocol error: expected '$', got 'F'\r\n" {
			t.Fatalf("client got %q", got)
		}
		c.Wait()
	})
	t.Run("a bad argument after a passed name: refused before it reaches the server, no reply owed for it", func(t *testing.T) {
		// Redis answers "$-1" or a length past 512 MiB with its own
		// protocol error: the client got two, and the server the bad bytes.
		// And the command, cut short, gets no reply from the server: the
		// error waited for one, and the client hung.
		for _, tc := range []struct{ bad, msg string }{
			{"$-1\r\n", "invalid bulk length"},
			{"$-0\r\n", "invalid bulk length"},
			{"$536870913\r\n", "invalid bulk length"},
			{"$99999999999999999999\r\n", "invalid bulk length"},
			{":5\r\n", "expected '$', got ':'"},
		} {
			p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
			c := p.Open()
			c.Write(c2s, []byte(cmd("PING")+"*2\r\n$3\r\nGET\r\n"+tc.bad+cmd("PING")))
			want := cmd("PING") + "*2\r\n$3\r\nGET\r\n"
			if tc.bad[0] == '$' {
				want += "$" // the server waits for the rest, and is closed
			}
			if got := c.Read(c2s, len(want)); string(got) != want {
				t.Fatalf("%q: server got %q, want %q", tc.bad, got, want)
			}
			c.Write(s2c, []byte("+PONG\r\n")) // the first PING's; the GET gets none
			if got := c.ReadAll(c2s); len(got) != 0 {
				t.Fatalf("%q: the server got %q more", tc.bad, got)
			}
			if got, want := c.ReadAll(s2c), "+PONG\r\n-ERR Protocol error: "+tc.msg+"\r\n"; string(got) != want {
				t.Fatalf("%q: client got %q, want %q", tc.bad, got, want)
			}
			c.Wait()
		}
	})
	t.Run("a length with a leading zero or -0 is a protocol error, as for Redis", func(t *testing.T) {
		// Redis's string2ll refuses them; the plugin read "$08" as 8, and
		// "*-0" as an empty command, and answered the blocked command after
		// it before the server's protocol error.
		for _, tc := range []struct{ bad, msg string }{
			{"*01\r\n$4\r\nPING\r\n", "invalid multibulk length"},
			{"*-0\r\n", "invalid multibulk length"},
			{"*1\r\n$04\r\nPING\r\n", "invalid bulk length"},
			{"*1\r\n$00\r\n\r\n", "invalid bulk length"},
			{"*2\r\n$3\r\nGET\r\n$01\r\na\r\n", "invalid bulk length"},
			// Past int64: the plugin read these as 1 (they wrapped), and
			// passed or framed the command where Redis refuses it.
			{"*18446744073709551617\r\n$4\r\nPING\r\n", "invalid multibulk length"},
			{"*-18446744073709551617\r\n", "invalid multibulk length"},
			{"*2\r\n$3\r\nGET\r\n$18446744073709551617\r\na\r\n", "invalid bulk length"},
		} {
			p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
			c := p.Open()
			c.Write(c2s, []byte(tc.bad+cmd("flushall")+cmd("PING")))
			if got := c.ReadAll(c2s); strings.Contains(string(got), "PING") || len(got) > len("*2\r\n$3\r\nGET\r\n$0") {
				t.Fatalf("%q: server got %q", tc.bad, got)
			}
			if got, want := c.ReadAll(s2c), "-ERR Protocol error: "+tc.msg+"\r\n"; string(got) != want {
				t.Fatalf("%q: client got %q, want %q", tc.bad, got, want)
			}
			c.Wait()
		}
	})
	t.Run("a protocol error waits for the replies owed before it", func(t *testing.T) {
		// Redis answers the commands before the bad one, then the error,
		// then closes; closing at once lost the PING's reply.
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte(cmd("PING")+cmd("flushall")+"*1\r\n:5\r\n"))
		if got := c.Read(c2s, len(cmd("PING"))); string(got) != cmd("PING") {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("+PONG\r\n"))
		want := "+PONG\r\n" + errFor("flushall") + "-ERR Protocol error: expected '$', got ':'\r\n"
		if got := c.ReadAll(s2c); string(got) != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
		if got := c.ReadAll(c2s); len(got) != 0 {
			t.Errorf("the server got %q more", got)
		}
		c.Wait()
	})
	t.Run("a protocol error's reply follows the owed ones when the server ends first", func(t *testing.T) {
		p := sdktest.MustStart(t, start, sdktest.Options{Config: blockConfig})
		c := p.Open()
		c.Write(c2s, []byte(cmd("GET", "k")+"*x\r\n"))
		if got := c.Read(c2s, len(cmd("GET", "k"))); string(got) != cmd("GET", "k") {
			t.Fatalf("server got %q", got)
		}
		c.Write(s2c, []byte("$-1\r"))
		c.End(s2c) // the reply cut short: the error still goes, then the close
		want := "$-1\r" + "-ERR Protocol error: invalid multibulk length\r\n"
		if got := c.ReadAll(s2c); string(got) != want {
			t.Fatalf("client got %q, want %q", got, want)
		}
		c.Wait()
	})
	t.Run("bad config", func(t *testing.T) {
		for _, tc := range []struct{ config, want string }{
			{``, `resp: nothing to do: configure "block", "allow" or "rename", e.g. {"block": ["FLUSHALL", "FLUSHDB"]}`},
			{`{"block": ["A"], "allow": ["B"]}`, `resp: "block" and "allow" exclude each other: list what to refuse, or what to let through`},
			{`{"block": ["CONFIG SET X"]}`, `resp: block: "CONFIG SET X" must be a command name, or a command and a subcommand ("CONFIG SET")`},
			{`{"block": [""]}`, `resp: block: "" must be a command name, or a command and a subcommand ("CONFIG SET")`},
			{`{"block": ["get", "GET"]}`, `resp: block: "GET" is listed twice`},
			{`{"rename": {"KEYS": "a b"}}`, `resp: rename "KEYS": the new name "a b" must be one word of at most 64 bytes`},
			{`{"rename": {"KEYS": "` + strings.Repeat("k", 65) + `"}}`, `resp: rename "KEYS": the new name "` + strings.Repeat("k", 65) + `" must be one word of at most 64 bytes`},
			{`{"rename": {"CONFIG SET": "X"}}`, `resp: rename "CONFIG SET": only a command's name can be renamed, not a subcommand`},
			{`{"block": ["KEYS"], "rename": {"keys": "X"}}`, `resp: "keys" is both blocked and renamed`},
			{`{"block": ["A"], "error": "two\nlines"}`, `resp: "error" must be one line (the plugin adds "-" and "\r\n")`},
			{`{"blocks": ["A"]}`, `resp: config: unknown setting "blocks"`},
		} {
			_, err := start(t, sdktest.Options{Config: tc.config})
			if err == nil || err.Error() != tc.want {
				t.Errorf("config %s:\n got %v\nwant %s", tc.config, err, tc.want)
			}
		}
	})
}
