package cluster_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Every node has a node hook of its own, whether the client created it
// before Install (found through the cluster's node list) or after
// (OnNewNode), replicas included; each knows only what its own server has
// loaded. Counted on every server.
func testNodeHooks(t *testing.T, r *testkit.ClusterRig) {
	ps, reps := r.Primaries(t), r.Replicas(t)
	for _, when := range []string{"nodes created after Install", "nodes created before Install"} {
		t.Run(when, func(t *testing.T) {
			ctx := t.Context()
			cc := r.Client(t, nil)
			if when == "nodes created before Install" {
				require.NoError(t, cc.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error {
					return n.Ping(ctx).Err()
				}))
			}
			h := scripthook.New(scripthook.WithTracing(false))
			require.NoError(t, h.Install(cc))
			r.FlushScripts(t)
			r.ResetStats(t)
			l := testkit.NewLedger()
			tags := make([]string, len(ps))
			for i, p := range ps {
				tags[i] = r.TagOn(t, "hooks", p)
				for j := 0; j < 3; j++ {
					id := fmt.Sprint(j)
					l.RecordCmd(t, tags[i], id, ledgerCall(ctx, cc, tags[i], id))
				}
				assert.Equal(t, int64(1), r.Calls(t, "eval", p), "%s: the body once", p.Addr)
				assert.Equal(t, int64(2), r.Calls(t, "evalsha", p), "%s: then by SHA1", p.Addr)
			}
			// Replicas have their own node hooks too (a keyless read-only
			// script runs on a replica without READONLY).
			require.NoError(t, cc.ForEachSlave(ctx, func(ctx context.Context, n *redis.Client) error {
				for j := 0; j < 2; j++ {
					if err := n.EvalRO(ctx, replicaScript, nil).Err(); err != nil {
						return err
					}
				}
				return nil
			}))
			for _, s := range reps {
				assert.Equal(t, int64(1), r.Calls(t, "eval_ro", s), "%s", s.Addr)
				assert.Equal(t, int64(1), r.Calls(t, "evalsha_ro", s), "%s", s.Addr)
			}
			st := h.Stats()
			assert.Zero(t, st.NoScriptRepaired, "no node believed another node's script was its own")
			assert.Equal(t, int64(len(ps)*2+len(reps)), st.Rewritten)

			// A flush on one primary costs that primary one repair (the
			// hook's SCRIPT LOAD, then EVALSHA again); the others go on by
			// SHA1.
			require.NoError(t, r.Admin[ps[0].Addr].ScriptFlush(ctx).Err())
			r.ResetStats(t)
			for i := range ps {
				l.RecordCmd(t, tags[i], "after flush", ledgerCall(ctx, cc, tags[i], "after flush"))
			}
			assert.Zero(t, r.Calls(t, "eval"), "no EVAL anywhere")
			assert.Equal(t, int64(1), r.Calls(t, "script|load", ps[0]), "the flushed primary got the body again, once")
			assert.Equal(t, int64(2), r.Calls(t, "evalsha", ps[0]), "the NOSCRIPT and the repaired call")
			assert.Zero(t, r.Calls(t, "script|load", ps[1:]...))
			assert.Equal(t, int64(2), r.Calls(t, "evalsha", ps[1:]...))
			assert.Equal(t, int64(1), h.Stats().NoScriptRepaired)
			assert.Zero(t, h.Stats().NoScriptPassed)
			l.Verify(t, r.Plain)
		})
	}
}

// Instrument on a ClusterClient whose cluster cannot be reached returns an
// error saying so; the nodes the client creates later get their hooks, and
// installing again once the cluster is reachable adds no second hook.
func testInstrumentUnreachable(t *testing.T, r *testkit.ClusterRig) {
	ps := r.Primaries(t)
	// A port nothing listens on: dials are refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	var reachable atomic.Bool
	cc := r.Client(t, func(o *redis.ClusterOptions) {
		// One seed: go-redis tries each seed twice, each dial five times
		// 100 ms apart, before it gives up.
		o.Addrs = []string{ps[1].Addr}
		o.Dialer = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if !reachable.Load() {
				addr = dead
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}
	})
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	h := scripthook.New(scripthook.WithTracerProvider(tp))

	start := time.Now()
	err = h.Install(cc)
	require.Error(t, err)
	t.Logf("Install took %v: %v", time.Since(start), err)
	assert.True(t, strings.HasPrefix(err.Error(), "scripthook: "), err.Error())
	assert.Contains(t, err.Error(), "cluster")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the cause is wrapped")

	reachable.Store(true)
	r.FlushScripts(t)
	r.ResetStats(t)
	tag := r.TagOn(t, "unreachable", ps[0])
	for i := 0; i < 3; i++ {
		require.NoError(t, cc.Eval(t.Context(), incrScript, []string{"{" + tag + "}:k"}, i).Err())
	}
	assert.Equal(t, int64(1), r.Calls(t, "eval", ps[0]), "the node has its hook: the body once")
	assert.Equal(t, int64(2), r.Calls(t, "evalsha", ps[0]))

	require.NoError(t, h.Install(cc), "reachable now")
	spans.Reset()
	r.ResetStats(t)
	require.NoError(t, cc.Eval(t.Context(), incrScript, []string{"{" + tag + "}:k"}, 3).Err())
	assert.Len(t, spans.Ended(), 1, "one top hook, not two")
	assert.Equal(t, int64(1), r.Calls(t, "evalsha", ps[0]))
	assert.Zero(t, r.Calls(t, "eval", ps[0]))
	require.NoError(t, r.Plain.Del(t.Context(), "{"+tag+"}:k").Err())
}

// One logical cluster pipeline touching three primaries is one batch span,
// with the three node sub-batches beneath it and each script command
// beneath its node's sub-batch (what go-redis's own tracing loses for
// nodes that exist before it is installed, go-redis #3168, #3433). A single
// command is one span, with the node that ran it.
func testSpans(t *testing.T, r *testkit.ClusterRig) {
	ps := r.Primaries(t)
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cc := r.Client(t, nil)
	h := scripthook.New(scripthook.WithTracerProvider(tp))
	require.NoError(t, h.Install(cc))
	r.FlushScripts(t)
	learnCaps(t, cc)
	spans.Reset()
	var tags []string
	for _, p := range ps {
		tags = append(tags, r.TagOn(t, "spans", p))
	}
	ctx, parent := tp.Tracer("test").Start(t.Context(), "parent")
	_, err := cc.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, tag := range tags {
			p.Eval(ctx, bigIncr, []string{"{" + tag + "}:k"}, 1)
			p.Set(ctx, "{"+tag+"}:x", 1, 0)
			p.Eval(ctx, bigIncr, []string{"{" + tag + "}:k"}, 2)
		}
		return nil
	})
	require.NoError(t, err)
	parent.End()

	ended := spans.Ended()
	require.Len(t, ended, 1+1+3+6, "parent, batch, 3 node batches, 6 scripts")
	byParent := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range ended {
		byParent[s.Parent().SpanID()] = append(byParent[s.Parent().SpanID()], s)
	}
	top := byParent[parent.SpanContext().SpanID()]
	require.Len(t, top, 1, "one batch span for the logical pipeline")
	batch := top[0]
	assert.Equal(t, "PIPELINE", batch.Name())
	a := attrsOf(batch)
	assert.Equal(t, int64(9), a["db.operation.batch.size"].AsInt64())
	assert.Equal(t, int64(6), a["scripthook.batch.scripts"].AsInt64(), "the nodes' counts, summed")
	assert.Equal(t, int64(3), a["scripthook.batch.bodies_sent"].AsInt64(), "one body per node")
	assert.Equal(t, int64(6), a["scripthook.batch.rewritten"].AsInt64(), "every use by SHA1")
	_, hasPort := a["server.port"]
	assert.False(t, hasPort, "the logical batch has no single server")

	nodes := byParent[batch.SpanContext().SpanID()]
	require.Len(t, nodes, 3, "one sub-batch span per primary")
	ports := map[int64]bool{}
	for _, n := range nodes {
		na := attrsOf(n)
		assert.Equal(t, "PIPELINE", n.Name())
		assert.Equal(t, int64(3), na["db.operation.batch.size"].AsInt64())
		assert.Equal(t, int64(2), na["scripthook.batch.scripts"].AsInt64())
		assert.Equal(t, int64(1), na["scripthook.batch.bodies_sent"].AsInt64())
		assert.Equal(t, "127.0.0.1", na["server.address"].AsString())
		ports[na["server.port"].AsInt64()] = true
		scripts := byParent[n.SpanContext().SpanID()]
		require.Len(t, scripts, 2, "the node's script commands beneath it")
		for _, s := range scripts {
			// Named by the caller's command and, as the script was
			// used more than once, its SHA1 (WithMaxScriptNames).
			assert.Equal(t, "EVAL "+testkit.SHA1(bigIncr), s.Name())
			assert.Equal(t, "EVALSHA", attrsOf(s)["scripthook.sent"].AsString())
		}
	}
	for _, p := range ps {
		assert.True(t, ports[int64(p.Port)], "a sub-batch for %s", p.Addr)
	}

	// A single command: one span, with the node that ran it.
	spans.Reset()
	require.NoError(t, cc.Eval(t.Context(), bigIncr, []string{"{" + tags[1] + "}:k"}, 3).Err())
	ended = spans.Ended()
	require.Len(t, ended, 1)
	assert.Equal(t, "EVAL "+testkit.SHA1(bigIncr), ended[0].Name(), "named by its SHA1 from its second call on")
	assert.Equal(t, int64(ps[1].Port), attrsOf(ended[0])["server.port"].AsInt64())
	assert.Equal(t, "EVALSHA", attrsOf(ended[0])["scripthook.sent"].AsString())
	for _, tag := range tags {
		require.NoError(t, r.Plain.Del(t.Context(), "{"+tag+"}:k", "{"+tag+"}:x").Err())
	}
}

// Read-only routing (ReadOnly, RouteByLatency, RouteRandomly) sends
// EVAL_RO to replicas (and, for the last two, primaries): results are those
// of plain EVAL_RO, every node gets the body once, and replicas keep script
// state of their own, apart from their primaries'.
func testReadOnlyRouting(t *testing.T, r *testkit.ClusterRig) {
	ps, reps := r.Primaries(t), r.Replicas(t)
	var tags []string
	for _, p := range ps {
		tags = append(tags, r.TagsOn(t, "ro", p, 3)...)
	}
	modes := []struct {
		name  string
		tweak func(*redis.ClusterOptions)
	}{
		{"ReadOnly", func(o *redis.ClusterOptions) { o.ReadOnly = true }},
		{"RouteByLatency", func(o *redis.ClusterOptions) { o.RouteByLatency = true }},
		{"RouteRandomly", func(o *redis.ClusterOptions) { o.RouteRandomly = true }},
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			ctx := t.Context()
			rdb, h, w := hooked(t, r, mode.tweak)
			plain := r.Client(t, mode.tweak)
			singles := func(c *redis.ClusterClient, round int) []string {
				var out []string
				for i, tag := range tags {
					out = append(out, testkit.Render(c.EvalRO(ctx, roScript, []string{"{" + tag + "}:a"}, fmt.Sprint(round, i))))
				}
				return out
			}
			batch := func(c *redis.ClusterClient) []string {
				return runBatch(ctx, c, false, func(p redis.Pipeliner) {
					for i, tag := range tags {
						p.EvalRO(ctx, roScript, []string{"{" + tag + "}:a"}, i)
					}
				})
			}
			want := [][]string{singles(plain, 0), singles(plain, 1), batch(plain)}
			r.FlushScripts(t)
			r.ResetStats(t)
			got := [][]string{singles(rdb, 0), singles(rdb, 1)}
			// Single commands: every node that ran the script got the body
			// once, then EVALSHA_RO.
			for _, s := range r.C.Servers {
				if r.Calls(t, "evalsha_ro", s)+r.Calls(t, "eval_ro", s) > 0 {
					assert.Equal(t, int64(1), r.Calls(t, "eval_ro", s), s.Addr)
				}
			}
			assert.Equal(t, int64(2*len(tags)), r.Calls(t, "eval_ro")+r.Calls(t, "evalsha_ro"))
			if mode.name == "ReadOnly" {
				assert.Equal(t, int64(2*len(tags)), r.Calls(t, "evalsha_ro", reps...)+r.Calls(t, "eval_ro", reps...),
					"replicas served every call")
			}
			w.Reset()
			got = append(got, batch(rdb))
			assert.Equal(t, want, got)
			w.CheckBodies(t)

			// Replicas have script state of their own: a flush of the
			// replicas costs each one repair, and the primaries' first
			// EVAL still carries the body.
			for _, s := range reps {
				require.NoError(t, r.Admin[s.Addr].ScriptFlush(ctx).Err())
			}
			before := h.Stats().NoScriptRepaired
			for i, tag := range tags {
				assert.NoError(t, rdb.EvalRO(ctx, roScript, []string{"{" + tag + "}:a"}, i).Err())
			}
			if mode.name == "ReadOnly" {
				assert.Equal(t, int64(len(reps)), h.Stats().NoScriptRepaired-before, "one repair per replica")
				r.ResetStats(t)
				for _, tag := range tags {
					require.NoError(t, rdb.Eval(ctx, roScript, []string{"{" + tag + "}:a"}, "w").Err())
				}
				for _, p := range ps {
					assert.Equal(t, int64(1), r.Calls(t, "eval", p), "%s: its first EVAL carried the body", p.Addr)
				}
			}
			assert.Zero(t, h.Stats().NoScriptPassed)
		})
	}
}

// Keyless scripts (numkeys 0) go wherever go-redis sends them; the node
// hook that gets one handles it: results are those of plain EVAL, cold and
// after SCRIPT FLUSH everywhere, single, pipelined and in a transaction.
func testKeylessScripts(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps := r.Primaries(t)
	rdb, h, w := hooked(t, r, nil)
	tag := r.TagOn(t, "keyless", ps[1])
	run := func(c *redis.ClusterClient) []string {
		var out []string
		for i := 0; i < 9; i++ {
			out = append(out, testkit.Render(c.Eval(ctx, "return ARGV[1] * 2", nil, i)))
		}
		out = append(out, runBatch(ctx, c, false, func(p redis.Pipeliner) {
			for i := 0; i < 9; i++ {
				p.Eval(ctx, "return ARGV[1] * 2", nil, i)
				p.Eval(ctx, echoScript, nil, i)
			}
			p.Eval(ctx, counterScript, []string{"{" + tag + "}:k"})
			p.Eval(ctx, echoScript, nil, "last")
		})...)
		return append(out, runBatch(ctx, c, true, func(p redis.Pipeliner) {
			p.Eval(ctx, echoScript, nil, "in tx")
			p.Eval(ctx, "return ARGV[1] * 2", nil, 21)
		})...)
	}
	want := run(r.Plain)
	require.NoError(t, r.Plain.Del(ctx, "{"+tag+"}:k").Err())
	for _, state := range []string{"cold", "flushed"} {
		r.FlushScripts(t)
		r.ResetStats(t)
		w.Reset()
		assert.Equal(t, want, run(rdb), state)
		require.NoError(t, r.Plain.Del(ctx, "{"+tag+"}:k").Err())
		// No more bodies than plain EVAL sends: 9 single calls, 20 in the
		// pipeline and 2 in the transaction.
		bodies := w.CheckBodies(t)
		_, loadProbes := w.Probes("")
		assert.LessOrEqual(t, r.Calls(t, "eval")+r.Calls(t, "script|load")-int64(loadProbes), int64(9+20+2))
		assert.LessOrEqual(t, bodies, 20+2)
		ran := 0
		for _, p := range ps {
			if r.Calls(t, "evalsha", p)+r.Calls(t, "eval", p) > 0 {
				ran++
			}
		}
		t.Logf("%s: keyless scripts ran on %d primaries", state, ran)
	}
	assert.Zero(t, h.Stats().NoScriptPassed)
}
