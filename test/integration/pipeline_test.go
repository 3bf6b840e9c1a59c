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

// bigCounter is counterScript with enough padding that a batch using it
// twice is cheaper with the hook's SCRIPT LOAD and SHA1s than with bodies.
var bigCounter = counterScript + " -- " + strings.Repeat("p", 400)

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
	// The same with scripts big enough to travel as SCRIPT LOAD.
	"interleaved big": {
		plainOp("set", "k", "1"),
		evalOp(bigCounter, []string{"k"}),
		plainOp("get", "k"),
		evalOp(bigCounter, []string{"k"}),
		evalOp(echoScript, []string{"a", "b"}, "x"),
		plainOp("del", "other"),
		evalOp(bigCounter, []string{"k"}),
	},
	// A script that does not compile, used twice, among good ones.
	"compile error": {
		evalOp(brokenScript, nil),
		plainOp("set", "k", "1"),
		evalOp(brokenScript, nil),
		evalOp(counterScript, []string{"k"}),
		evalOp(brokenScript, nil),
	},
	// The same, big enough for SCRIPT LOAD: every use gets the compile error.
	"compile error big": {
		evalOp(brokenScript+strings.Repeat(" ", 400), nil),
		plainOp("set", "k", "1"),
		evalOp(brokenScript+strings.Repeat(" ", 400), nil),
		evalOp(bigCounter, []string{"k"}),
		evalOp(brokenScript+strings.Repeat(" ", 400), nil),
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
	t.Parallel()
	testPipelineAgainstPlain(t, scripthook.PipelineStrict)
}

// Optimistic mode: identical except where a NOSCRIPT cannot be retried
// without reordering; there the failed scripts, and only they, get NOSCRIPT.
func TestPipelineOptimisticSameAsPlain(t *testing.T) {
	t.Parallel()
	testPipelineAgainstPlain(t, scripthook.PipelineOptimistic)
}

func testPipelineAgainstPlain(t *testing.T, mode scripthook.PipelineMode) {
	srv := redistest.Start(t)
	for name, ops := range batchShapes {
		if name == "evalsha registered" && testkit.FIPSOnly() {
			// Under GODEBUG=fips140=only (TestFIPSOnly) the caller could
			// not have the SHA1 of a registered script before a server
			// told it (fips_test.go).
			continue
		}
		for _, tx := range []bool{false, true} {
			for _, state := range []string{"cold", "warm", "flushed", "restarted"} {
				t.Run(fmt.Sprintf("%s/tx=%v/%s", name, tx, state), func(t *testing.T) {
					r, h := rigWith(t, srv, &redis.Options{}, scripthook.WithPipelineMode(mode))
					h.Register("incrby", regScript)
					ctx := t.Context()
					// Counted: the bytes each client writes.
					var hw, pw testkit.Wire
					r.Plain = testkit.Client(t, srv, pw.Options(nil))
					r.Hooked = testkit.Client(t, srv, hw.Options(nil))
					r.Hooked.AddHook(h)
					learn(t, r.Hooked)
					// The reference first: plain EVAL loads the scripts, so the
					// cache states are set up after it.
					r.FlushDB(t)
					before := pw.Written()
					want := runBatch(ctx, r.Plain, tx, false, ops)
					plainBytes := pw.Written() - before
					r.FlushScripts(t)
					if state != "cold" {
						runBatch(ctx, r.Hooked, tx, true, ops)
					}
					switch state {
					case "flushed":
						r.FlushScripts(t)
					case "restarted":
						require.NoError(t, srv.Restart())
					}
					r.FlushDB(t)
					r.ResetStats(t)
					before = hw.Written()
					got := runBatch(ctx, r.Hooked, tx, true, ops)
					hookBytes := hw.Written() - before

					mayMiss := mode == scripthook.PipelineOptimistic && !tx &&
						(state == "flushed" || state == "restarted")
					if !mayMiss || equalStrings(want, got) {
						assert.Equal(t, want, got)
						assert.Zero(t, h.Stats().NoScriptPassed)
						// Under GODEBUG=fips140=only the batch that learns a hot
						// script's SHA1 carries one body more (the SCRIPT LOAD
						// whose reply tells it); TestFIPSCore bounds a run.
						if !mayMiss && !testkit.FIPSOnly() {
							// Never more bytes than plain EVAL (the registered
							// script's EVALSHA is the caller's, and a body that
							// makes sure it runs is extra); scripts big enough
							// to be worth it carry at most one body per batch.
							extra := int64(0)
							if strings.Contains(name, "registered") {
								extra = int64(len(regScript)) + 40
							}
							assert.LessOrEqual(t, hookBytes, plainBytes+extra)
							if strings.HasSuffix(name, " big") {
								assert.LessOrEqual(t, bodies(t, r), distinct(ops))
							}
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
					r.FlushDB(t)
					ref := runBatch(ctx, r.Plain, tx, false, skipped)
					for i := range ops {
						if !strings.Contains(got[i], "NOSCRIPT") {
							assert.Equal(t, ref[i], got[i], "command %d", i)
						}
					}
					assert.Positive(t, h.Stats().NoScriptPassed, "counted as reaching the caller")
					// The server's state was forgotten: the next batch is exact.
					r.FlushDB(t)
					assert.Equal(t, want, runBatch(ctx, r.Hooked, tx, true, ops))
				})
			}
		}
	}
}

// distinct counts the scripts a batch's ops use, an upper bound for its
// bodies: what a batch shape declares, whatever its order.
func distinct(ops []batchOp) int64 {
	p := &recorder{}
	for _, op := range ops {
		op(p, context.Background(), true)
	}
	seen := map[string]bool{}
	for _, c := range p.cmds {
		args := c.Args()
		if name := strings.ToLower(fmt.Sprint(args[0])); strings.HasPrefix(name, "eval") {
			seen[fmt.Sprint(args[1])] = true
		}
	}
	return int64(len(seen))
}

// recorder is a Pipeliner that only records what is queued.
type recorder struct {
	redis.Pipeliner
	cmds []redis.Cmder
}

func (r *recorder) Eval(ctx context.Context, script string, keys []string, args ...interface{}) *redis.Cmd {
	c := redis.NewCmd(ctx, append([]interface{}{"eval", script, len(keys)}, append(toArgs(keys), args...)...)...)
	r.cmds = append(r.cmds, c)
	return c
}

func (r *recorder) EvalSha(ctx context.Context, sha string, keys []string, args ...interface{}) *redis.Cmd {
	c := redis.NewCmd(ctx, append([]interface{}{"evalsha", sha, len(keys)}, append(toArgs(keys), args...)...)...)
	r.cmds = append(r.cmds, c)
	return c
}

func (r *recorder) Do(ctx context.Context, args ...interface{}) *redis.Cmd {
	c := redis.NewCmd(ctx, args...)
	r.cmds = append(r.cmds, c)
	return c
}

func toArgs(keys []string) []interface{} {
	out := make([]interface{}, len(keys))
	for i, k := range keys {
		out[i] = k
	}
	return out
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

// The first batch of a Hook that has not yet learned what the server lets
// it run goes exactly as written, followed by three probes that run
// nothing; the next one carries each script's body once, as SCRIPT LOAD.
func TestPipelineFirstBatchProbes(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	ctx := t.Context()
	batch := func() {
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 10; i++ {
				p.Eval(ctx, bigCounter, []string{"k"})
				p.EvalRO(ctx, "return redis.call('GET', KEYS[1]) -- "+strings.Repeat("r", 400), []string{"k"})
			}
			return nil
		})
		require.NoError(t, err)
	}
	batch()
	assert.Equal(t, int64(10), r.Calls(t, "eval"))
	assert.Equal(t, int64(10), r.Calls(t, "eval_ro"))
	assert.Equal(t, int64(1), r.Calls(t, "evalsha"), "probe")
	assert.Equal(t, int64(1), r.Calls(t, "evalsha_ro"), "probe")
	assert.Equal(t, int64(1), r.Calls(t, "script|load"), "probe")
	r.ResetStats(t)
	batch()
	assert.Zero(t, r.Calls(t, "eval")+r.Calls(t, "eval_ro"))
	assert.Equal(t, int64(2), r.Calls(t, "script|load"))
	assert.Equal(t, int64(10), r.Calls(t, "evalsha"))
	assert.Equal(t, int64(10), r.Calls(t, "evalsha_ro"))
	assert.Equal(t, "20", r.Admin.Get(ctx, "k").Val())
}

// In strict mode a script's body goes out once per batch, as SCRIPT LOAD;
// in optimistic mode warm batches carry none. Counted by the server.
func TestPipelineBodiesCountedOnServer(t *testing.T) {
	t.Parallel()
	body := pad(4 << 10)
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
		t.Parallel()
		r, _ := rig(t)
		learn(t, r.Hooked)
		r.ResetStats(t)
		for i := 0; i < 3; i++ {
			batch(t.Context(), r.Hooked)
		}
		assert.Equal(t, int64(3), r.Calls(t, "script|load"))
		assert.Zero(t, r.Calls(t, "eval"))
		assert.Equal(t, int64(3000), r.Calls(t, "evalsha"))
	})
	t.Run("optimistic", func(t *testing.T) {
		t.Parallel()
		r, h := rig(t, scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
		learn(t, r.Hooked)
		r.ResetStats(t)
		batch(t.Context(), r.Hooked)
		assert.Equal(t, int64(1), bodies(t, r))
		r.ResetStats(t)
		batch(t.Context(), r.Hooked)
		batch(t.Context(), r.Hooked)
		assert.Zero(t, bodies(t, r), "warm batches carry no body")
		assert.Equal(t, int64(2000), r.Calls(t, "evalsha"))
		// After a flush the batch (scripts only) is retried once, in order.
		r.FlushScripts(t)
		r.ResetStats(t)
		batch(t.Context(), r.Hooked)
		assert.Equal(t, int64(1), bodies(t, r))
		assert.Equal(t, int64(2000), r.Calls(t, "evalsha"), "1000 that met NOSCRIPT, 1000 retried")
		assert.Zero(t, h.Stats().NoScriptPassed)
	})
}

// A transaction needing scripts after a flush commits atomically with the
// results of plain EVAL; the body travels inside the MULTI.
func TestTxAfterFlush(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	ctx := t.Context()
	learn(t, r.Hooked)
	ops := []batchOp{evalOp(bigCounter, []string{"k"}), plainOp("set", "x", "1"), evalOp(bigCounter, []string{"k"})}
	r.FlushDB(t)
	want := runBatch(ctx, r.Plain, true, false, ops)
	runBatch(ctx, r.Hooked, true, true, ops) // warm
	r.FlushScripts(t)
	r.FlushDB(t)
	r.ResetStats(t)
	got := runBatch(ctx, r.Hooked, true, true, ops)
	assert.Equal(t, want, got)
	assert.Equal(t, []string{`"1" | <nil>`, `"OK" | <nil>`, `"2" | <nil>`, "exec: <nil>"}, got)
	assert.Equal(t, int64(1), r.Calls(t, "exec"))
	assert.Equal(t, int64(1), r.Calls(t, "script|load"), "one body, inside the transaction")
	assert.Equal(t, int64(2), r.Calls(t, "evalsha"))
	assert.Zero(t, r.Calls(t, "eval"))
}

// WATCH conflicts give TxFailedErr and run no script; a compile error and
// EXECABORT inside MULTI behave as without the hook.
func TestTxErrorsAsPlain(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	ctx := t.Context()
	watch := func(rdb *redis.Client) (string, error) {
		require.NoError(t, r.Admin.Set(ctx, "w", "0", 0).Err())
		err := rdb.Watch(ctx, func(tx *redis.Tx) error {
			if err := tx.Get(ctx, "w").Err(); err != nil {
				return err
			}
			require.NoError(t, r.Admin.Set(ctx, "w", "changed", 0).Err()) // the conflict
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Eval(ctx, counterScript, []string{"w2"})
				return nil
			})
			return err
		}, "w")
		return r.Admin.Get(ctx, "w2").Val(), err
	}
	w2, err := watch(r.Hooked)
	assert.ErrorIs(t, err, redis.TxFailedErr)
	assert.Empty(t, w2, "the script did not run")
	_, perr := watch(r.Plain)
	assert.Equal(t, perr, err)

	for name, ops := range map[string][]batchOp{
		"compile error":     {evalOp(brokenScript, nil), plainOp("set", "k", "v"), evalOp(brokenScript, nil)},
		"compile error big": {evalOp(brokenScript+strings.Repeat(" ", 400), nil), plainOp("set", "k", "v"), evalOp(brokenScript+strings.Repeat(" ", 400), nil)},
		"execabort":         {evalOp(bigCounter, []string{"k"}), plainOp("set", "k"), evalOp(bigCounter, []string{"k"})},
	} {
		t.Run(name, func(t *testing.T) {
			learn(t, r.Hooked)
			r.FlushDB(t)
			want := runBatch(ctx, r.Plain, true, false, ops)
			r.FlushDB(t)
			r.FlushScripts(t)
			got := runBatch(ctx, r.Hooked, true, true, ops)
			assert.Equal(t, want, got)
		})
	}
}

// WithMaxBatchSize splits a 100,000-command pipeline into sub-batches with
// the same replies as the unsplit pipeline without the hook.
func TestMaxBatchSizeSameReplies(t *testing.T) {
	t.Parallel()
	r, _ := rig(t, scripthook.WithMaxBatchSize(1000))
	ctx := t.Context()
	learn(t, r.Hooked)
	const n = 100_000
	build := func(p redis.Pipeliner) error {
		for i := 0; i < n; i++ {
			if i%2 == 0 {
				p.Eval(ctx, bigCounter, []string{"k"})
			} else {
				p.Set(ctx, fmt.Sprint("s", i%100), i, 0)
			}
		}
		return nil
	}
	render := func(cmds []redis.Cmder) []string {
		out := make([]string, len(cmds))
		for i, c := range cmds {
			out[i] = testkit.Render(c)
		}
		return out
	}
	want, err := r.Plain.Pipelined(ctx, build)
	require.NoError(t, err)
	r.FlushDB(t)
	r.ResetStats(t)
	got, err := r.Hooked.Pipelined(ctx, build)
	require.NoError(t, err)
	require.Equal(t, len(want), len(got))
	assert.Equal(t, render(want), render(got))
	assert.Equal(t, int64(n/1000), r.Calls(t, "script|load"), "one body per sub-batch")
	assert.Zero(t, r.Calls(t, "eval"))
}

// go-redis's AutoPipeliner hands the hook batches mixing independent
// callers: each caller still gets its own results, with flushes going on.
func TestAutoPipelinerMixedCallers(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	ap := testkit.AutoPipeline(t, r.Hooked)
	const workers, each = 16, 100
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := fmt.Sprint("ap", w)
			for i := 1; i <= each; i++ {
				v, err := ap.Eval(ctx, bigCounter, []string{key}).Result()
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, fmt.Sprint(i), v, "caller %d sees its own count", w)
				if w == 0 && i%25 == 0 {
					assert.NoError(t, r.Admin.ScriptFlush(ctx).Err())
				}
			}
		}(w)
	}
	wg.Wait()
	assert.Zero(t, h.Stats().NoScriptPassed)
	assert.Less(t, bodies(t, r), int64(workers*each), "bodies were saved")
}

// Your EVALSHA of a script the hook knows but the server lost (another
// client's SCRIPT FLUSH) is repaired in a batch only where order allows
// (README, "EVALSHA you send yourself"): a pipeline re-sends it when
// nothing that took effect follows it; otherwise, and in a transaction,
// it gets the NOSCRIPT plain EVALSHA gets, and nothing runs twice.
func TestCallerEvalShaInBatchesAfterFlush(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	for _, body := range []string{"return 7", "return 7 -- " + strings.Repeat("p", 400)} {
		for _, c := range []struct {
			name     string
			tx, more bool
			repaired bool
		}{
			{"pipeline alone", false, false, true},
			{"pipeline then INCR", false, true, false},
			{"tx alone", true, false, false},
			{"tx then INCR", true, true, false},
		} {
			t.Run(fmt.Sprintf("%s %d B", c.name, len(body)), func(t *testing.T) {
				r, _ := rig(t)
				require.NoError(t, r.Hooked.Eval(ctx, body, nil).Err(), "the hook learns the body")
				run := func(rdb *redis.Client) []string {
					r.FlushScripts(t) // another client's flush
					require.NoError(t, r.Admin.Del(ctx, "k").Err())
					fn := func(p redis.Pipeliner) error {
						p.EvalSha(ctx, testkit.SHA1(body), nil)
						if c.more {
							p.Incr(ctx, "k")
						}
						return nil
					}
					var cmds []redis.Cmder
					var err error
					if c.tx {
						cmds, err = rdb.TxPipelined(ctx, fn)
					} else {
						cmds, err = rdb.Pipelined(ctx, fn)
					}
					got := testkit.RenderAll(cmds, err)
					return append(got, "k="+r.Admin.Get(ctx, "k").Val())
				}
				want := run(r.Plain)
				if c.repaired {
					want = []string{"7 | <nil>", "exec: <nil>", "k="}
				}
				assert.Equal(t, want, run(r.Hooked))
			})
		}
	}
}

// A script that writes and then returns an error reply took effect: a
// pipeline miss before it is not retried after it (that would run the
// missed command after the write, out of order), for your EVALSHA of a
// known script and for FCALL of a registered function alike. The caller
// gets what plain EVALSHA / FCALL get, and every command ran at most once,
// in order. (Found by the differential fuzzer.)
func TestPipelineNoRetryAfterFailingWrite(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	const incrThenFail = "redis.call('INCR', KEYS[1]) return redis.error_reply('ERR wrote, then failed')"
	incr := "return redis.call('INCR', KEYS[1])"
	for _, c := range []struct {
		name  string
		call  func(p redis.Pipeliner)
		setup func(t *testing.T, r *testkit.Rig, h *scripthook.Hook)
		flush func(t *testing.T, r *testkit.Rig)
	}{
		{"EVALSHA", func(p redis.Pipeliner) { p.EvalSha(ctx, testkit.SHA1(incr), []string{"k"}) },
			func(t *testing.T, r *testkit.Rig, h *scripthook.Hook) {
				require.NoError(t, r.Hooked.Eval(ctx, incr, []string{"warm"}).Err(), "the hook learns the body")
			},
			func(t *testing.T, r *testkit.Rig) { r.FlushScripts(t) }},
		{"FCALL", func(p redis.Pipeliner) { p.FCall(ctx, "fincr", []string{"k"}, 1) },
			func(t *testing.T, r *testkit.Rig, h *scripthook.Hook) {
				_, err := h.RegisterLibrary(counterLib)
				require.NoError(t, err)
				require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"warm"}, 1).Err(), "loaded")
			},
			func(t *testing.T, r *testkit.Rig) { require.NoError(t, r.Admin.FunctionFlush(ctx).Err()) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r, h := rig(t)
			c.setup(t, r, h)
			run := func(rdb *redis.Client) []string {
				c.flush(t, r) // another client's
				require.NoError(t, r.Admin.Del(ctx, "k").Err())
				cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					c.call(p)
					p.Eval(ctx, incrThenFail, []string{"k"})
					return nil
				})
				return append(testkit.RenderAll(cmds, err), "k="+r.Admin.Get(ctx, "k").Val())
			}
			want := run(r.Plain)
			assert.Equal(t, "k=1", want[len(want)-1])
			assert.Equal(t, want, run(r.Hooked), "as plain: the miss stays, nothing ran out of order")
		})
	}
}
