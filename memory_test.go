package scripthook

// Memory: a flood of distinct scripts keeps a Hook's heap bounded by the
// cache size (CLOCK eviction, WithCacheSize), not by the number of scripts
// seen, and the per-server state is bounded too; and what a warm call pays
// to prove that the caller's body is the script it has (a memory compare)
// against what hashing the body would cost.
//
//	go test -run TestMemory -v .                      # heap lines start with "MEMORY |"
//	go test -run XXX -bench CacheHit -benchmem -count 5 .   # the proof against SHA1
//
// -short floods a tenth as many scripts; the bound is flat long before.

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// memFlood scales a flood down to a tenth under -short.
func memFlood(n int) int {
	if testing.Short() {
		return n / 10
	}
	return n
}

// One hook over a do-nothing server sees a million distinct scripts (as
// the old design's test did), as strings and as []byte (one buffer, reused:
// the hook copies), as EVAL and as EVAL_RO. After the cache fills, the live
// heap stays flat: it is set by the cache size and the server state's
// bound (2×cache+64 scripts), not by the number of scripts seen. A
// registered script stays through any flood.
func TestMemoryMillionDistinctScripts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cacheSize int
		pad       int // body bytes beyond "return <n>"
		n         int
	}{
		{"default cache, small bodies", DefaultCacheSize, 0, memFlood(1_000_000)},
		{"default cache, 1 KB bodies", DefaultCacheSize, 1 << 10, memFlood(200_000)},
		{"cache 64, 1 KB bodies", 64, 1 << 10, memFlood(200_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pad := strings.Repeat("-", tc.pad)
			base := testkit.HeapAfterGC()
			h := New(WithTracing(false), WithCacheSize(tc.cacheSize))
			p := h.ProcessHook(nopNext)
			srv := h.own.srv
			limit := srv.limit
			require.Equal(t, 2*tc.cacheSize+64, limit)
			pinned := "return 'pinned' -- " + strings.Repeat("p", 64)
			pinnedSHA := h.Register("pinned", pinned)

			var peak, afterFill uint64
			const checkpoints = 10
			buf := make([]byte, 0, 64+tc.pad)
			for i := 0; i < tc.n; i++ {
				var body interface{}
				name := "eval"
				switch i % 4 {
				case 0, 1:
					body = "return " + strconv.Itoa(i) + pad
				case 2:
					buf = append(append(append(buf[:0], "return "...), strconv.Itoa(i)...), pad...)
					body = buf
				case 3:
					body = "return " + strconv.Itoa(i) + pad
					name = "eval_ro"
				}
				if err := p(ctx, redis.NewCmd(ctx, name, body, 0)); err != nil {
					t.Fatal(err)
				}
				if (i+1)%(tc.n/checkpoints) == 0 {
					cur := testkit.HeapAfterGC()
					heap := cur - min(base, cur)
					peak = max(peak, heap)
					if afterFill == 0 {
						afterFill = heap
					}
					require.LessOrEqual(t, h.sh.cache.len(), tc.cacheSize+1, "the cache, and the registered script")
					require.LessOrEqual(t, h.Stats().Scripts, tc.cacheSize+1)
					require.LessOrEqual(t, srv.size(), limit, "the server state")
				}
			}
			require.NotNil(t, h.sh.cache.bySHA1(pinnedSHA), "a registered script is never evicted")
			cur := testkit.HeapAfterGC()
			final := cur - min(base, cur)
			bodyLen := len("return ") + 6 + tc.pad
			t.Logf("MEMORY | %d distinct scripts (%d B bodies) through one hook, cache %d, server-state limit %d | live heap after the first %d: %.2f MB, peak over %d checkpoints: %.2f MB, at the end: %.2f MB (%.0f B per tracked script) | cache holds %d, server state %d",
				tc.n, bodyLen, tc.cacheSize, limit, tc.n/checkpoints,
				mb(afterFill), checkpoints, mb(peak), mb(final), float64(peak)/float64(limit), h.sh.cache.len(), srv.size())
			// The bound: every script the server state may track (a
			// superset of the cache) with its body and a few hundred bytes
			// of bookkeeping (the script, its SHA1, three index entries,
			// a slot), doubled for slack. A heap that grew with the number
			// of scripts seen would exceed it many times over.
			bound := uint64(limit) * uint64(bodyLen+600)
			assert.Less(t, peak, 2*bound, "the heap is bounded by the cache size")
			runtime.KeepAlive(h)
		})
	}
}

// 20,000 distinct scripts, each called twice, singly from 8 goroutines and
// in pipelines of 100, through a client whose server is testkit.Fake: the
// fake runs what the SHA1 the hook sends names, so every body having run
// exactly twice proves that none ran in place of another; the cache and
// the server state stay within their bounds throughout.
func TestMemoryDistinctScriptsThroughClient(t *testing.T) {
	ctx := context.Background()
	const cacheSize = 256
	f := &testkit.Fake{}
	h := New(WithTracing(false), WithCacheSize(cacheSize))
	rdb := fakeClient(f, h)
	defer rdb.Close()
	srv := h.own.srv
	n := memFlood(20_000)
	const workers, batch = 8, 100
	// Long enough that EVALSHA saves bytes, and in pipelines SCRIPT LOAD
	// with two EVALSHA saves bytes over two EVAL.
	script := func(i int) string { return fmt.Sprintf("return %d -- %s", i, strings.Repeat("m", 300)) }

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n/2; i += workers {
				for j := 0; j < 2; j++ {
					if err := rdb.Eval(ctx, script(i), nil).Err(); err != nil {
						errs <- err
						return
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, h.sh.cache.len(), cacheSize)
	require.LessOrEqual(t, srv.size(), srv.limit)
	for start := n / 2; start < n; start += batch {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < start+batch; i++ {
				p.Eval(ctx, script(i), nil)
				p.Eval(ctx, script(i), nil)
			}
			return nil
		})
		require.NoError(t, err)
		require.LessOrEqual(t, h.sh.cache.len(), cacheSize)
		require.LessOrEqual(t, srv.size(), srv.limit)
	}
	runs := f.Stats().Runs
	require.Len(t, runs, n, "every script ran, and nothing else")
	for i := 0; i < n; i++ {
		if runs[script(i)] != 2 {
			t.Fatalf("script %d ran %d times, want 2", i, runs[script(i)])
		}
	}
	st := h.Stats()
	t.Logf("MEMORY | %d distinct scripts, each twice: cache %d/%d, server state %d/%d, %d bodies sent, %d loads, %d rewritten",
		n, h.sh.cache.len(), cacheSize, srv.size(), srv.limit, st.BodiesSent, st.Loads, st.Rewritten)
	assert.Equal(t, int64(f.Stats().Calls["evalsha"]), st.Rewritten, "the hook's count is what reached the server")
	// Most second single calls go by SHA1 (one whose script a flood of
	// other goroutines' scripts evicted in between goes with its body), and
	// pipelined calls do while the pin budget lasts.
	assert.Greater(t, st.Rewritten, int64(n/4), "calls went by SHA1")
	assert.Positive(t, st.Loads, "pipelines loaded scripts")
}

// BenchmarkCacheHit is what a warm call pays to find its script by the
// caller's body, against hashing the same body (what a cache keyed by SHA1
// would pay on every call):
//
//	identity   the same string again: one map lookup by (address, length)
//	           and a byte-for-byte compare with the hook's own copy, which
//	           proves the bytes did not change behind the string
//	content    equal bytes at an address not indexed: the body map hashes
//	           them, and the new identity is indexed (a write lock)
//	sha1       crypto/sha1 of the body, hex-encoded
//
// README and shacache.go quote these numbers.
func BenchmarkCacheHit(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"200B", 200}, {"4KB", 4 << 10}, {"32KB", 32 << 10}} {
		body := benchBody(size.n)
		b.Run(size.name+"/identity", func(b *testing.B) {
			c := newSHACache(DefaultCacheSize, sha1Hex)
			s := c.forBody(body)
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if c.forBody(body) != s {
					b.Fatal("miss")
				}
			}
		})
		b.Run(size.name+"/content", func(b *testing.B) {
			c := newSHACache(DefaultCacheSize, sha1Hex)
			s := c.forBody(body)
			// Equal bytes at an address the index does not hold: it
			// keeps two identities per script, so three copies in turn
			// always miss it, and each lookup hashes the content and
			// indexes the new identity.
			copies := []string{strings.Clone(body), strings.Clone(body), strings.Clone(body)}
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if c.forBody(copies[i%3]) != s {
					b.Fatal("miss")
				}
				i++
			}
		})
		b.Run(size.name+"/sha1", func(b *testing.B) {
			b.SetBytes(int64(size.n))
			b.ReportAllocs()
			for b.Loop() {
				if _, ok := sha1Hex(body); !ok {
					b.Skip("SHA-1 may not be used here (FIPS 140-only mode)")
				}
			}
		})
	}
}

// A hit never hashes: neither the same string again (the identity proof
// is a compare) nor equal bytes elsewhere (the body map). Only a body the
// cache does not hold is hashed, once.
func TestMemoryHitsNeverHash(t *testing.T) {
	var hashed int
	c := newSHACache(DefaultCacheSize, func(body string) (string, bool) {
		hashed++
		return sha1Hex(body)
	})
	body := benchBody(32 << 10)
	s := c.forBody(body)
	copies := []string{strings.Clone(body), strings.Clone(body), strings.Clone(body)}
	for i := 0; i < 100; i++ {
		require.Same(t, s, c.forBody(body))
		require.Same(t, s, c.forBody(copies[i%3]))
	}
	assert.Equal(t, 1, hashed, "only the first sight hashes")
	buf := []byte(body)
	buf[0] = '+' // the same length behind another string: other bytes
	other := c.forBody(string(buf))
	assert.NotSame(t, s, other)
	assert.Equal(t, 2, hashed)
}
