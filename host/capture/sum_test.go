package capture

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// sumRef is the one's complement sum of RFC 1071, 16 bits at a time.
func sumRef(s uint32, b []byte) uint16 {
	acc := uint64(s)
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// The 64-bit sum gives the RFC 1071 sum, whatever the length and the
// starting value (up to the one's complement zero, 0 and 0xffff being the
// same number).
func TestSum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	norm := func(x uint16) uint16 {
		if x == 0xffff {
			return 0
		}
		return x
	}
	for n := range 200 {
		for _, fill := range []byte{0x00, 0xff, 0x01} {
			b := make([]byte, n)
			for i := range b {
				if fill == 0x01 {
					b[i] = byte(r.Uint32())
				} else {
					b[i] = fill
				}
			}
			for _, s := range []uint32{0, 1, 0xffff, 0x1234} {
				if got, want := norm(uint16(sum(s, b))), norm(sumRef(s, b)); got != want || sum(s, b) > 0xffff {
					t.Fatalf("sum(%#x, %d bytes of %#x) = %#x, want %#x", s, n, fill, sum(s, b), want)
				}
			}
		}
	}
}
