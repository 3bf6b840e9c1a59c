package scripthook

import (
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func TestCacheSameStringIsOneScript(t *testing.T) {
	c := newSHACache(4)
	body := strings.Repeat("-- padding\n", 100) + "return 1"
	sc := scriptCall{kind: kindEval, body: body}
	a := c.forCall(&sc)
	b := c.forCall(&sc)
	assert.Same(t, a, b)
	assert.Equal(t, sha1Hex(body), a.sha)

	// The same content in another string allocation finds the same script.
	other := strings.Clone(body)
	sc2 := scriptCall{kind: kindEval, body: other}
	assert.Same(t, a, c.forCall(&sc2))
	assert.Equal(t, 1, c.len())
}

// A caller may reuse one []byte buffer for different scripts: the cache must
// never answer with the SHA1 of what the buffer held before.
func TestCacheReusedByteBuffer(t *testing.T) {
	c := newSHACache(4)
	buf := []byte("return 'aaaa'")
	sc := scriptCall{kind: kindEval, bodyBytes: buf, isBytes: true}
	first := c.forCall(&sc)
	assert.Equal(t, sha1Hex("return 'aaaa'"), first.sha)
	copy(buf, "return 'bbbb'")
	second := c.forCall(&sc)
	assert.Equal(t, sha1Hex("return 'bbbb'"), second.sha)
	assert.Equal(t, "return 'aaaa'", first.body, "the cache keeps its own copy")
}

func TestCacheEvictsAndStaysBounded(t *testing.T) {
	c := newSHACache(8)
	hot := "return 'hot'"
	for i := 0; i < 1000; i++ {
		sc := scriptCall{kind: kindEval, body: hot}
		c.forCall(&sc)
		body := fmt.Sprintf("return %d", i)
		sc = scriptCall{kind: kindEval, body: body}
		s := c.forCall(&sc)
		require.Equal(t, sha1Hex(body), s.sha)
		require.LessOrEqual(t, c.len(), 8)
	}
	assert.NotNil(t, c.lookupSHA(sha1Hex(hot)), "a script used all along survives the clock")
	assert.Len(t, c.byID, c.len())
	assert.Len(t, c.byBody, c.len())
}

func TestCacheRegisteredIsPinned(t *testing.T) {
	c := newSHACache(2)
	reg := c.register("limiter", "return 'registered'")
	for i := 0; i < 100; i++ {
		sc := scriptCall{kind: kindEval, body: fmt.Sprintf("return %d", i)}
		c.forCall(&sc)
	}
	assert.Same(t, reg, c.lookupSHA(sha1Hex("return 'registered'")))
	assert.Equal(t, "limiter", reg.displayName())
	assert.False(t, reg.evicted.Load())
}

func TestNodeStateForgetKeepsNewerLoad(t *testing.T) {
	n := newNodeState(16)
	s := &script{sha: "x"}
	n.markLoaded(s)
	_, gen := n.loaded(s)
	// Another caller reloads and confirms (a newer belief)...
	n.forget(s, gen)
	_, _, fl, lead := n.begin(s)
	require.True(t, lead)
	n.finish(s, fl, true)
	// ...then a late NOSCRIPT for a command sent before that reload arrives.
	n.forget(s, gen)
	ok, _ := n.loaded(s)
	assert.True(t, ok, "a stale NOSCRIPT must not undo a newer load")
}

func TestNodeStateResetAfterLostConnection(t *testing.T) {
	n := newNodeState(16)
	s := &script{sha: "x"}
	n.markLoaded(s)
	n.dialled("127.0.0.1:1") // pool growth: nothing was lost
	ok, _ := n.loaded(s)
	assert.True(t, ok)
	n.connClosed()
	n.dialled("127.0.0.1:1")
	ok, _ = n.loaded(s)
	assert.False(t, ok)
}

func TestNodeStateBounded(t *testing.T) {
	n := newNodeState(10)
	for i := 0; i < 1000; i++ {
		n.markLoaded(&script{sha: fmt.Sprint(i)})
		require.LessOrEqual(t, n.size(), 10)
	}
}
