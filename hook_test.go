package scripthook_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// incrScript increments a counter and returns it with the argument: enough
// to see that a call ran, once, with the right arguments.
const incrScript = "local n = redis.call('INCR', KEYS[1]) return {n, ARGV[1]}"

// Every way of issuing EVAL/EVAL_RO goes out as EVALSHA/EVALSHA_RO once the
// server has the script, and the first call sends the body with no doomed
// EVALSHA before it. Counted on the server.
func TestEvalRewrittenEveryWay(t *testing.T) {
	ro := "return redis.call('GET', KEYS[1])"
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
	r := newRig(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			r.flushScripts(t)
			r.h = scripthook.New(scripthook.WithTracing(false))
			rdb := redis.NewClient(&redis.Options{Addr: r.srv.Addr})
			defer rdb.Close()
			rdb.AddHook(r.h)
			require.NoError(t, r.admin.FlushDB(ctx).Err())
			r.resetStats(t)
			var got []string
			for i := 0; i < 3; i++ {
				got = append(got, outcome(tc.call(ctx, rdb, i)))
			}
			assert.Equal(t, int64(1), r.calls(t, tc.body), "the body went out once")
			assert.Equal(t, int64(2), r.calls(t, tc.cmd), "then by SHA1")

			// The same calls without the hook give the same results.
			require.NoError(t, r.admin.FlushDB(ctx).Err())
			var want []string
			for i := 0; i < 3; i++ {
				want = append(want, outcome(tc.call(ctx, r.plain, i)))
			}
			assert.Equal(t, want, got)
			assert.Equal(t, int64(2), r.h.Stats().Rewritten)
		})
	}
}

// Replies and errors are exactly those of plain EVAL, cold, warm and after a
// flush, in RESP2 and RESP3.
func TestSameResultsAsPlainEval(t *testing.T) {
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
			srv := redistest.Start(t)
			r := rigOn(t, srv, &redis.Options{Protocol: proto})
			ctx := t.Context()
			for _, s := range scripts {
				t.Run(s.name, func(t *testing.T) {
					for phase, prep := range []func(){
						func() {}, // cold
						func() {}, // warm
						func() { r.flushScripts(t) },
					} {
						prep()
						require.NoError(t, r.admin.FlushDB(ctx).Err())
						want := outcome(r.plain.Eval(ctx, s.body, s.keys, s.args...))
						require.NoError(t, r.admin.FlushDB(ctx).Err())
						got := outcome(r.rdb.Eval(ctx, s.body, s.keys, s.args...))
						assert.Equal(t, want, got, "phase %d", phase)
						assert.NotContains(t, got, "NOSCRIPT")
					}
				})
			}
			assert.Zero(t, r.h.Stats().NoScriptPassed)
		})
	}
}

// A SCRIPT FLUSH between calls is repaired with one extra round trip: the
// failed EVALSHA, then one EVAL.
func TestScriptFlushBetweenCalls(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	require.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, "a").Err())
	require.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, "b").Err())
	r.flushScripts(t)
	r.resetStats(t)
	v, err := r.rdb.Eval(ctx, incrScript, []string{"c"}, "c").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(3), "c"}, v)
	assert.Equal(t, int64(1), r.calls(t, "evalsha"), "the EVALSHA that met NOSCRIPT")
	assert.Equal(t, int64(1), r.calls(t, "eval"), "one reload, which also ran the call")
	st := r.h.Stats()
	assert.Equal(t, int64(1), st.NoScriptRepaired)
	assert.Zero(t, st.NoScriptPassed)

	// And it is by SHA1 again afterwards.
	require.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, "d").Err())
	assert.Equal(t, int64(2), r.calls(t, "evalsha"))
	assert.Equal(t, "4", r.admin.Get(ctx, "c").Val(), "every call ran exactly once")
}

// After a restart the hook forgets what the server had: the call after it
// sends the body, and nothing reaches the caller.
func TestRestartBetweenCalls(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	for i := 0; i < 3; i++ {
		require.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, i).Err())
	}
	require.NoError(t, r.srv.Restart())
	v, err := r.rdb.Eval(ctx, incrScript, []string{"c"}, "after").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(1), "after"}, v, "the restarted server keeps nothing")
	assert.Equal(t, int64(1), r.calls(t, "eval"), "the body went out once")
	assert.LessOrEqual(t, r.calls(t, "evalsha"), int64(1))
	assert.Zero(t, r.h.Stats().NoScriptPassed)
	assert.Equal(t, "1", r.admin.Get(ctx, "c").Val())
}

// 64 goroutines that meet NOSCRIPT together send the body once between them,
// counted by the server.
func TestNoScriptStormBodyOnce(t *testing.T) {
	srv := redistest.Start(t)
	r := rigOn(t, srv, &redis.Options{PoolSize: 64})
	ctx := t.Context()
	const n = 64
	// Warm every connection of the pool, so the storm does not dial.
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, "warm").Err())
		}()
	}
	wg.Wait()
	r.flushScripts(t)
	require.NoError(t, r.admin.Del(ctx, "c").Err())
	r.resetStats(t)

	start := make(chan struct{})
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			errs <- r.rdb.Eval(ctx, incrScript, []string{"c"}, i).Err()
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), r.calls(t, "eval"), "one body for all 64")
	assert.Zero(t, r.calls(t, "script|load"))
	assert.Equal(t, fmt.Sprint(n), r.admin.Get(ctx, "c").Val(), "each call ran exactly once")
	assert.Zero(t, r.h.Stats().NoScriptPassed)
}

// redis.Script.Run through the hook: the first NOSCRIPT (body unknown to the
// hook) reaches Run, which falls back to EVAL; from then on the hook knows
// the body and repairs NOSCRIPT itself.
func TestScriptRunThroughHook(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	script := redis.NewScript(incrScript)
	for i := 0; i < 2; i++ {
		require.NoError(t, script.Run(ctx, r.rdb, []string{"c"}, i).Err())
	}
	r.flushScripts(t)
	v, err := script.Run(ctx, r.rdb, []string{"c"}, "x").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(3), "x"}, v)
	assert.Equal(t, int64(2), r.calls(t, "eval"), "Run's own fallback, then the hook's repair")
	assert.Equal(t, int64(3), r.calls(t, "evalsha"))
	st := r.h.Stats()
	assert.Equal(t, int64(1), st.NoScriptPassed, "the first, for a body the hook did not know")
	assert.Equal(t, int64(1), st.NoScriptRepaired)
}

// EVALSHA for a registered script is repaired; for an unknown one the
// caller gets the server's NOSCRIPT, as without the hook.
func TestEvalShaRegisteredAndUnknown(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	sha := r.h.Register("counter", incrScript)
	assert.Equal(t, redis.NewScript(incrScript).Hash(), sha)
	v, err := r.rdb.EvalSha(ctx, sha, []string{"c"}, "a").Result()
	require.NoError(t, err)
	assert.Equal(t, []interface{}{int64(1), "a"}, v)
	v, err = r.rdb.EvalSha(ctx, strings.ToUpper(sha), []string{"c"}, "b").Result()
	require.NoError(t, err, "Redis accepts an upper-case SHA1, so do we")
	assert.Equal(t, []interface{}{int64(2), "b"}, v)

	unknown := redis.NewScript("return 'never loaded'").Hash()
	want := r.plain.EvalSha(ctx, unknown, nil).Err()
	got := r.rdb.EvalSha(ctx, unknown, nil).Err()
	require.Error(t, got)
	assert.Equal(t, want.Error(), got.Error())
	assert.True(t, errors.Is(got, redis.ErrNoScript) || redis.HasErrorPrefix(got, "NOSCRIPT"))
}

// Malformed script commands reach the server unchanged and get its own
// error; nothing panics.
func TestMalformedGetServerError(t *testing.T) {
	r := newRig(t)
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
		want := outcome(r.plain.Do(ctx, args...))
		cmd := r.rdb.Do(ctx, args...)
		assert.Equal(t, want, outcome(cmd), "%v", args)
		assert.Equal(t, snapshot, cmd.Args())
	}
}

// Concurrent calls sharing one args slice, with flushes in between: the
// hook never writes to it (the race detector would see it), and cmd.Args()
// after each call is what was passed.
func TestSharedArgsSlice(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	args := []interface{}{"EVAL", incrScript, 1, "shared", "v"}
	snapshot := append([]interface{}(nil), args...)
	stop := make(chan struct{})
	var flusher sync.WaitGroup
	flusher.Add(1)
	go func() {
		defer flusher.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				_ = r.admin.ScriptFlush(ctx).Err()
			}
		}
	}()
	var wg sync.WaitGroup
	const workers, each = 16, 50
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				cmd := r.rdb.Do(ctx, args...)
				if !assert.NoError(t, cmd.Err()) {
					return
				}
				assert.Equal(t, snapshot, cmd.Args())
			}
		}()
	}
	wg.Wait()
	close(stop)
	flusher.Wait()
	assert.Equal(t, snapshot, args)
	assert.Equal(t, fmt.Sprint(workers*each), r.admin.Get(ctx, "shared").Val(), "each call ran exactly once")
}

// A flood of distinct scripts keeps the cache bounded, and every call is
// still correct.
func TestDistinctScriptFlood(t *testing.T) {
	r := newRig(t, scripthook.WithCacheSize(16))
	ctx := t.Context()
	for i := 0; i < 2000; i++ {
		body := "return " + fmt.Sprint(i) // built by concatenation each time
		v, err := r.rdb.Eval(ctx, body, nil).Result()
		require.NoError(t, err)
		require.Equal(t, int64(i), v)
		require.LessOrEqual(t, r.h.Stats().Scripts, 16)
	}
	// Hot scripts survive the flood and are still sent by SHA1.
	require.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, 1).Err())
	r.resetStats(t)
	require.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, 1).Err())
	assert.Equal(t, int64(1), r.calls(t, "evalsha"))
}

// With rewriting off the hook sends what the caller wrote.
func TestRewriteOff(t *testing.T) {
	r := newRig(t, scripthook.WithRewrite(false))
	ctx := t.Context()
	for i := 0; i < 3; i++ {
		require.NoError(t, r.rdb.Eval(ctx, incrScript, []string{"c"}, i).Err())
	}
	assert.Equal(t, int64(3), r.calls(t, "eval"))
	assert.Zero(t, r.calls(t, "evalsha"))
	assert.Equal(t, int64(3), r.h.Stats().BodiesSent)
}

// unsupportedClient is a UniversalClient scripthook does not know how to
// reach the nodes of.
type unsupportedClient struct{ redis.UniversalClient }

func TestInstrumentUnsupportedType(t *testing.T) {
	err := scripthook.Instrument(unsupportedClient{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "scripthook:")
	assert.Contains(t, err.Error(), "unsupported client type scripthook_test.unsupportedClient")
	err = scripthook.Instrument(nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "scripthook:")

	// A *redis.Client is fine, and gets the hook.
	r := newRig(t)
	c := redis.NewClient(&redis.Options{Addr: r.srv.Addr})
	defer c.Close()
	h := scripthook.New(scripthook.WithTracing(false))
	require.NoError(t, h.Install(c))
	for i := 0; i < 2; i++ {
		require.NoError(t, c.Eval(t.Context(), incrScript, []string{"k"}, i).Err())
	}
	assert.Equal(t, int64(1), h.Stats().Rewritten)
}
