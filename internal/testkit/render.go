package testkit

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math/bits"
	"regexp"

	"github.com/redis/go-redis/v9"
)

// addrRE matches loopback addresses in network errors, which differ between
// two servers and between connections.
var addrRE = regexp.MustCompile(`127\.0\.0\.1:\d+`)

// ErrText renders an error with addresses masked ("<nil>" for none).
func ErrText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return addrRE.ReplaceAllString(err.Error(), "127.0.0.1:*")
}

// Render shows a command's reply and error, never its arguments (which
// differ where a reference client sends a body and the hook a SHA1), so that
// two clients' results can be compared exactly.
func Render(cmd redis.Cmder) string {
	switch c := cmd.(type) {
	case *redis.Cmd:
		return fmt.Sprintf("%#v | %v", c.Val(), ErrText(c.Err()))
	case *redis.StringCmd:
		return fmt.Sprintf("%q | %v", c.Val(), ErrText(c.Err()))
	case *redis.IntCmd:
		return fmt.Sprintf("%d | %v", c.Val(), ErrText(c.Err()))
	case *redis.StatusCmd:
		return fmt.Sprintf("%q | %v", c.Val(), ErrText(c.Err()))
	case *redis.SliceCmd:
		return fmt.Sprintf("%#v | %v", c.Val(), ErrText(c.Err()))
	case *redis.BoolSliceCmd:
		return fmt.Sprintf("%v | %v", c.Val(), ErrText(c.Err()))
	}
	return fmt.Sprintf("%T | %v", cmd, ErrText(cmd.Err()))
}

// RenderAll renders every command of a batch and the batch's error.
func RenderAll(cmds []redis.Cmder, err error) []string {
	out := make([]string, 0, len(cmds)+1)
	for _, c := range cmds {
		out = append(out, Render(c))
	}
	return append(out, "exec: "+ErrText(err))
}

// SHA1 is a body's SHA1 in lower-case hex, the name Redis gives the script.
// It is computed here rather than by crypto/sha1 so that tests can name
// scripts in a process running under GODEBUG=fips140=only, where crypto/sha1
// refuses (the library itself never does this; see its fips.go).
func SHA1(body string) string {
	h := [5]uint32{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0}
	msg := append([]byte(body), 0x80)
	for len(msg)%64 != 56 {
		msg = append(msg, 0)
	}
	msg = binary.BigEndian.AppendUint64(msg, uint64(len(body))*8)
	var w [80]uint32
	for off := 0; off < len(msg); off += 64 {
		for i := 0; i < 16; i++ {
			w[i] = binary.BigEndian.Uint32(msg[off+4*i:])
		}
		for i := 16; i < 80; i++ {
			w[i] = bits.RotateLeft32(w[i-3]^w[i-8]^w[i-14]^w[i-16], 1)
		}
		a, b, c, d, e := h[0], h[1], h[2], h[3], h[4]
		for i := 0; i < 80; i++ {
			var f, k uint32
			switch {
			case i < 20:
				f, k = b&c|^b&d, 0x5A827999
			case i < 40:
				f, k = b^c^d, 0x6ED9EBA1
			case i < 60:
				f, k = b&c|b&d|c&d, 0x8F1BBCDC
			default:
				f, k = b^c^d, 0xCA62C1D6
			}
			a, b, c, d, e = bits.RotateLeft32(a, 5)+f+e+k+w[i], a, bits.RotateLeft32(b, 30), c, d
		}
		h[0], h[1], h[2], h[3], h[4] = h[0]+a, h[1]+b, h[2]+c, h[3]+d, h[4]+e
	}
	var sum [20]byte
	for i, v := range h {
		binary.BigEndian.PutUint32(sum[4*i:], v)
	}
	return hex.EncodeToString(sum[:])
}
