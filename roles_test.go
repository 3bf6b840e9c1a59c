package scripthook

import (
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/spanrec"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A traced Ring's top hook only peeks at the cache: one call is one
// sighting, so a script is not "hot" (named by SHA1, loaded to learn its
// SHA1 under FIPS, worth probes) after its first call.
func TestTopHookCountsOneSighting(t *testing.T) {
	a, b := miniredis.RunT(t), miniredis.RunT(t)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr(), "b": b.Addr()}})
	t.Cleanup(func() { _ = ring.Close() })
	rec := spanrec.New()
	h := New(WithTracerProvider(rec))
	require.NoError(t, h.Install(ring))

	src := body("one-sighting")
	require.NoError(t, ring.Eval(t.Context(), src, []string{"k"}).Err())
	s := h.sh.cache.peek(src)
	require.NotNil(t, s, "the node hook learned the script")
	assert.False(t, s.seen.Load(), "one call, one sighting")

	require.NoError(t, ring.Eval(t.Context(), src, []string{"k"}).Err())
	assert.True(t, s.seen.Load(), "the second call proves it hot")
	spans := rec.Ended()
	require.Len(t, spans, 2)
	assert.Equal(t, "EVAL", spans[0].Name, "a first call is not named by its SHA1")
}
