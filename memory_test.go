package scripthook

// Memory: a flood of distinct scripts keeps the heap bounded by the cache
// size, not by the number of scripts seen, and the per-node loaded-state is
// bounded too.
//
//	SCRIPTHOOK_REQUIRE_REDIS=1 go test -run 'TestMemory' -v -timeout 300s .
//
// The heap figures are logged on lines starting with "MEMORY |". The floods
// of 1 KB scripts are cut from 200,000 to 40,000 under the race detector
// (which makes every lock and map access several times slower); the bound
// is flat long before.

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memNext is a do-nothing server: every command succeeds.
func memNext(context.Context, redis.Cmder) error { return nil }

// memHeap returns the live heap after a full collection.
func memHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// memLargeFlood is how many distinct 1 KB scripts go through one hook:
// fewer under the race detector, which makes each several times slower.
func memLargeFlood() int {
	if raceEnabled() {
		return 40_000
	}
	return 200_000
}

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// One hook over a do-nothing next sees a million distinct scripts, as
// strings and as []byte (copied by the hook), as EVAL and as EVAL_RO. The
// live heap stays flat after the cache fills: it is set by the cache size
// (and the per-node state, bounded at 2×cache+64 scripts), not by the
// number of scripts seen.
func TestMemoryMillionDistinctScripts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cacheSize int
		pad       int // body bytes beyond "return <n>"
		n         int
	}{
		{"default cache, small bodies", DefaultCacheSize, 0, 1_000_000},
		{"default cache, 1 KB bodies", DefaultCacheSize, 1 << 10, memLargeFlood()},
		{"cache 64, 1 KB bodies", 64, 1 << 10, memLargeFlood()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pad := strings.Repeat("-", tc.pad)
			base := memHeap()
			h := New(WithTracing(false), WithCacheSize(tc.cacheSize))
			p := h.ProcessHook(memNext)
			limit := nodeLimit(h.sh.cfg)
			var peak uint64
			var afterFill uint64
			checkpoints := 10
			buf := make([]byte, 0, 64+tc.pad) // one buffer, reused for every []byte body
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
				cmd := redis.NewCmd(ctx, name, body, 0)
				if err := p(ctx, cmd); err != nil {
					t.Fatal(err)
				}
				if (i+1)%(tc.n/checkpoints) == 0 {
					cur := memHeap()
					heap := cur - min(base, cur)
					peak = max(peak, heap)
					if afterFill == 0 {
						afterFill = heap
					}
					require.LessOrEqual(t, h.sh.cache.len(), tc.cacheSize)
					require.LessOrEqual(t, h.node.size(), limit)
				}
			}
			// Pinned scripts are kept in addition, and stay.
			h.Register("pinned", "return 'pinned'")
			cur := memHeap()
			final := cur - min(base, cur)
			perScript := float64(peak) / float64(limit)
			t.Logf("MEMORY | %d distinct scripts (%d B bodies) through one hook, cache %d, node limit %d | live heap after the first %d: %.2f MB, peak over %d checkpoints: %.2f MB, at the end: %.2f MB (%.0f B per tracked script) | cache holds %d, node state %d",
				tc.n, len("return ")+6+tc.pad, tc.cacheSize, limit, tc.n/checkpoints,
				mb(afterFill), checkpoints, mb(peak), mb(final), perScript, h.sh.cache.len(), h.node.size())
			// The bound: every script the node state may track (2×cache+64,
			// a superset of the cache) with its body and a few hundred bytes
			// of bookkeeping, doubled for slack. A heap that grew with the
			// number of scripts seen would exceed it many times over.
			bound := uint64(limit) * uint64(len("return ")+8+tc.pad+600)
			assert.Less(t, peak, 2*bound, "the heap is bounded by the cache size")
			runtime.KeepAlive(h)
		})
	}
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }

// 20,000 distinct scripts through a real server, singly from 8 goroutines
// and in pipelines: every reply is right, the cache and the per-node state
// stay within their bounds.
func TestMemoryDistinctScriptsRealServer(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	const cacheSize = 256
	h := New(WithTracing(false), WithCacheSize(cacheSize))
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 8})
	defer rdb.Close()
	rdb.AddHook(h)
	limit := nodeLimit(h.sh.cfg)
	const n, workers, batch = 20_000, 8, 100

	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n/2; i += workers {
				v, err := rdb.Eval(ctx, "return "+strconv.Itoa(i), nil).Int()
				if err == nil && v != i {
					err = fmt.Errorf("script %d returned %d", i, v)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, h.node.size(), limit)
	for start := n / 2; start < n; start += batch {
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := start; i < start+batch; i++ {
				// Each script twice: the body once, then by SHA1.
				p.Eval(ctx, "return "+strconv.Itoa(i), nil)
				p.Eval(ctx, "return "+strconv.Itoa(i), nil)
			}
			return nil
		})
		require.NoError(t, err)
		for j, c := range cmds {
			require.Equal(t, int64(start+j/2), c.(*redis.Cmd).Val())
		}
		require.LessOrEqual(t, h.sh.cache.len(), cacheSize)
		require.LessOrEqual(t, h.node.size(), limit)
	}
	st := h.Stats()
	t.Logf("MEMORY | %d distinct scripts through a real server: cache %d/%d, node state %d/%d, %d bodies sent, %d rewritten",
		n, h.sh.cache.len(), cacheSize, h.node.size(), limit, st.BodiesSent, st.Rewritten)
	assert.Equal(t, int64(n/2), st.Rewritten, "the second use in each pipeline went by SHA1")
	require.NoError(t, rdb.ScriptFlush(ctx).Err())
}
