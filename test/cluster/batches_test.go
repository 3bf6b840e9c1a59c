package cluster_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Single commands and pipelines on a ClusterClient give exactly what plain
// EVAL gives, cold, warm and after SCRIPT FLUSH on every node; a pipeline
// carries no more bodies than plain EVAL would, and a script's body at most
// once per node where that saves bytes.
func testSameResultsAsPlain(t *testing.T, r *testkit.ClusterRig) {
	ps := r.Primaries(t)
	rdb, h, w := hooked(t, r, nil)
	h.Register("incrby", regScript)
	tagsFor := func(prefix string) []string {
		var tags []string
		for _, p := range ps {
			tags = append(tags, r.TagOn(t, prefix, p))
		}
		return append(tags, r.TagOn(t, prefix+"-x", ps[0]))
	}
	hookTags, plainTags := tagsFor("same-h"), tagsFor("same-p")
	clean := func() {
		for _, tags := range [][]string{hookTags, plainTags} {
			for _, tag := range tags {
				require.NoError(t, r.Plain.Del(t.Context(), "{"+tag+"}:a", "{"+tag+"}:b", "{"+tag+"}:r").Err())
			}
		}
	}
	run := func(ctx context.Context, c redis.UniversalClient, tags []string, sha bool, how string) []string {
		switch how {
		case "single":
			var out []string
			for _, s := range clusterShape {
				out = append(out, testkit.Render(s.op.do(ctx, c, tags[s.tag], sha)))
			}
			return out
		default:
			return runBatch(ctx, c, false, func(p redis.Pipeliner) {
				for _, s := range clusterShape {
					s.op.do(ctx, p, tags[s.tag], sha)
				}
			})
		}
	}
	for _, how := range []string{"single", "pipeline"} {
		for _, state := range []string{"cold", "warm", "flushed"} {
			t.Run(how+"/"+state, func(t *testing.T) {
				ctx := t.Context()
				clean()
				want := run(ctx, r.Plain, plainTags, false, how)
				r.FlushScripts(t)
				if state != "cold" {
					run(ctx, rdb, hookTags, true, how)
				}
				if state == "flushed" {
					r.FlushScripts(t)
				}
				clean()
				r.ResetStats(t)
				w.Reset()
				got := run(ctx, rdb, hookTags, true, how)
				assert.Equal(t, want, got)
				if how == "pipeline" {
					// Only the bodies the wire shows went out (and the
					// probes, if the hook had to ask), no more than plain
					// EVAL sends, each at most once per node where that
					// saves bytes.
					bodies := w.CheckBodies(t)
					_, loadProbes := w.Probes("")
					assert.Equal(t, int64(bodies+loadProbes), r.Calls(t, "eval")+r.Calls(t, "script|load"))
					assert.LessOrEqual(t, bodies, shapeBodies())
				}
			})
		}
	}
	assert.Zero(t, h.Stats().NoScriptPassed)
	clean()
}

// A cluster pipeline with a script used often enough on a node sends its
// body once per node per batch in strict mode, as the hook's SCRIPT LOAD,
// and every use by SHA1; the first batch of a new Hook, which asks what the
// user may run, goes as written. In optimistic mode warm batches carry no
// body, and after SCRIPT FLUSH each node's part is retried once, with the
// body once.
func testPipelineBodies(t *testing.T, r *testkit.ClusterRig) {
	ps := r.Primaries(t)
	var tags []string
	for _, p := range ps {
		tags = append(tags, r.TagsOn(t, "bodies", p, 5)...)
	}
	const perTag = 20
	const perNode = perTag * 5
	batch := func(t *testing.T, rdb *redis.ClusterClient, l *testkit.Ledger, b int) {
		var calls []*redis.Cmd
		_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
			for i := 0; i < perTag; i++ {
				for _, tag := range tags {
					calls = append(calls, ledgerCall(t.Context(), p, tag, fmt.Sprint(b, "-", i)))
				}
			}
			return nil
		})
		require.NoError(t, err)
		for i, c := range calls {
			l.RecordCmd(t, tags[i%len(tags)], fmt.Sprint(b, "-", i/len(tags)), c)
		}
	}
	// check checks every primary's counts since the last reset: bodies
	// (EVAL and SCRIPT LOAD) and runs (EVAL and EVALSHA), without the
	// probes the spy saw; bodies says how many a node that asked (probed)
	// or did not ask sent.
	check := func(t *testing.T, w *testkit.NodeSpy, bodies func(probed bool) int, runs int) {
		t.Helper()
		for _, p := range ps {
			shaProbes, loadProbes := w.Probes(p.Addr)
			gotBodies := r.Calls(t, "script|load", p) - int64(loadProbes) + r.Calls(t, "eval", p)
			gotRuns := r.Calls(t, "eval", p) + r.Calls(t, "evalsha", p) - int64(shaProbes)
			assert.Equal(t, int64(bodies(shaProbes+loadProbes > 0)), gotBodies, "%s: bodies", p.Addr)
			assert.Equal(t, int64(runs), gotRuns, "%s: every call once", p.Addr)
		}
	}
	t.Run("strict", func(t *testing.T) {
		rdb, h, w := hooked(t, r, nil)
		r.FlushScripts(t)
		r.ResetStats(t)
		l := testkit.NewLedger()
		// The first batch: a node that asked goes as written (a body per
		// call, what plain EVAL sends); a node that had the answer of
		// another already sends one body.
		batch(t, rdb, l, 0)
		check(t, w, func(probed bool) int {
			if probed {
				return perNode
			}
			return 1
		}, perNode)
		w.CheckBodies(t)
		r.ResetStats(t)
		w.Reset()
		for b := 1; b < 3; b++ {
			batch(t, rdb, l, b)
		}
		check(t, w, func(bool) int { return 2 }, 2*perNode)
		for _, p := range ps {
			assert.Zero(t, r.Calls(t, "eval", p), "%s: every use by SHA1", p.Addr)
		}
		shaProbes, loadProbes := w.Probes("")
		assert.Zero(t, shaProbes+loadProbes, "the Hook knows what the user may run")
		w.CheckBodies(t)
		assert.Zero(t, h.Stats().NoScriptPassed)
		l.Verify(t, r.Plain)
	})
	t.Run("optimistic", func(t *testing.T) {
		rdb, h, w := hooked(t, r, nil, scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
		r.FlushScripts(t)
		l := testkit.NewLedger()
		batch(t, rdb, l, 0)
		r.ResetStats(t)
		w.Reset()
		batch(t, rdb, l, 1)
		batch(t, rdb, l, 2)
		check(t, w, func(bool) int { return 0 }, 2*perNode)
		r.FlushScripts(t)
		r.ResetStats(t)
		w.Reset()
		repaired := h.Stats().NoScriptRepaired
		batch(t, rdb, l, 3)
		for _, p := range ps {
			assert.Equal(t, int64(1), r.Calls(t, "script|load", p)+r.Calls(t, "eval", p), "%s: one retry with the body once", p.Addr)
			assert.Equal(t, int64(2*perNode), r.Calls(t, "evalsha", p), "%s: every call met NOSCRIPT once, then ran", p.Addr)
		}
		assert.Equal(t, int64(len(tags)*perTag), h.Stats().NoScriptRepaired-repaired)
		assert.Zero(t, h.Stats().NoScriptPassed)
		l.Verify(t, r.Plain)
	})
}

// go-redis's cluster AutoPipeliner merges independent callers' commands into
// per-node batches: each caller gets its own reply, every call runs once and
// no NOSCRIPT reaches a caller, with SCRIPT FLUSH on every node meanwhile.
func testAutoPipeline(t *testing.T, r *testkit.ClusterRig) {
	rdb, h, _ := hooked(t, r, nil)
	ap := testkit.AutoPipeline(t, rdb)
	var tags []string
	for _, p := range r.Primaries(t) {
		tags = append(tags, r.TagsOn(t, "autopipe", p, 2)...)
	}
	r.FlushScripts(t)
	l := testkit.NewLedger()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := 0; i < 100; i++ {
				tag, id := tags[(w+i)%len(tags)], fmt.Sprint(w, "-", i)
				l.RecordCmd(t, tag, id, ap.Eval(t.Context(), testkit.LedgerScript, []string{testkit.LedgerKey(tag)}, id))
				if w == 0 && i%25 == 0 {
					for _, a := range r.Admin {
						assert.NoError(t, a.ScriptFlush(t.Context()).Err())
					}
				}
			}
		})
	}
	wg.Wait()
	l.Verify(t, r.Plain)
	assert.Zero(t, testkit.NoScriptSeen(l))
	assert.Zero(t, h.Stats().NoScriptPassed)
}

// A cluster transaction reaches its node hook as [MULTI, ..., EXEC], and
// go-redis reads its replies into the caller's commands: the node hook
// sends exactly that many commands. Scripts inside work after SCRIPT FLUSH
// on every node, with the results of plain EVAL; so do WATCH transactions.
func testTxPipeline(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	rdb, h, w := hooked(t, r, nil)
	h.Register("incrby", regScript)
	shape := []clusterOp{
		cEval(counterScript, 1),
		cReg(2),
		cSet("5"),
		cEval(counterScript, 1),
		cReg(3),
		cEval(echoScript, 0, "keyless"),
	}
	tx := func(c redis.UniversalClient, tag string, sha bool) []string {
		return runBatch(ctx, c, true, func(p redis.Pipeliner) {
			for _, op := range shape {
				op.do(ctx, p, tag, sha)
			}
		})
	}
	var want [][]string
	for i := 0; i < 2; i++ {
		want = append(want, tx(r.Plain, "tx-p", false))
	}

	// A Hook that has sent only transactions does not know whether the
	// user may run EVALSHA (transactions never ask): its transactions go
	// as written, but for the registered script, whose first use carries
	// its body (an EVAL) so that the EVALSHA after it finds the script.
	r.FlushScripts(t)
	w.Reset()
	got := [][]string{tx(rdb, "tx-fresh", true), tx(rdb, "tx-fresh", true)}
	assert.Equal(t, want, got, "fresh Hook")
	for _, names := range w.BatchNames() {
		assert.Equal(t, []string{"multi", "eval", "eval", "set", "eval", "evalsha", "eval", "exec"}, names, "as written")
	}
	assert.Len(t, w.BatchNames(), 2)

	// Once it knows, each transaction carries each script's body once: the
	// first EVAL as written, the first EVALSHA of the registered script as
	// EVAL (a SCRIPT LOAD would be one command too many), the rest by
	// SHA1; every transaction anew, whatever the node had before.
	learnCaps(t, rdb)
	for _, state := range []string{"flushed", "warm"} {
		r.FlushScripts(t)
		if state == "warm" {
			tx(rdb, "tx-warmup", true)
		}
		w.Reset()
		got := [][]string{tx(rdb, "tx-"+state, true), tx(rdb, "tx-"+state, true)}
		assert.Equal(t, want, got, state)
		for _, names := range w.BatchNames() {
			assert.Equal(t, []string{"multi", "eval", "eval", "set", "evalsha", "evalsha", "eval", "exec"}, names, state)
		}
		assert.Len(t, w.BatchNames(), 2)
		w.CheckBodies(t)
	}

	// WATCH transactions go through the node's hook too (go-redis runs them
	// on the node client).
	watch := func(c *redis.ClusterClient, tag string, sha bool) ([]string, error) {
		var out []string
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				for _, op := range shape {
					op.do(ctx, p, tag, sha)
				}
				return nil
			})
			for _, c := range cmds {
				out = append(out, testkit.Render(c))
			}
			return err
		}, "{"+tag+"}:a")
		return out, err
	}
	r.FlushScripts(t)
	wantW, wantErr := watch(r.Plain, "txw-p", false)
	gotW, gotErr := watch(rdb, "txw-h", true)
	assert.Equal(t, wantW, gotW)
	assert.Equal(t, wantErr, gotErr)
	assert.Zero(t, h.Stats().NoScriptPassed)
	for _, tag := range []string{"tx-p", "tx-fresh", "tx-flushed", "tx-warm", "tx-warmup", "txw-p", "txw-h"} {
		require.NoError(t, r.Plain.Del(ctx, "{"+tag+"}:a", "{"+tag+"}:r").Err())
	}
}
