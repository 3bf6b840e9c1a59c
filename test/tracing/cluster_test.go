package tracing_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// hookedCluster is a new ClusterClient with a new Hook (telemetry to a
// fresh SDK) installed before its first use.
func hookedCluster(t *testing.T, r *testkit.ClusterRig, tweak func(*redis.ClusterOptions), opts ...scripthook.Option) (*redis.ClusterClient, *tel) {
	t.Helper()
	tl := newTel(t)
	cc := r.Client(t, tweak)
	require.NoError(t, scripthook.Instrument(cc, tl.opts(opts...)...))
	return cc, tl
}

// ranOn returns the one node whose INFO commandstats counted any of names
// since the last ResetStats: the node that ran the call.
func ranOn(t *testing.T, r *testkit.ClusterRig, names ...string) *redistest.Server {
	t.Helper()
	var ran []*redistest.Server
	for _, s := range r.C.Servers {
		n := int64(0)
		for _, name := range names {
			n += r.Calls(t, name, s)
		}
		if n > 0 {
			ran = append(ran, s)
		}
	}
	require.Len(t, ran, 1, "one node ran the call")
	return ran[0]
}

// nodeAttrs are a node's server attributes.
func nodeAttrs(s *redistest.Server) map[string]any {
	return map[string]any{kAddr: "127.0.0.1", kPort: int64(s.Port)}
}

// The spans of a ClusterClient on a real 3+3-node Cluster of the test's
// own. The subtests run one after the other: the last one moves a slot.
func TestCluster(t *testing.T) {
	t.Parallel()
	r := testkit.NewClusterRig(t, testkit.StartCluster(t))
	t.Run("single calls", func(t *testing.T) { testClusterSingle(t, r) })
	t.Run("read-only routing", func(t *testing.T) { testClusterReplica(t, r) })
	t.Run("pipeline", func(t *testing.T) { testClusterPipeline(t, r) })
	t.Run("fcall", func(t *testing.T) { testClusterFCall(t, r) })
	t.Run("moved", func(t *testing.T) { testClusterMoved(t, r) })
}

// A logical call on a Cluster follows the single-call naming rule ("EVAL"
// on the first call, "EVAL <sha1>" from the second, when it proved hot)
// and its span names the node that ran it: server.address and server.port
// (known only at the end: the top hook does not route), db.namespace "0".
// scripthook.sha1 is the script's SHA1 as on a single client. The duration
// series names the node too.
func testClusterSingle(t *testing.T, r *testkit.ClusterRig) {
	cc, tl := hookedCluster(t, r, nil)
	ctx := t.Context()
	r.FlushScripts(t)
	p := r.Primaries(t)[1]
	key := []string{"{" + r.TagOn(t, "single", p) + "}:k"}
	sha := testkit.SHA1(incrBody)
	created := func(proc string) map[string]any {
		return map[string]any{kSystem: "redis", kOp: "EVAL", kProc: proc, kNS: "0"}
	}
	for i, w := range []struct {
		what, proc, sent string
		bodySent         bool
		repair           *event
	}{
		{"first call", scripthook.OtherName, "EVAL", true, nil},
		{"second call", sha, "EVALSHA", false, nil},
		{"third call", sha, "EVALSHA", false, nil},
		{"after a flush", sha, "EVALSHA", true, repairEvent("evicted", "load")},
	} {
		if i == 3 {
			r.FlushScripts(t)
		}
		r.ResetStats(t)
		require.NoError(t, cc.Eval(ctx, incrBody, key, 1).Err(), w.what)
		node := ranOn(t, r, "eval", "evalsha")
		require.Equal(t, p.Addr, node.Addr, "%s: the key's primary ran it", w.what)
		s := tl.one(t)
		assert.Equal(t, spanName("EVAL", w.proc), s.Name(), w.what)
		assert.Equal(t, created(w.proc), tl.created(t, s).Attrs, "%s: at creation", w.what)
		assert.Equal(t, merge(merge(created(w.proc), nodeAttrs(node)), map[string]any{
			kSHA1: sha, kKeys: int64(1), kSent: w.sent, kBodySent: w.bodySent, kRepaired: w.repair != nil,
		}), attrs(s), "%s: at the end, the node that ran it", w.what)
		var evs []event
		if w.repair != nil {
			evs = []event{*w.repair}
		}
		assert.Equal(t, evs, events(s), w.what)
		assert.Equal(t, []point{{Attrs: merge(without(created(w.proc), kOp), merge(nodeAttrs(node), map[string]any{kOp: "EVAL"})), Count: 1}},
			tl.points(t), "%s: the series names the node", w.what)
	}
}

// With ReadOnly routing an EVAL_RO runs on a replica: the span names the
// node that ran it, which is the replica, not the key's primary.
func testClusterReplica(t *testing.T, r *testkit.ClusterRig) {
	cc, tl := hookedCluster(t, r, func(o *redis.ClusterOptions) { o.ReadOnly = true })
	ctx := t.Context()
	p := r.Primaries(t)[2]
	key := []string{"{" + r.TagOn(t, "replica", p) + "}:k"}
	for i := 0; i < 3; i++ {
		r.ResetStats(t)
		require.NoError(t, cc.EvalRO(ctx, regRO, key).Err())
		node := ranOn(t, r, "eval_ro", "evalsha_ro")
		require.Equal(t, r.ReplicaOf(t, p).Addr, node.Addr, "call %d: ReadOnly routing ran it on the replica", i)
		s := tl.one(t)
		a := attrs(s)
		assert.Equal(t, int64(node.Port), a[kPort], "call %d: the node that ran it (%s; the primary is %s)", i, node.Addr, p.Addr)
		assert.Equal(t, "127.0.0.1", a[kAddr])
		pts := tl.points(t)
		require.Len(t, pts, 1)
		assert.Equal(t, int64(node.Port), pts[0].Attrs[kPort], "call %d: the series", i)
	}
}

// A logical pipeline over three primaries gets one batch span (no server:
// it has none of its own; db.namespace "0"; the logical batch's size and
// the nodes' counts summed), one sub-batch span per node beneath it (its
// server and its part's size), and each script command beneath its node's
// sub-batch, named by the single-call rule and naming its node. The
// duration series is the logical batch's, without a server.
func testClusterPipeline(t *testing.T, r *testkit.ClusterRig) {
	cc, tl := hookedCluster(t, r, nil)
	ctx := t.Context()
	ps := r.Primaries(t)
	sha := testkit.SHA1(bigIncr)
	byPort := map[int64]*redistest.Server{}
	var tags []string
	for _, p := range ps {
		tags = append(tags, r.TagOn(t, "pipe", p))
		byPort[int64(p.Port)] = p
	}
	for _, tag := range tags { // hot on every node
		for i := 0; i < 2; i++ {
			require.NoError(t, cc.Eval(ctx, bigIncr, []string{"{" + tag + "}:k"}, 1).Err())
		}
	}
	tl.take()
	tl.points(t)
	for _, c := range []struct {
		name string
		set  bool
	}{{"PIPELINE", true}, {"PIPELINE EVAL", false}} {
		per := 2
		if c.set {
			per = 3
		}
		pctx, parent := tl.tp.Tracer("test").Start(ctx, "caller")
		_, err := cc.Pipelined(pctx, func(p redis.Pipeliner) error {
			for _, tag := range tags {
				p.Eval(pctx, bigIncr, []string{"{" + tag + "}:k"}, 1)
				if c.set {
					p.Set(pctx, "{"+tag+"}:x", 1, 0)
				}
				p.Eval(pctx, bigIncr, []string{"{" + tag + "}:k"}, 1)
			}
			return nil
		})
		require.NoError(t, err)
		parent.End()
		spans := tl.take()
		require.Len(t, spans, 1+1+3+6, "%s: caller, batch, 3 node batches, 6 scripts: %v", c.name, names(spans))
		kids := byParent(spans)
		top := kids[parent.SpanContext().SpanID()]
		require.Len(t, top, 1, "%s: one batch span for the logical pipeline", c.name)
		batch := top[0]
		assert.Equal(t, c.name, batch.Name())
		logical := map[string]any{kSystem: "redis", kOp: c.name, kBatchSize: int64(3 * per), kNS: "0"}
		assert.Equal(t, logical, tl.created(t, batch).Attrs, "%s: the logical batch at creation", c.name)
		a := attrs(batch)
		assert.Equal(t, logical, without(a, kBScripts, kBBodies, kBRepaired, kBRewrite, kBNoSpan), "%s: no server of its own", c.name)
		assert.Equal(t, int64(6), a[kBScripts], "%s: the nodes' counts, summed", c.name)
		assert.Equal(t, int64(0), a[kBRepaired], c.name)

		nodes := kids[batch.SpanContext().SpanID()]
		require.Len(t, nodes, 3, "%s: one sub-batch per node", c.name)
		seen := map[int64]bool{}
		for _, n := range nodes {
			na := attrs(n)
			port, _ := na[kPort].(int64)
			node := byPort[port]
			require.NotNil(t, node, "%s: the sub-batch names a primary: %v", c.name, na)
			seen[port] = true
			assert.Equal(t, c.name, n.Name(), "%s: a node's part is named by the same rule", c.name)
			assert.Equal(t, merge(map[string]any{kSystem: "redis", kOp: c.name, kBatchSize: int64(per), kNS: "0"}, nodeAttrs(node)),
				tl.created(t, n).Attrs, "%s: a sub-batch at creation", c.name)
			scripts := kids[n.SpanContext().SpanID()]
			require.Len(t, scripts, 2, "%s: the node's script commands beneath it", c.name)
			for _, s := range scripts {
				assert.Equal(t, "EVAL "+sha, s.Name())
				assert.Equal(t, merge(map[string]any{kSystem: "redis", kOp: "EVAL", kProc: sha, kNS: "0"}, nodeAttrs(node)),
					tl.created(t, s).Attrs, "%s: a child at creation names its node", c.name)
				assert.Equal(t, status{codes.Unset, ""}, statusOf(s))
			}
		}
		assert.Len(t, seen, 3, "%s: a sub-batch for each primary", c.name)
		assert.Equal(t, []point{{Attrs: map[string]any{kSystem: "redis", kOp: c.name, kNS: "0"}, Count: 1}}, tl.points(t),
			"%s: one series for the logical batch", c.name)
	}
}

// A function call on a Cluster is named like on a single client and names
// the node that ran it.
func testClusterFCall(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	for _, p := range r.Primaries(t) {
		require.NoError(t, r.Admin[p.Addr].FunctionLoad(ctx, traceLib).Err())
	}
	t.Cleanup(func() {
		for _, p := range r.Primaries(t) {
			_ = r.Admin[p.Addr].FunctionFlush(context.Background()).Err()
		}
	})
	cc, tl := hookedCluster(t, r, nil)
	p := r.Primaries(t)[0]
	key := []string{"{" + r.TagOn(t, "fcall", p) + "}:k"}
	r.ResetStats(t)
	require.NoError(t, cc.FCall(ctx, "trace_incr", key, 1).Err())
	node := ranOn(t, r, "fcall")
	require.Equal(t, p.Addr, node.Addr)
	s := tl.one(t)
	assert.Equal(t, "FCALL trace_incr", s.Name())
	created := map[string]any{kSystem: "redis", kOp: "FCALL", kProc: "trace_incr", kNS: "0"}
	assert.Equal(t, created, tl.created(t, s).Attrs)
	assert.Equal(t, merge(merge(created, nodeAttrs(node)), map[string]any{
		kKeys: int64(1), kSent: "FCALL", kBodySent: false, kRepaired: false,
	}), attrs(s), "the node that ran it")
	pts := tl.points(t)
	require.Len(t, pts, 1)
	assert.Equal(t, int64(node.Port), pts[0].Attrs[kPort])
}

// After a slot moves, the client's first call goes to the old owner, gets
// MOVED and is run by the new owner: the one span of the logical call
// names the node that ran it, the new owner.
func testClusterMoved(t *testing.T, r *testkit.ClusterRig) {
	cc, tl := hookedCluster(t, r, nil)
	ctx := t.Context()
	ps := r.Primaries(t)
	tag := r.TagOn(t, "moved", ps[0])
	key := []string{"{" + tag + "}:k"}
	for i := 0; i < 2; i++ {
		require.NoError(t, cc.Eval(ctx, incrBody, key, 1).Err())
	}
	tl.take()
	tl.points(t)
	r.MoveSlot(t, testkit.KeySlot(tag), ps[1])
	r.ResetStats(t)
	require.NoError(t, cc.Eval(ctx, incrBody, key, 1).Err())
	ran := ranOn(t, r, "eval")
	require.Equal(t, ps[1].Addr, ran.Addr, "the new owner ran it")
	s := tl.one(t)
	assert.Equal(t, "EVAL "+testkit.SHA1(incrBody), s.Name())
	assert.Equal(t, int64(ps[1].Port), attrs(s)[kPort], "the node that ran it, not the one that said MOVED")
	pts := tl.points(t)
	require.Len(t, pts, 1)
	assert.Equal(t, int64(ps[1].Port), pts[0].Attrs[kPort])
	v, err := r.Plain.Get(ctx, key[0]).Int()
	require.NoError(t, err)
	assert.Equal(t, 3, v, "each call ran once")
}

// A Ring is traced like a Cluster: a logical call's span names the shard
// that ran it, and a logical pipeline over both shards gets one batch span
// with one sub-batch span per shard beneath it, each naming its shard,
// with the script commands beneath them.
func TestRing(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srvs := map[int64]*redistest.Server{}
	addrs := map[string]string{}
	for _, name := range []string{"a", "b"} {
		s := redistest.Start(t)
		srvs[int64(s.Port)] = s
		addrs[name] = s.Addr
	}
	tl := newTel(t)
	rg := redis.NewRing(&redis.RingOptions{Addrs: addrs, MaxRetries: -1})
	t.Cleanup(func() { _ = rg.Close() })
	require.NoError(t, scripthook.Instrument(rg, tl.opts()...))
	var keys []string
	shardOf := map[string]string{}
	for i := 0; i < 20; i++ {
		k := fmt.Sprint("ring:", i)
		c, err := rg.GetShardClientForKey(k)
		require.NoError(t, err)
		keys = append(keys, k)
		shardOf[k] = c.Options().Addr
	}
	for _, k := range keys[:4] {
		require.NoError(t, rg.Eval(ctx, incrBody, []string{k}, 1).Err())
		s := tl.one(t)
		a := attrs(s)
		assert.Equal(t, shardOf[k], fmt.Sprintf("%s:%d", a[kAddr], a[kPort]), "%s: the shard that ran it", k)
		assert.Equal(t, "0", a[kNS])
	}
	tl.take()
	_, err := rg.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.Eval(ctx, bigIncr, []string{k}, 1)
		}
		return nil
	})
	require.NoError(t, err)
	spans := tl.take()
	require.Len(t, spans, 1+2+len(keys), "batch, 2 shards, the scripts: %v", names(spans))
	kids := byParent(spans)
	var batch sdktrace.ReadOnlySpan
	for _, s := range spans {
		if !s.Parent().IsValid() {
			batch = s
		}
	}
	require.NotNil(t, batch)
	assert.Equal(t, "PIPELINE EVAL", batch.Name())
	assert.NotContains(t, attrs(batch), kPort, "the logical batch has no server")
	shards := kids[batch.SpanContext().SpanID()]
	require.Len(t, shards, 2, "one sub-batch per shard")
	total := 0
	for _, sh := range shards {
		a := attrs(sh)
		port, _ := a[kPort].(int64)
		require.NotNil(t, srvs[port], "a sub-batch names a shard: %v", a)
		assert.Equal(t, "PIPELINE EVAL", sh.Name())
		for _, s := range kids[sh.SpanContext().SpanID()] {
			total++
			assert.Equal(t, port, attrs(s)[kPort], "a script names its shard")
		}
	}
	assert.Equal(t, len(keys), total, "every script command beneath its shard's sub-batch")
}
