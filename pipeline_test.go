package scripthook_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	// counterScript reads what the commands before it wrote: order matters.
	counterScript = "redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[1])"
	echoScript    = "return {ARGV[1], #KEYS}"
	brokenScript  = "return +"
	regScript     = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
)

// batchOp queues one command; sha says whether to send the registered
// script by SHA1 (the reference client always sends its body).
type batchOp func(p redis.Pipeliner, ctx context.Context, sha bool)

func evalOp(body string, keys []string, args ...interface{}) batchOp {
	return func(p redis.Pipeliner, ctx context.Context, _ bool) { p.Eval(ctx, body, keys, args...) }
}

func regOp(keys []string, args ...interface{}) batchOp {
	return func(p redis.Pipeliner, ctx context.Context, sha bool) {
		if sha {
			p.EvalSha(ctx, redis.NewScript(regScript).Hash(), keys, args...)
		} else {
			p.Eval(ctx, regScript, keys, args...)
		}
	}
}

func plainOp(args ...interface{}) batchOp {
	return func(p redis.Pipeliner, ctx context.Context, _ bool) { p.Do(ctx, args...) }
}

// runBatch sends ops as one pipeline or transaction and renders every reply
// and the Exec error.
func runBatch(ctx context.Context, rdb *redis.Client, tx, sha bool, ops []batchOp) []string {
	var cmds []redis.Cmder
	var err error
	fn := func(p redis.Pipeliner) error {
		for _, op := range ops {
			op(p, ctx, sha)
		}
		return nil
	}
	if tx {
		cmds, err = rdb.TxPipelined(ctx, fn)
	} else {
		cmds, err = rdb.Pipelined(ctx, fn)
	}
	out := make([]string, 0, len(cmds)+1)
	for _, c := range cmds {
		out = append(out, outcome(c))
	}
	return append(out, fmt.Sprintf("exec: %v", err))
}

var batchShapes = map[string][]batchOp{
	// Scripts between plain commands: each reads what came before it.
	"interleaved": {
		plainOp("set", "k", "1"),
		evalOp(counterScript, []string{"k"}),
		plainOp("get", "k"),
		evalOp(counterScript, []string{"k"}),
		evalOp(echoScript, []string{"a", "b"}, "x"),
		plainOp("del", "other"),
		evalOp(counterScript, []string{"k"}),
	},
	// Scripts only after every plain command.
	"scripts last": {
		plainOp("set", "k", "5"),
		plainOp("get", "k"),
		evalOp(counterScript, []string{"k"}),
		evalOp(counterScript, []string{"k"}),
		evalOp(echoScript, nil, "y"),
	},
	// A script that does not compile, used twice, among good ones.
	"compile error": {
		evalOp(brokenScript, nil),
		plainOp("set", "k", "1"),
		evalOp(brokenScript, nil),
		evalOp(counterScript, []string{"k"}),
		evalOp(brokenScript, nil),
	},
	// EVALSHA of a registered script, with runtime errors and nil around.
	"evalsha registered": {
		regOp([]string{"r"}, 2),
		plainOp("set", "s", "str"),
		evalOp("return redis.call('INCR', KEYS[1])", []string{"s"}),
		regOp([]string{"r"}, 3),
		evalOp("return nil", nil),
	},
}

// Strict mode: every batch gives exactly what plain EVAL gives, command by
// command, whatever happened to the script cache before.
func TestPipelineStrictSameAsPlain(t *testing.T) {
	testPipelineAgainstPlain(t, scripthook.PipelineStrict)
}

// Optimistic mode: identical except where a NOSCRIPT cannot be retried
// without reordering; there the failed scripts, and only they, get NOSCRIPT.
func TestPipelineOptimisticSameAsPlain(t *testing.T) {
	testPipelineAgainstPlain(t, scripthook.PipelineOptimistic)
}

func testPipelineAgainstPlain(t *testing.T, mode scripthook.PipelineMode) {
	srv := redistest.Start(t)
	for name, ops := range batchShapes {
		for _, tx := range []bool{false, true} {
			for _, state := range []string{"cold", "warm", "flushed", "restarted"} {
				t.Run(fmt.Sprintf("%s/tx=%v/%s", name, tx, state), func(t *testing.T) {
					r := rigOn(t, srv, &redis.Options{}, scripthook.WithPipelineMode(mode))
					r.h.Register("incrby", regScript)
					ctx := t.Context()
					// The reference first: plain EVAL loads the scripts, so the
					// cache states are set up after it.
					require.NoError(t, r.admin.FlushDB(ctx).Err())
					want := runBatch(ctx, r.plain, tx, false, ops)
					r.flushScripts(t)
					if state != "cold" {
						runBatch(ctx, r.rdb, tx, true, ops)
					}
					switch state {
					case "flushed":
						r.flushScripts(t)
					case "restarted":
						require.NoError(t, srv.Restart())
					}
					require.NoError(t, r.admin.FlushDB(ctx).Err())
					r.resetStats(t)
					got := runBatch(ctx, r.rdb, tx, true, ops)

					mayMiss := mode == scripthook.PipelineOptimistic && !tx &&
						(state == "flushed" || state == "restarted")
					if !mayMiss || equalStrings(want, got) {
						assert.Equal(t, want, got)
						assert.Zero(t, r.h.Stats().NoScriptPassed)
						if !mayMiss {
							// Bodies as promised: at most one per script per batch.
							assert.LessOrEqual(t, r.calls(t, "eval")+r.calls(t, "script|load"), int64(3))
						}
						return
					}
					// Documented: script commands that met NOSCRIPT and could not
					// be retried without reordering keep the error. Everything
					// else is exactly plain EVAL with those scripts left out:
					// nothing ran out of order.
					skipped := make([]batchOp, len(ops))
					copy(skipped, ops)
					for i := range ops {
						if strings.Contains(got[i], "NOSCRIPT") {
							skipped[i] = plainOp("echo", "skipped")
						}
					}
					require.NoError(t, r.admin.FlushDB(ctx).Err())
					ref := runBatch(ctx, r.plain, tx, false, skipped)
					for i := range ops {
						if !strings.Contains(got[i], "NOSCRIPT") {
							assert.Equal(t, ref[i], got[i], "command %d", i)
						}
					}
					assert.Positive(t, r.h.Stats().NoScriptPassed, "counted as reaching the caller")
					// The node's state was forgotten: the next batch is exact.
					require.NoError(t, r.admin.FlushDB(ctx).Err())
					assert.Equal(t, want, runBatch(ctx, r.rdb, tx, true, ops))
				})
			}
		}
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// In strict mode a script's body goes out once per batch; in optimistic mode
// warm batches carry none. Counted by the server.
func TestPipelineBodiesCountedOnServer(t *testing.T) {
	body := benchScript(4 << 10)
	batch := func(ctx context.Context, rdb *redis.Client) {
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 1000; i++ {
				p.Eval(ctx, body, []string{"k"}, i)
			}
			return nil
		})
		require.NoError(t, err)
	}
	t.Run("strict", func(t *testing.T) {
		r := newRig(t)
		for i := 0; i < 3; i++ {
			batch(t.Context(), r.rdb)
		}
		assert.Equal(t, int64(3), r.calls(t, "eval"))
		assert.Equal(t, int64(2997), r.calls(t, "evalsha"))
		assert.Equal(t, "3000", r.admin.Get(t.Context(), "k").Val())
	})
	t.Run("optimistic", func(t *testing.T) {
		r := newRig(t, scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
		batch(t.Context(), r.rdb)
		assert.Equal(t, int64(1), r.calls(t, "eval"))
		r.resetStats(t)
		batch(t.Context(), r.rdb)
		batch(t.Context(), r.rdb)
		assert.Zero(t, r.calls(t, "eval"), "warm batches carry no body")
		assert.Equal(t, int64(2000), r.calls(t, "evalsha"))
		// After a flush the batch (scripts only) is retried once, in order.
		r.flushScripts(t)
		r.resetStats(t)
		batch(t.Context(), r.rdb)
		assert.Equal(t, int64(1), r.calls(t, "eval"))
		assert.Equal(t, "4000", r.admin.Get(t.Context(), "k").Val(), "every call ran exactly once")
		assert.Zero(t, r.h.Stats().NoScriptPassed)
	})
}

// A transaction needing scripts after a flush commits atomically with the
// results of plain EVAL; the bodies travel inside the MULTI.
func TestTxAfterFlush(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	ops := []batchOp{evalOp(counterScript, []string{"k"}), plainOp("set", "x", "1"), evalOp(counterScript, []string{"k"})}
	require.NoError(t, r.admin.FlushDB(ctx).Err())
	want := runBatch(ctx, r.plain, true, false, ops)
	runBatch(ctx, r.rdb, true, true, ops) // warm
	r.flushScripts(t)
	require.NoError(t, r.admin.FlushDB(ctx).Err())
	r.resetStats(t)
	got := runBatch(ctx, r.rdb, true, true, ops)
	assert.Equal(t, want, got)
	assert.Equal(t, []string{`"1" | <nil>`, `"OK" | <nil>`, `"2" | <nil>`, "exec: <nil>"}, got)
	assert.Equal(t, int64(1), r.calls(t, "exec"))
	assert.Equal(t, int64(1), r.calls(t, "eval"), "one body, inside the transaction")
	assert.Equal(t, int64(1), r.calls(t, "evalsha"))
	assert.Zero(t, r.calls(t, "script|load"))
}

// WATCH conflicts give TxFailedErr and run no script; a compile error and
// EXECABORT inside MULTI behave as without the hook.
func TestTxErrorsAsPlain(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	watch := func(rdb *redis.Client) (error, string) {
		require.NoError(t, r.admin.Set(ctx, "w", "0", 0).Err())
		err := rdb.Watch(ctx, func(tx *redis.Tx) error {
			if err := tx.Get(ctx, "w").Err(); err != nil {
				return err
			}
			require.NoError(t, r.admin.Set(ctx, "w", "changed", 0).Err()) // the conflict
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Eval(ctx, counterScript, []string{"w2"})
				return nil
			})
			return err
		}, "w")
		return err, r.admin.Get(ctx, "w2").Val()
	}
	err, w2 := watch(r.rdb)
	assert.ErrorIs(t, err, redis.TxFailedErr)
	assert.Empty(t, w2, "the script did not run")
	perr, _ := watch(r.plain)
	assert.Equal(t, perr, err)

	for name, ops := range map[string][]batchOp{
		"compile error": {evalOp(brokenScript, nil), plainOp("set", "k", "v"), evalOp(brokenScript, nil)},
		"execabort":     {evalOp(counterScript, []string{"k"}), plainOp("set", "k"), evalOp(counterScript, []string{"k"})},
	} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, r.admin.FlushDB(ctx).Err())
			want := runBatch(ctx, r.plain, true, false, ops)
			require.NoError(t, r.admin.FlushDB(ctx).Err())
			r.flushScripts(t)
			got := runBatch(ctx, r.rdb, true, true, ops)
			assert.Equal(t, want, got)
		})
	}
}

// WithMaxBatchSize splits a 100,000-command pipeline into sub-batches with
// the same replies as the unsplit pipeline without the hook.
func TestMaxBatchSizeSameReplies(t *testing.T) {
	r := newRig(t, scripthook.WithMaxBatchSize(1000))
	ctx := t.Context()
	const n = 100_000
	build := func(p redis.Pipeliner) error {
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				p.Eval(ctx, counterScript, []string{"k"})
			} else {
				p.Set(ctx, fmt.Sprint("s", i%100), i, 0)
			}
		}
		return nil
	}
	render := func(cmds []redis.Cmder) []string {
		out := make([]string, len(cmds))
		for i, c := range cmds {
			out[i] = outcome(c)
		}
		return out
	}
	want, err := r.plain.Pipelined(ctx, build)
	require.NoError(t, err)
	require.NoError(t, r.admin.FlushDB(ctx).Err())
	r.resetStats(t)
	got, err := r.rdb.Pipelined(ctx, build)
	require.NoError(t, err)
	require.Equal(t, len(want), len(got))
	assert.Equal(t, render(want), render(got))
	assert.Equal(t, int64(n/1000), r.calls(t, "eval"), "one body per sub-batch")
}

// go-redis's AutoPipeliner hands the hook batches mixing independent
// callers: each caller still gets its own results, with flushes going on.
func TestAutoPipelinerMixedCallers(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	ap, err := r.rdb.AutoPipeline()
	require.NoError(t, err)
	defer ap.Close()
	const workers, each = 16, 100
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := fmt.Sprint("ap", w)
			for i := 1; i <= each; i++ {
				v, err := ap.Eval(ctx, counterScript, []string{key}).Result()
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, fmt.Sprint(i), v, "caller %d sees its own count", w)
				if w == 0 && i%25 == 0 {
					assert.NoError(t, r.admin.ScriptFlush(ctx).Err())
				}
			}
		}(w)
	}
	wg.Wait()
	assert.Zero(t, r.h.Stats().NoScriptPassed)
	assert.Less(t, r.calls(t, "eval"), int64(workers*each), "bodies were saved")
}
