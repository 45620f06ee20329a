// Command codec is the tunnel plugin that encodes the traffic of one tunnel
// so that a second tunnel decodes it: base64, or XOR with a repeating key.
// A pair of tunnels, one with mode "encode" and one with mode "decode",
// delivers exactly the bytes that went in, whatever the chunking in between.
// See README.md for its configuration.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o codec.wasm ./plugins/codec
package main

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"

	"github.com/tunnelwasm/tunnel/plugins/internal/nofmt"
	"github.com/tunnelwasm/tunnel/sdk"
)

func init() { sdk.Register(newPlugin) }

func main() {}

type config struct {
	Codec  string  `json:"codec"`
	Mode   string  `json:"mode"`
	Key    *string `json:"key"`
	KeyHex *string `json:"key_hex"`
}

type plugin struct {
	xor    bool
	encode [2]bool // per direction: encode (else decode)
	key    []byte
	ring   []byte // the key repeated, long enough for one input buffer from any key offset
	out    []byte // scratch
	in     []byte // scratch: base64 input without line breaks
}

// conn is the per-connection state of each direction.
type conn struct {
	p   *plugin
	off [2]uint64 // xor: stream offset
	// base64 decode: the incomplete group of the last chunk (n < 4
	// characters), completed by the next chunk. The encoder keeps nothing
	// back: each chunk goes out whole, padded.
	rem [2][4]byte
	n   [2]int
}

func newPlugin(raw []byte) (sdk.Plugin, error) {
	var c config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return nil, nofmt.Wrap("codec", err)
	}
	p := &plugin{}
	switch c.Mode {
	case "encode":
		p.encode = [2]bool{true, false}
	case "decode":
		p.encode = [2]bool{false, true}
	case "":
		return nil, errors.New(`codec: "mode" is missing: "encode" (encode toward the server, decode the replies) or "decode" (the other end of the pair)`)
	default:
		return nil, errors.New(`codec: "mode" must be "encode" or "decode", not ` + strconv.Quote(c.Mode))
	}
	switch c.Codec {
	case "base64":
		if c.Key != nil || c.KeyHex != nil {
			return nil, errors.New(`codec: base64 takes no key`)
		}
	case "xor":
		p.xor = true
		switch {
		case c.Key != nil && c.KeyHex != nil:
			return nil, errors.New(`codec: give "key" or "key_hex", not both`)
		case c.Key != nil:
			p.key = []byte(*c.Key)
		case c.KeyHex != nil:
			k, err := nofmt.DecodeHex(*c.KeyHex)
			if err != nil {
				return nil, errors.New(`codec: "key_hex" is not hex: ` + err.Error())
			}
			p.key = k
		}
		if len(p.key) == 0 {
			return nil, errors.New(`codec: xor needs a non-empty "key" (or "key_hex")`)
		}
		p.ring = make([]byte, 0, sdk.DefaultBufferSize+len(p.key))
		for len(p.ring) < cap(p.ring) {
			p.ring = append(p.ring, p.key...)
		}
	case "":
		return nil, errors.New(`codec: "codec" is missing: "base64" or "xor"`)
	default:
		return nil, errors.New(`codec: "codec" must be "base64" or "xor", not ` + strconv.Quote(c.Codec))
	}
	return p, nil
}

func (p *plugin) NewConn(*sdk.Conn) (sdk.Handler, error) { return &conn{p: p}, nil }

func (c *conn) OnData(sc *sdk.Conn, dir sdk.Direction, data []byte, end bool) sdk.Action {
	d := dir & 1
	var out []byte
	switch {
	case c.p.xor:
		out = c.xor(d, data)
	case c.p.encode[d]:
		out = c.p.encode64(data)
	default:
		var err error
		out, err = c.decode64(d, data, end)
		if err != nil {
			sdk.Log(sdk.LevelError, "codec: "+dir.String()+": "+err.Error()+"; closing the connection")
			_ = sc.Close()
			return sdk.Drop
		}
	}
	if len(out) > 0 {
		if err := sc.Send(dir, out); err != nil {
			sdk.Log(sdk.LevelWarn, "codec: send "+dir.String()+": "+err.Error())
		}
	}
	return sdk.Drop
}

// xor transforms data in place (the input buffer is the guest's to reuse)
// with the key stream from this direction's offset.
func (c *conn) xor(d sdk.Direction, data []byte) []byte {
	p := c.p
	k := int(c.off[d] % uint64(len(p.key)))
	for rest := data; len(rest) > 0; {
		n := min(len(rest), len(p.ring)-k)
		subtle.XORBytes(rest[:n], rest[:n], p.ring[k:k+n])
		rest = rest[n:]
		k = (k + n) % len(p.key)
	}
	c.off[d] += uint64(len(data))
	return data
}

// encode64 encodes data whole, its last group padded: no byte is kept back
// for the next chunk or the end of the stream, so a request is on the wire
// as soon as it came. The stream is a concatenation of padded base64
// pieces, one per chunk, which decode64 reads.
func (p *plugin) encode64(data []byte) []byte {
	p.out = base64.StdEncoding.AppendEncode(p.out[:0], data)
	return p.out
}

// decode64 decodes the complete groups of 4 characters of this direction
// (line breaks left out), and keeps an incomplete one for the next chunk:
// TCP may cut the stream anywhere, while the encoder always ends its
// chunks with a complete group. Padding may end any group (the stream is a
// concatenation of padded pieces).
func (c *conn) decode64(d sdk.Direction, data []byte, end bool) ([]byte, error) {
	p := c.p
	in := data // the usual chunk: whole groups from our encoder, no line breaks
	if breaks := bytes.IndexByte(data, '\n') >= 0 || bytes.IndexByte(data, '\r') >= 0; breaks || c.n[d] > 0 {
		in = append(p.in[:0], c.rem[d][:c.n[d]]...)
		if !breaks {
			in = append(in, data...)
		} else {
			for _, b := range data {
				if b != '\r' && b != '\n' {
					in = append(in, b)
				}
			}
		}
		p.in = in
	}
	whole := len(in) / 4 * 4
	out, err := appendDecodePieces(p.out[:0], in[:whole])
	if err != nil {
		return nil, nofmt.Wrap("invalid base64", err)
	}
	n := copy(c.rem[d][:], in[whole:])
	c.n[d] = n
	if end && n > 0 {
		return nil, errors.New("base64 stream ends with " + strconv.Itoa(n) + " stray characters")
	}
	p.out = out
	return out, nil
}

// appendDecodePieces appends to out the decoding of in, complete groups of
// 4 that are padded base64 pieces one after the other. It decodes each
// piece in one call (calls are dear in a wasm guest): the whole of in when
// only its last group is padded, as when one chunk of the encoder came. An
// error's offset counts from the start of in.
func appendDecodePieces(out, in []byte) ([]byte, error) {
	for start := 0; start < len(in); {
		stop := len(in)
		if i := bytes.IndexByte(in[start:], '='); i >= 0 {
			stop = start + (i/4+1)*4 // the end of the padded group
		}
		var err error
		out, err = base64.StdEncoding.AppendDecode(out, in[start:stop])
		if err != nil {
			if ce, ok := err.(base64.CorruptInputError); ok {
				err = ce + base64.CorruptInputError(start)
			}
			return out, err
		}
		start = stop
	}
	return out, nil
}

func (c *conn) OnClose(*sdk.Conn) {}
