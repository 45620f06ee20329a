// Package hexdump formats chunks of a byte stream for people to read: a hex
// dump in the layout of `hexdump -C`, a text dump that prints printable ASCII
// as-is and escapes everything else, and the header line that introduces each
// chunk of a connection.
//
// Every function appends to dst and returns the extended slice, like
// strconv.AppendInt, so a caller that reuses its buffer formats without
// allocating:
//
//	buf = hexdump.Header(buf[:0], 7, hexdump.ClientToServer, len(chunk))
//	buf = hexdump.Hex(buf, chunk)
//	os.Stdout.Write(buf)
//
// prints
//
//	#7 client -> server 6 bytes
//	00000000  48 65 6c 6c 6f 0a                                 |Hello.|
//
// Output never contains a byte outside printable ASCII and '\n', so a dump of
// hostile traffic cannot drive the terminal it is printed on.
package hexdump

// Directions, numbered as in the tunnel ABI and host.Direction.
const (
	// ClientToServer is the stream from the client to the target.
	ClientToServer = 0
	// ServerToClient is the stream from the target to the client.
	ServerToClient = 1
)

const hexDigits = "0123456789abcdef"

// BytesPerLine is the number of input bytes shown on one line of [Hex].
const BytesPerLine = 16

// Hex appends the hex dump of data to dst, one line per 16 bytes, offsets
// counted from 0. See [HexAt].
func Hex(dst, data []byte) []byte { return HexAt(dst, 0, data) }

// HexAt appends the hex dump of data to dst with offsets starting at offset,
// in the layout of `hexdump -C` (and of encoding/hex.Dump):
//
//	00000010  48 65 6c 6c 6f 20 77 6f  72 6c 64 0a              |Hello world.|
//
// an 8-digit hex offset (more digits once it exceeds 32 bits), two spaces,
// up to 16 bytes in two groups of 8, and the bytes again between bars with
// everything outside printable ASCII shown as '.'. Every line ends in '\n'.
// Unlike hexdump -C, repeated lines are not collapsed into '*' and no final
// offset line is written. Empty data appends nothing.
func HexAt(dst []byte, offset int64, data []byte) []byte {
	for len(data) > 0 {
		n := min(len(data), BytesPerLine)
		line := data[:n]
		dst = appendOffset(dst, uint64(offset))
		dst = append(dst, ' ', ' ')
		for i := 0; i < BytesPerLine; i++ {
			if i < n {
				b := line[i]
				dst = append(dst, hexDigits[b>>4], hexDigits[b&0x0f], ' ')
			} else {
				dst = append(dst, ' ', ' ', ' ')
			}
			if i == 7 {
				dst = append(dst, ' ')
			}
		}
		dst = append(dst, ' ', '|')
		for _, b := range line {
			if b < 0x20 || b > 0x7e {
				b = '.'
			}
			dst = append(dst, b)
		}
		dst = append(dst, '|', '\n')
		data = data[n:]
		offset += int64(n)
	}
	return dst
}

func appendOffset(dst []byte, off uint64) []byte {
	digits := 8
	for v := off >> 32; v != 0; v >>= 4 {
		digits++
	}
	for i := digits - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(off>>(uint(i)*4))&0x0f])
	}
	return dst
}

// Text appends data to dst as readable text: printable ASCII (space to '~')
// as-is, and escapes for everything else, so that every byte can be told
// apart:
//
//	\n  newline, followed by a real line break so the dump keeps its lines
//	\r  carriage return
//	\t  tab
//	\\  a backslash
//	\xHH  any other byte (control characters, DEL, bytes >= 0x80), and a
//	      '#' that starts a line (\x23), so that no line of data reads as
//	      a chunk header or an end line, which start with '#'
//
// The appended text always ends with '\n' (a real line break that is not
// part of the data unless it follows a "\n" escape). Empty data appends
// nothing.
func Text(dst, data []byte) []byte {
	if len(data) == 0 {
		return dst
	}
	for i, b := range data {
		switch {
		case b == '#' && (i == 0 || data[i-1] == '\n'):
			dst = append(dst, '\\', 'x', '2', '3')
		case b == '\\':
			dst = append(dst, '\\', '\\')
		case b == '\n':
			dst = append(dst, '\\', 'n', '\n')
		case b == '\r':
			dst = append(dst, '\\', 'r')
		case b == '\t':
			dst = append(dst, '\\', 't')
		case b < 0x20 || b > 0x7e:
			dst = append(dst, '\\', 'x', hexDigits[b>>4], hexDigits[b&0x0f])
		default:
			dst = append(dst, b)
		}
	}
	if data[len(data)-1] != '\n' {
		dst = append(dst, '\n')
	}
	return dst
}

// Header appends the line that introduces a chunk of n bytes of connection
// conn travelling in direction dir ([ClientToServer] or [ServerToClient]):
//
//	#7 client -> server 6 bytes
//
// "1 byte" is singular. The line ends in '\n'.
func Header(dst []byte, conn uint64, dir int, n int) []byte {
	dst = appendConnDir(dst, conn, dir)
	dst = append(dst, ' ')
	dst = appendUint(dst, uint64(max(n, 0)))
	if n == 1 {
		return append(dst, " byte\n"...)
	}
	return append(dst, " bytes\n"...)
}

// End appends the line that says the stream dir of connection conn ended
// (its sender half-closed):
//
//	#7 client -> server end
func End(dst []byte, conn uint64, dir int) []byte {
	dst = appendConnDir(dst, conn, dir)
	return append(dst, " end\n"...)
}

// DirString returns "client -> server" for [ClientToServer], "server ->
// client" for [ServerToClient] and "invalid direction" otherwise.
func DirString(dir int) string {
	switch dir {
	case ClientToServer:
		return "client -> server"
	case ServerToClient:
		return "server -> client"
	}
	return "invalid direction"
}

func appendConnDir(dst []byte, conn uint64, dir int) []byte {
	dst = append(dst, '#')
	dst = appendUint(dst, conn)
	dst = append(dst, ' ')
	return append(dst, DirString(dir)...)
}

func appendUint(dst []byte, v uint64) []byte {
	var tmp [20]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = byte('0' + v%10)
		v /= 10
		if v == 0 {
			break
		}
	}
	return append(dst, tmp[i:]...)
}
