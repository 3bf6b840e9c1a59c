package scripthook

import (
	"fmt"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func testCache(limit int) *shaCache { return newSHACache(limit, sha1Hex) }

// The same string is one script, found by identity and proven by content.
func TestCacheSameStringIsOneScript(t *testing.T) {
	c := testCache(8)
	body := strings.Repeat("x", 100)
	s := c.forBody(body)
	require.NotNil(t, s)
	assert.Same(t, s, c.forBody(body))
	assert.Same(t, s, c.forBody(strings.Clone(body)), "another string, same content")
	assert.Equal(t, 1, c.len())
	assert.NotEqual(t, uintptr(unsafe.Pointer(unsafe.StringData(body))), uintptr(unsafe.Pointer(unsafe.StringData(s.body))), "the cache owns a copy")
}

// A caller's bytes that change under the same string (unsafe.String over a
// reused buffer) never run the old script: every identity hit is proven.
func TestCacheBytesChangedUnderTheSameString(t *testing.T) {
	c := testCache(8)
	buf := []byte("return 'AAAA'")
	s := unsafe.String(&buf[0], len(buf))
	a := c.forBody(s)
	assert.Equal(t, "return 'AAAA'", a.body)
	copy(buf, "return 'BBBB'")
	b := c.forBody(s)
	assert.Equal(t, "return 'BBBB'", b.body)
	assert.NotEqual(t, a.hex(), b.hex())
	assert.Equal(t, sha1HexT(t, "return 'BBBB'"), b.hex())
	copy(buf, "return 'AAAA'")
	assert.Same(t, a, c.forBody(s))
}

// A reused []byte buffer gets the SHA1 of its current bytes.
func TestCacheReusedByteBuffer(t *testing.T) {
	c := testCache(8)
	buf := make([]byte, 0, 64)
	for i := 0; i < 5; i++ {
		buf = append(buf[:0], fmt.Sprintf("return %d", i)...)
		s := c.forBody(unsafe.String(unsafe.SliceData(buf), len(buf)))
		assert.Equal(t, sha1HexT(t, string(buf)), s.hex())
	}
}

func TestCacheEvictsAndStaysBounded(t *testing.T) {
	c := testCache(16)
	hot := c.forBody("return 'hot'")
	for i := 0; i < 1000; i++ {
		c.forBody(fmt.Sprintf("return %d", i))
		c.forBody("return 'hot'") // keeps its clock bit set
		require.LessOrEqual(t, c.len(), 16)
	}
	assert.Same(t, hot, c.bySHA1(hot.hex()), "a hot script survives a flood")
	assert.LessOrEqual(t, len(c.byID), 2*16, "at most two identities per script")
}

func TestCacheRegisteredIsKept(t *testing.T) {
	c := testCache(4)
	r := c.register("reg", "return 'registered'")
	for i := 0; i < 100; i++ {
		c.forBody(fmt.Sprintf("return %d", i))
	}
	assert.Same(t, r, c.bySHA1(r.hex()))
	assert.Equal(t, "reg", r.displayName())
	assert.True(t, r.registered.Load())
	// Registering a body the cache has keeps that script, and names it.
	s := c.forBody("return 'later'")
	assert.Same(t, s, c.register("later", "return 'later'"))
	assert.True(t, s.registered.Load())
}

// Where SHA-1 may not be used, the cache keeps bodies without a SHA1 until
// the server tells it, and then finds them by it.
func TestCacheLearnsSHA1(t *testing.T) {
	c := newSHACache(8, func(string) (string, bool) { return "", false })
	s := c.forBody("return 'fips'")
	assert.Empty(t, s.hex())
	assert.Nil(t, c.bySHA1(sha1HexT(t, "return 'fips'")))
	c.learnSHA(s, sha1HexT(t, "return 'fips'"))
	assert.Same(t, s, c.bySHA1(sha1HexT(t, "return 'fips'")))
	assert.Empty(t, c.register("n", "return 'x'").hex(), "Register cannot tell a SHA1 either")
}

func sha1HexT(t *testing.T, s string) string {
	t.Helper()
	h, ok := sha1Hex(s)
	require.True(t, ok)
	return h
}
