package integration_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every way of issuing EVAL/EVAL_RO goes out as EVALSHA/EVALSHA_RO once the
// server has the script, and the first call sends the body with no doomed
// EVALSHA before it. Counted on the server.
func TestEvalRewrittenEveryWay(t *testing.T) {
	t.Parallel()
	ro := "return redis.call('GET', KEYS[1]) -- read only, longer than a SHA1"
	cases := []struct {
		name      string
		body, cmd string // the server's names for the two commands
		call      func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd
	}{
		{"Eval", "eval", "evalsha", func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd {
			return rdb.Eval(ctx, incrScript, []string{"k1"}, i)
		}},
		{"EvalRO", "eval_ro", "evalsha_ro", func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd {
			return rdb.EvalRO(ctx, ro, []string{"k1"})
		}},
		{"Do upper case", "eval", "evalsha", func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd {
			return rdb.Do(ctx, "EVAL", incrScript, 1, "k2", i)
		}},
		{"Do mixed case RO", "eval_ro", "evalsha_ro", func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd {
			return rdb.Do(ctx, "Eval_Ro", ro, "1", "k2")
		}},
		{"Process", "eval", "evalsha", func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd {
			cmd := redis.NewCmd(ctx, "eval", incrScript, 1, "k3", i)
			_ = rdb.Process(ctx, cmd)
			return cmd
		}},
		{"[]byte body", "eval", "evalsha", func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd {
			return rdb.Do(ctx, "eval", []byte(incrScript), 1, "k4", i)
		}},
		{"Script.Eval", "eval", "evalsha", func(ctx context.Context, rdb *redis.Client, i int) *redis.Cmd {
			return redis.NewScript(incrScript).Eval(ctx, rdb, []string{"k5"}, i)
		}},
	}
	r, _ := rig(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			r.FlushScripts(t)
			h := quiet()
			rdb := testkit.Client(t, r.Srv, nil)
			rdb.AddHook(h)
			r.FlushDB(t)
			r.ResetStats(t)
			var got []string
			for i := 0; i < 3; i++ {
				got = append(got, testkit.Render(tc.call(ctx, rdb, i)))
			}
			assert.Equal(t, int64(1), r.Calls(t, tc.body), "the body went out once")
			assert.Equal(t, int64(2), r.Calls(t, tc.cmd), "then by SHA1")

			// The same calls without the hook give the same results.
			r.FlushDB(t)
			var want []string
			for i := 0; i < 3; i++ {
				want = append(want, testkit.Render(tc.call(ctx, r.Plain, i)))
			}
			assert.Equal(t, want, got)
			assert.Equal(t, int64(2), h.Stats().Rewritten)
		})
	}
}

// Replies and errors are exactly those of plain EVAL, cold, warm and after a
// flush, in RESP2 and RESP3.
func TestSameResultsAsPlainEval(t *testing.T) {
	t.Parallel()
	scripts := []struct {
		name string
		body string
		keys []string
		args []interface{}
	}{
		{"integer", "return 42", nil, nil},
		{"string", "return ARGV[1]", nil, []interface{}{"hello"}},
		{"binary", "return ARGV[1]", nil, []interface{}{"\x00\xff\r\n"}},
		{"table", "return {1, 'two', {3}}", nil, nil},
		{"nil", "return nil", nil, nil},
		{"false", "return false", nil, nil},
		{"true", "return true", nil, nil},
		{"float truncated", "return 3.99", nil, nil},
		{"status", "return redis.status_reply('FINE')", nil, nil},
		{"error reply", "return redis.error_reply('MYERR custom')", nil, nil},
		{"runtime error", "return nosuchglobal.x", nil, nil},
		{"compile error", "return +", nil, nil},
		{"wrongtype", "redis.call('HSET', KEYS[1], 'f', 'v') return redis.call('GET', KEYS[1])", []string{"h"}, nil},
		{"pcall", "local ok = redis.pcall('INCR', KEYS[1]) return ok", []string{"h2"}, nil},
		{"keys and args", "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}", []string{"a", "b"}, []interface{}{1, "x"}},
		{"empty body", "", nil, nil},
		{"large body", strings.Repeat("-- padding line\n", 2048) + "return #ARGV", nil, []interface{}{"a", "b"}},
	}
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			t.Parallel()
			r, h := rigWith(t, redistest.Start(t), &redis.Options{Protocol: proto})
			ctx := t.Context()
			for _, s := range scripts {
				t.Run(s.name, func(t *testing.T) {
					for phase, prep := range []func(){
						func() {}, // cold
						func() {}, // warm
						func() { r.FlushScripts(t) },
					} {
						prep()
						r.FlushDB(t)
						want := testkit.Render(r.Plain.Eval(ctx, s.body, s.keys, s.args...))
						r.FlushDB(t)
						got := testkit.Render(r.Hooked.Eval(ctx, s.body, s.keys, s.args...))
						assert.Equal(t, want, got, "phase %d", phase)
						assert.NotContains(t, got, "NOSCRIPT")
					}
				})
			}
			assert.Zero(t, h.Stats().NoScriptPassed)
		})
	}
}

// A SCRIPT FLUSH between calls is repaired: the EVALSHA that met NOSCRIPT
// (it ran nothing), the hook's SCRIPT LOAD, which makes the script
// permanent, and the EVALSHA again.
func TestScriptFlushBetweenCalls(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	require.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, "a").Err())
	require.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, "b").Err())
	r.FlushScripts(t)
	r.ResetStats(t)
	v, err := r.Hooked.Eval(ctx, incrScript, []string{"c"}, "c").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(3), "c"}, v)
	assert.Equal(t, int64(2), r.Calls(t, "evalsha"), "the one that met NOSCRIPT, and the repaired call")
	assert.Equal(t, int64(1), r.Calls(t, "script|load"), "one body")
	assert.Zero(t, r.Calls(t, "eval"))
	st := h.Stats()
	assert.Equal(t, int64(1), st.NoScriptRepaired)
	assert.Equal(t, int64(1), st.Loads)
	assert.Zero(t, st.NoScriptPassed)

	// And it is by SHA1 again afterwards.
	require.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, "d").Err())
	assert.Equal(t, int64(3), r.Calls(t, "evalsha"))
	assert.Equal(t, "4", r.Admin.Get(ctx, "c").Val(), "every call ran exactly once")
}

// After a restart the hook forgets what the server had: one body goes out
// and nothing reaches the caller.
func TestRestartBetweenCalls(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	for i := 0; i < 3; i++ {
		require.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, i).Err())
	}
	require.NoError(t, r.Srv.Restart())
	v, err := r.Hooked.Eval(ctx, incrScript, []string{"c"}, "after").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(1), "after"}, v, "the restarted server keeps nothing")
	// go-redis retries the EVALSHA that met the dead connection on a new
	// one (below the hook), where it gets NOSCRIPT; the hook repairs.
	assert.Equal(t, int64(1), bodies(t, r), "the body went out once")
	assert.Zero(t, h.Stats().NoScriptPassed)
	assert.Equal(t, "1", r.Admin.Get(ctx, "c").Val())
}

// 64 goroutines that meet NOSCRIPT together never wait for each other: at
// most one sends the hook's SCRIPT LOAD, the others send the body, as
// plain EVAL would; every call runs once, none sees NOSCRIPT, and the next
// round goes by SHA1 with no body at all.
func TestNoScriptStormNobodyWaits(t *testing.T) {
	t.Parallel()
	r, h := rigWith(t, redistest.Start(t), &redis.Options{PoolSize: 64})
	ctx := t.Context()
	const n = 64
	round := func(tag string) {
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Go(func() {
				<-start
				assert.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, tag).Err())
			})
		}
		close(start)
		wg.Wait()
	}
	round("warm")
	round("warm")
	r.FlushScripts(t)
	require.NoError(t, r.Admin.Del(ctx, "c").Err())
	r.ResetStats(t)
	round("storm")
	assert.LessOrEqual(t, r.Calls(t, "script|load"), int64(1))
	assert.LessOrEqual(t, bodies(t, r), int64(n), "never more bodies than plain EVAL")
	assert.Equal(t, fmt.Sprint(n), r.Admin.Get(ctx, "c").Val(), "each call ran exactly once")
	assert.Zero(t, h.Stats().NoScriptPassed)
	if r.Calls(t, "script|load") == 1 {
		r.ResetStats(t)
		round("after")
		assert.Zero(t, bodies(t, r), "pinned: the next round needs no body")
	}
}

// redis.Script.Run through the hook: the first NOSCRIPT (body unknown to the
// hook) reaches Run, which falls back to EVAL; from then on the hook knows
// the body and repairs NOSCRIPT itself.
func TestScriptRunThroughHook(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	script := redis.NewScript(incrScript)
	for i := 0; i < 2; i++ {
		require.NoError(t, script.Run(ctx, r.Hooked, []string{"c"}, i).Err())
	}
	r.FlushScripts(t)
	v, err := script.Run(ctx, r.Hooked, []string{"c"}, "x").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(3), "x"}, v)
	assert.Equal(t, int64(1), r.Calls(t, "eval"), "Run's own fallback")
	assert.Equal(t, int64(1), r.Calls(t, "script|load"), "the hook's repair")
	assert.Equal(t, int64(4), r.Calls(t, "evalsha"), "Run's first (unknown), its second, the repaired one twice")
	st := h.Stats()
	assert.Equal(t, int64(1), st.NoScriptPassed, "the first, for a body the hook did not know")
	assert.Equal(t, int64(1), st.NoScriptRepaired)
}

// EVALSHA for a registered script never meets NOSCRIPT: the hook loads it
// on the server before its first call there. For an unknown script the
// caller gets the server's NOSCRIPT, as without the hook.
func TestEvalShaRegisteredAndUnknown(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	sha := h.Register("counter", incrScript)
	assert.Equal(t, redis.NewScript(incrScript).Hash(), sha)
	v, err := r.Hooked.EvalSha(ctx, sha, []string{"c"}, "a").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(1), "a"}, v)
	v, err = r.Hooked.EvalSha(ctx, strings.ToUpper(sha), []string{"c"}, "b").Result()
	require.NoError(t, err, "Redis accepts an upper-case SHA1, so do we")
	assert.Equal(t, []interface{}{int64(2), "b"}, v)
	assert.Equal(t, int64(1), r.Calls(t, "script|load"), "warmed before the first call")
	assert.Equal(t, int64(2), r.Calls(t, "evalsha"), "no NOSCRIPT")

	unknown := redis.NewScript("return 'never loaded'").Hash()
	want := r.Plain.EvalSha(ctx, unknown, nil).Err()
	got := r.Hooked.EvalSha(ctx, unknown, nil).Err()
	require.Error(t, got)
	assert.Equal(t, want.Error(), got.Error())
	assert.True(t, redis.HasErrorPrefix(got, "NOSCRIPT"), "the server's NOSCRIPT (redis.ErrNoScript from go-redis v9.19 on matches it too)")
}

// Malformed script commands reach the server unchanged and get its own
// error; nothing panics.
func TestMalformedGetServerError(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	ctx := t.Context()
	for _, args := range [][]interface{}{
		{"eval"},
		{"eval", "return 1"},
		{"eval", "return 1", "x"},
		{"eval", "return 1", -1},
		{"eval", "return 1", "01", "k"},
		{"eval", "return 1", 5, "k"},
		{"eval", 123, 0},
		{"eval", nil, 0},
		{"evalsha", "nope", 0},
		{"evalsha", 42, 0},
		{"evalsha_ro", strings.Repeat("0", 40), 0},
		{"EVAL_RO", "redis.call('SET', 'k', 'v')", 0},
	} {
		snapshot := append([]interface{}(nil), args...)
		want := testkit.Render(r.Plain.Do(ctx, args...))
		cmd := r.Hooked.Do(ctx, args...)
		assert.Equal(t, want, testkit.Render(cmd), "%v", args)
		assert.Equal(t, snapshot, cmd.Args())
	}
}

// Concurrent calls sharing one args slice, with flushes in between: the
// hook never writes to it (the race detector would see it), and cmd.Args()
// after each call is what was passed.
func TestSharedArgsSlice(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	ctx := t.Context()
	args := []interface{}{"EVAL", incrScript, 1, "shared", "v"}
	snapshot := append([]interface{}(nil), args...)
	stopFlushing := testkit.Every(1, 2, 0, func() { _ = r.Admin.ScriptFlush(ctx).Err() })
	var wg sync.WaitGroup
	const workers, each = 16, 50
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				cmd := r.Hooked.Do(ctx, args...)
				if !assert.NoError(t, cmd.Err()) {
					return
				}
				assert.Equal(t, snapshot, cmd.Args())
			}
		}()
	}
	wg.Wait()
	stopFlushing()
	assert.Equal(t, snapshot, args)
	assert.Equal(t, fmt.Sprint(workers*each), r.Admin.Get(ctx, "shared").Val(), "each call ran exactly once")
}

// A flood of distinct scripts keeps the cache bounded, and every call is
// still correct.
func TestDistinctScriptFlood(t *testing.T) {
	t.Parallel()
	r, h := rig(t, scripthook.WithCacheSize(16))
	ctx := t.Context()
	for i := 0; i < 2000; i++ {
		body := "return " + fmt.Sprint(i) + " -- built by concatenation each time"
		v, err := r.Hooked.Eval(ctx, body, nil).Result()
		require.NoError(t, err)
		require.Equal(t, int64(i), v)
		require.LessOrEqual(t, h.Stats().Scripts, 16)
	}
	assert.Zero(t, r.Calls(t, "script|load"), "one-off scripts are never pinned")
	// Hot scripts survive the flood and are still sent by SHA1.
	require.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, 1).Err())
	r.ResetStats(t)
	require.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, 1).Err())
	assert.Equal(t, int64(1), r.Calls(t, "evalsha"))
}

// With rewriting off the hook sends what the caller wrote.
func TestRewriteOff(t *testing.T) {
	t.Parallel()
	r, h := rig(t, scripthook.WithRewrite(false))
	ctx := t.Context()
	for i := 0; i < 3; i++ {
		require.NoError(t, r.Hooked.Eval(ctx, incrScript, []string{"c"}, i).Err())
	}
	assert.Equal(t, int64(3), r.Calls(t, "eval"))
	assert.Zero(t, r.Calls(t, "evalsha"))
	assert.Equal(t, int64(3), h.Stats().BodiesSent)
}

// unsupportedClient is a UniversalClient scripthook does not know how to
// reach the nodes of.
type unsupportedClient struct{ redis.UniversalClient }

func TestInstrumentUnsupportedType(t *testing.T) {
	t.Parallel()
	err := scripthook.Instrument(unsupportedClient{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "scripthook:")
	assert.Contains(t, err.Error(), "unsupported client type integration_test.unsupportedClient")
	err = scripthook.Instrument(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "scripthook:")

	// A *redis.Client is fine, and gets the hook.
	r, _ := rig(t)
	c := testkit.Client(t, r.Srv, nil)
	h := quiet()
	require.NoError(t, h.Install(c))
	for i := 0; i < 2; i++ {
		require.NoError(t, c.Eval(t.Context(), incrScript, []string{"k"}, i).Err())
	}
	assert.Equal(t, int64(1), h.Stats().Rewritten)
}
