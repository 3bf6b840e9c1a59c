package testkit

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"testing"
)

func TestSHA1(t *testing.T) {
	for _, s := range []string{"", "abc", strings.Repeat("x", 55), strings.Repeat("y", 56), strings.Repeat("z", 64), strings.Repeat("q", 100000)} {
		w := sha1.Sum([]byte(s))
		if SHA1(s) != hex.EncodeToString(w[:]) {
			t.Fatal(len(s))
		}
	}
}
