package scripthook

import (
	"crypto/sha1"
	"encoding/hex"
	"unsafe"
)

// sha1Hex returns a body's SHA1 in lower-case hex, the name Redis gives the
// script, or false where the program may not use SHA-1: under
// GODEBUG=fips140=only (Go 1.24+) crypto/sha1 refuses, and scripthook then
// learns each script's SHA1 from the reply to its own SCRIPT LOAD, as
// StackExchange.Redis does. It asks crypto/sha1 itself, whose Write returns
// an error when the mode forbids SHA-1 (where Sum would panic), so it follows
// crypto/fips140.Enforced exactly, crypto/fips140.WithoutEnforcement
// included, on every Go version.
func sha1Hex(body string) (string, bool) {
	h := sha1.New()
	// Hashing only reads the bytes: view the string instead of copying it.
	if _, err := h.Write(unsafe.Slice(unsafe.StringData(body), len(body))); err != nil {
		return "", false
	}
	var sum [sha1.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0])), true
}
