package integration_test

// Script-cache eviction on real servers. Redis 7.4+ and Valkey 8 keep the
// scripts EVAL creates in an LRU of 500 and evict the oldest; SCRIPT LOAD-ed
// scripts stay. These tests run on every server; where the server evicts
// they are the cases that made the hook worse than plain EVAL, and where it
// does not they show the hook costs nothing for the same workload. Bytes are
// counted on the wire (testkit.Wire), round trips as the commands the hook
// hands to go-redis (a Spy after it), the server's cache from INFO.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// kbScript is the i-th of a family of distinct scripts of about 1 KB.
func kbScript(family string, i int) string {
	return fmt.Sprintf("-- %s %d %s\nreturn redis.call('INCR', KEYS[1])", family, i, strings.Repeat("k", 1000))
}

// wired is a client of srv whose written bytes w counts, optionally with a
// hook and a Spy after it (one entry per round trip the hook makes).
type wired struct {
	c   *redis.Client
	w   *testkit.Wire
	spy *testkit.Spy
}

func newWired(t *testing.T, srv *redistest.Server, h *scripthook.Hook) wired {
	w := &testkit.Wire{}
	c := testkit.Client(t, srv, w.Options(nil))
	var spy *testkit.Spy
	if h != nil {
		spy = &testkit.Spy{}
		c.AddHook(h)
		c.AddHook(spy)
	}
	return wired{c: c, w: w, spy: spy}
}

// trips is how many round trips a client made: one per command for a
// plain client, one per command the hook handed on for a hooked one.
func (x wired) trips(plainCalls int) int {
	if x.spy == nil {
		return plainCalls
	}
	n := 0
	for _, b := range x.spy.Batches() {
		for _, name := range b {
			if strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "script") {
				n++ // not the connection's own HELLO and CLIENT SETINFO
				break
			}
		}
	}
	return n
}

// cachedScripts is the server's number_of_cached_scripts.
func cachedScripts(t *testing.T, c *redis.Client) int {
	t.Helper()
	info, err := c.Info(context.Background(), "memory").Result()
	require.NoError(t, err)
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "number_of_cached_scripts:"); ok {
			n, err := strconv.Atoi(v)
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("INFO memory has no number_of_cached_scripts")
	return 0
}

// Round robin over N distinct scripts, single calls, hooked and plain
// against twin servers. Over the run the hook writes no more bytes than
// plain EVAL and no more round trips but for its repairs (two each); each
// script is repaired at most once (within the pin budget the repair pins
// it, beyond it the script goes as written from then on), and a last round
// needs none.
func TestEvictionRoundRobin(t *testing.T) {
	t.Parallel()
	for _, n := range []int{600, 1000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			t.Parallel()
			hsrv, psrv := redistest.Start(t), redistest.Start(t)
			h := quiet()
			hk, pl := newWired(t, hsrv, h), newWired(t, psrv, nil)
			ctx := t.Context()
			rounds := 3
			calls := 0
			var before scripthook.Stats
			for round := 0; round < rounds; round++ {
				if round == rounds-1 {
					before = h.Stats()
				}
				for i := 0; i < n; i++ {
					body := kbScript("rr", i)
					key := "k" + strconv.Itoa(i)
					want := testkit.Render(pl.c.Eval(ctx, body, []string{key}))
					got := testkit.Render(hk.c.Eval(ctx, body, []string{key}))
					require.Equal(t, want, got, "round %d script %d", round, i)
					calls++
				}
			}
			st := h.Stats()
			last := st.NoScriptRepaired - before.NoScriptRepaired
			t.Logf("%s, N=%d: hook %d B %d trips, plain %d B %d trips; %d repairs (%d evicted), last round %d",
				redistest.ServerVersion(), n, hk.w.Written(), hk.trips(calls), pl.w.Written(), calls, st.NoScriptRepaired, st.Evicted, last)
			assert.LessOrEqual(t, hk.w.Written(), pl.w.Written(), "bytes")
			// A repair is the NOSCRIPT, the hook's SCRIPT LOAD and the call
			// by SHA1: two round trips more than plain EVAL's one, once.
			assert.LessOrEqual(t, hk.trips(calls), calls+2*int(st.NoScriptRepaired), "round trips")
			assert.Zero(t, last, "the last round repairs nothing")
			// Within the pin budget a repair pins the script; beyond it
			// the script is sent as written after its first eviction.
			assert.LessOrEqual(t, st.NoScriptRepaired, int64(n), "at most one repair per script")
		})
	}
}

// A noisy neighbour sends one-off EVALs between the hot calls of 10
// scripts: after the first round the hot scripts are pinned and never
// repaired again.
func TestEvictionNoisyNeighbour(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	h := quiet()
	hk := newWired(t, srv, h)
	neighbour := testkit.Client(t, srv, nil)
	ctx := t.Context()
	oneOff := 0
	var warm scripthook.Stats
	for round := 0; round < 20; round++ {
		if round == 2 {
			warm = h.Stats()
		}
		for i := 0; i < 10; i++ {
			require.NoError(t, hk.c.Eval(ctx, kbScript("hot", i), []string{"hot"}).Err())
			for j := 0; j < 60; j++ {
				oneOff++
				require.NoError(t, neighbour.Eval(ctx, kbScript("noise", oneOff), []string{"noise"}).Err())
			}
		}
	}
	repairsAfterWarm := h.Stats().NoScriptRepaired - warm.NoScriptRepaired
	t.Logf("%s: repairs after warm-up %d, loads %d", redistest.ServerVersion(), repairsAfterWarm, h.Stats().Loads)
	assert.Zero(t, repairsAfterWarm, "hot scripts pinned: no repair after warm-up")
}

// A flood of one-off scripts (built by concatenation, each used once)
// leaves the server's script cache where plain EVAL leaves it: the hook
// pins only scripts that proved hot.
func TestEvictionFloodPinsNothing(t *testing.T) {
	t.Parallel()
	hsrv, psrv := redistest.Start(t), redistest.Start(t)
	h := quiet()
	hk, pl := newWired(t, hsrv, h), newWired(t, psrv, nil)
	ctx := t.Context()
	const total, perBatch = 20000, 100
	for i := 0; i < total; i += perBatch {
		for _, c := range []*redis.Client{hk.c, pl.c} {
			if i < 2000 {
				for j := i; j < i+perBatch; j++ {
					require.NoError(t, c.Eval(ctx, "return "+strconv.Itoa(j), nil).Err())
				}
				continue
			}
			_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for j := i; j < i+perBatch; j++ {
					p.Eval(ctx, "return "+strconv.Itoa(j), nil)
				}
				return nil
			})
			require.NoError(t, err)
		}
	}
	hooked, plain := cachedScripts(t, hk.c), cachedScripts(t, pl.c)
	t.Logf("%s: number_of_cached_scripts hook %d, plain %d; hook loads %d", redistest.ServerVersion(), hooked, plain, h.Stats().Loads)
	assert.LessOrEqual(t, hooked, plain, "the hook pins no one-off script")
	assert.LessOrEqual(t, hk.w.Written(), pl.w.Written(), "bytes")
}

// Strict pipelines and transactions of K > 500 distinct scripts, each used
// twice: no NOSCRIPT reaches the caller, results are plain EVAL's, on a
// fresh Hook and on one that knows the server.
func TestEvictionLargeBatches(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	ctx := t.Context()
	const k = 600
	var ops []batchOp
	for i := 0; i < k; i++ {
		ops = append(ops, evalOp(kbScript("batch", i), []string{"b"}))
	}
	ops = append(ops, ops...)
	for round := 0; round < 3; round++ {
		for _, tx := range []bool{false, true} {
			want := runBatch(ctx, r.Plain, tx, false, ops)
			got := runBatch(ctx, r.Hooked, tx, false, ops)
			require.Equal(t, len(want), len(got))
			for i := range want {
				// The counter differs between the two runs (they share a
				// server): compare what kind of reply each got.
				assert.Equal(t, strings.Contains(want[i], "<nil>"), strings.Contains(got[i], "<nil>"), "round %d tx=%v #%d: %s", round, tx, i, got[i])
				assert.NotContains(t, got[i], "NOSCRIPT", "round %d tx=%v #%d", round, tx, i)
			}
		}
	}
}
