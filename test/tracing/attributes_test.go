package tracing_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// A sampler decides on what a span has at creation, so README promises the
// conventions' attributes there: db.system.name=redis, db.operation.name,
// db.stored_procedure.name, db.namespace (the client's database index, 3
// here, which Install reads from the client's options), server.address and
// server.port, and nothing else by default (no db.query.text). The span is
// a client span and a child of the span in the caller's context; at the
// end it has exactly scripthook.sha1, .keys, .sent, .body_sent and
// .repaired in addition.
func TestAttributesAtCreation(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	r := newRigOn(t, srv, &redis.Options{DB: 3, MaxRetries: -1}, nil)
	tl := r.tl
	ctx, parent := tl.tp.Tracer("test").Start(t.Context(), "caller")
	sha := testkit.SHA1(incrBody)
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, []string{"attrs:a", "attrs:b"}, 5, "x").Err())
	parent.End()

	spans := tl.take()
	require.Len(t, spans, 2, "the script span and the caller's")
	s := spans[0]
	require.Equal(t, "EVAL", s.Name())
	c := tl.created(t, s)
	assert.Equal(t, "EVAL", c.Name, "the sampler sees the final name")
	assert.Equal(t, trace.SpanKindClient, c.Kind)
	assert.Equal(t, parent.SpanContext().SpanID(), c.Parent.SpanID(), "the sampler sees the caller's span as parent")
	assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "a child of the caller's span")
	want := map[string]any{
		kSystem: "redis", kOp: "EVAL", kProc: scripthook.OtherName, kNS: "3",
		kAddr: "127.0.0.1", kPort: int64(srv.Port),
	}
	assert.Equal(t, want, c.Attrs, "at creation")
	assert.Equal(t, merge(want, map[string]any{
		kSHA1: sha, kKeys: int64(2), kSent: "EVAL", kBodySent: true, kRepaired: false,
	}), attrs(s), "at the end")
	assert.Equal(t, []point{{Attrs: want, Count: 1}}, tl.points(t),
		"the duration series carries the same bounded attributes")
}

// With WithQueryText, db.query.text is set at creation, sanitized: the
// command, the script's registered name or SHA1 (or "?" for an EVALSHA
// argument that is no SHA1), numkeys, and "?" for every key and argument.
// No key, argument or body appears anywhere in the span.
func TestAttributesQueryText(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value"
	var regSHA string
	r := newRig(t, func(h *scripthook.Hook) { regSHA = h.Register("reg", regBody) }, scripthook.WithQueryText(true))
	ctx := t.Context()
	keys := []string{"attrs:" + secret, "attrs:{" + secret + "}"}
	sha := testkit.SHA1(incrBody)
	cases := []struct {
		what  string
		do    func() error
		name  string
		query string
	}{
		{"EVAL, cold", func() error { return r.Hooked.Eval(ctx, incrBody, keys[:1], 1, secret).Err() },
			"EVAL", "EVAL " + sha + " 1 ? ? ?"},
		{"EVAL, warm", func() error { return r.Hooked.Eval(ctx, incrBody, keys[:1], 1, secret).Err() },
			"EVAL " + sha, "EVAL " + sha + " 1 ? ? ?"},
		{"EVAL_RO", func() error { return r.Hooked.EvalRO(ctx, readBody, keys, secret).Err() },
			"EVAL_RO", "EVAL_RO " + testkit.SHA1(readBody) + " 2 ? ? ?"},
		{"EVAL of a registered script", func() error { return r.Hooked.Eval(ctx, regBody, keys[:1], 1).Err() },
			"EVAL reg", "EVAL reg 1 ? ?"},
		{"EVALSHA of a registered script", func() error { return r.Hooked.EvalSha(ctx, regSHA, keys[:1], 1).Err() },
			"EVALSHA reg", "EVALSHA reg 1 ? ?"},
		{"EVALSHA given a body", func() error {
			err := r.Hooked.EvalSha(ctx, "return '"+secret+"'", nil).Err()
			require.Error(t, err)
			return nil
		}, "EVALSHA", "EVALSHA ? 0"},
		{"EVALSHA of a hot unregistered script", func() error { return r.Hooked.EvalSha(ctx, sha, []string{"attrs:x"}, 1).Err() },
			"EVALSHA " + sha, "EVALSHA " + sha + " 1 ? ?"},
	}
	for _, c := range cases {
		require.NoError(t, c.do(), c.what)
		s := r.tl.one(t)
		assert.Equal(t, c.name, s.Name(), c.what)
		assert.Equal(t, c.query, r.tl.created(t, s).Attrs[kQuery], "%s: db.query.text at creation", c.what)
		assert.Equal(t, c.query, attrs(s)[kQuery], "%s: db.query.text at the end", c.what)
		assert.NotContains(t, dumpSpan(t, s), secret, "%s: no key or argument", c.what)
		assert.NotContains(t, dumpSpan(t, s), "redis.call", "%s: no body", c.what)
	}
}

// A Hook added with AddHook cannot see the client's options: its first
// call has no db.namespace and learns the server's address only from the
// dial, so server.address and server.port come at the end (README: "at
// the end when only the dial tells them"). From the second call on the
// sampler sees them at creation. db.namespace stays absent.
func TestAttributesAddHookServerAtEnd(t *testing.T) {
	t.Parallel()
	tl := newTel(t)
	srv := redistest.Start(t)
	h := scripthook.New(tl.opts()...)
	rdb := testkit.Client(t, srv, &redis.Options{MaxRetries: -1})
	rdb.AddHook(h)
	ctx := t.Context()
	server := map[string]any{kAddr: "127.0.0.1", kPort: int64(srv.Port)}
	created := map[string]any{kSystem: "redis", kOp: "EVAL", kProc: scripthook.OtherName}
	sha := testkit.SHA1(incrBody)

	require.NoError(t, rdb.Eval(ctx, incrBody, []string{"attrs:late"}, 1).Err())
	s := tl.one(t)
	assert.Equal(t, created, tl.created(t, s).Attrs, "first call: only what is known before the dial")
	assert.Equal(t, merge(merge(created, server), map[string]any{
		kSHA1: sha, kKeys: int64(1), kSent: "EVAL", kBodySent: true, kRepaired: false,
	}), attrs(s), "first call: the server at the end")
	assert.Equal(t, []point{{Attrs: merge(created, server), Count: 1}}, tl.points(t), "first call: the metric has the server")

	require.NoError(t, rdb.Eval(ctx, incrBody, []string{"attrs:late"}, 1).Err())
	s = tl.one(t)
	assert.Equal(t, merge(merge(created, server), map[string]any{kProc: sha}), tl.created(t, s).Attrs, "second call: the server at creation")
}

// A batch span has at creation db.system.name, db.operation.name,
// db.operation.batch.size, db.namespace and the server; at the end the
// counts scripthook.batch.scripts, .bodies_sent, .repaired, .rewritten and
// .scripts_without_span. A Hook's first pipeline goes as written (two
// bodies); a warm one brings the body once (the hook's SCRIPT LOAD) and
// sends both uses by SHA1. Each child is seen by the sampler with the same
// attributes as a single call of the script.
func TestAttributesBatch(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	sha := testkit.SHA1(bigIncr)
	k := []string{"attrs:batch"}
	batch := func() {
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Eval(ctx, bigIncr, k, 1)
			p.Set(ctx, "attrs:other", 1, 0)
			p.Eval(ctx, bigIncr, k, 1)
			return nil
		})
		require.NoError(t, err)
	}
	created := merge(r.base(), map[string]any{kOp: "PIPELINE", kBatchSize: int64(3)})
	counts := func(scripts, bodies, repaired, rewritten, noSpan int) map[string]any {
		return map[string]any{kBScripts: int64(scripts), kBBodies: int64(bodies), kBRepaired: int64(repaired),
			kBRewrite: int64(rewritten), kBNoSpan: int64(noSpan)}
	}
	for _, round := range []struct {
		what   string
		counts map[string]any
		sent   string
	}{
		{"the Hook's first pipeline", counts(2, 2, 0, 0, 0), "EVAL"},
		{"a warm pipeline", counts(2, 1, 0, 2, 0), "EVALSHA"},
	} {
		batch()
		spans := r.tl.take()
		require.Len(t, spans, 3, round.what)
		b := spans[2]
		require.Equal(t, "PIPELINE", b.Name())
		assert.Equal(t, created, r.tl.created(t, b).Attrs, "%s: the batch at creation", round.what)
		assert.Equal(t, merge(created, round.counts), attrs(b), "%s: the batch at the end", round.what)
		assert.Equal(t, status{codes.Unset, ""}, statusOf(b))
		for _, c := range spans[:2] {
			assert.Equal(t, b.SpanContext().SpanID(), c.Parent().SpanID(), "%s: a child of the batch", round.what)
			assert.Equal(t, "EVAL "+sha, c.Name())
			assert.Equal(t, r.created("EVAL", sha), r.tl.created(t, c).Attrs, "%s: a child at creation", round.what)
			assert.Equal(t, round.sent, attrs(c)[kSent], "%s: what went out", round.what)
			assert.Equal(t, trace.SpanKindClient, c.SpanKind())
		}
	}
}

// README: a batch child is "built by the same code as a script run, so the
// same attributes and event". The same call in the same situation must
// then carry the same attributes alone and in a pipeline: here a
// registered script's first EVALSHA on a server, which the hook's SCRIPT
// LOAD goes ahead of in both cases (README, "Registered scripts are there
// before they are needed"). Alone, scripthook.body_sent is true (the
// load carried the body); the child must say the same.
func TestAttributesBatchChildLikeSingle(t *testing.T) {
	t.Parallel()
	var sha string
	reg := func(h *scripthook.Hook) { sha = h.Register("reg", regBody) }
	single, piped := newRig(t, reg), newRig(t, reg)
	ctx := t.Context()
	k := []string{"attrs:like"}

	loads := func(r *rig) *testkit.Spy {
		spy := &testkit.Spy{Keep: true}
		r.Hooked.AddHook(spy)
		return spy
	}
	// loadsOf counts the SCRIPT LOADs of regBody that went to the server.
	loadsOf := func(spy *testkit.Spy) int {
		n := 0
		for _, b := range spy.Kept() {
			for _, c := range b {
				if testkit.FullName(c) == "script|load" && c.Args()[2] == regBody {
					n++
				}
			}
		}
		return n
	}
	singleSpy, pipedSpy := loads(single), loads(piped)

	require.NoError(t, single.Hooked.EvalSha(ctx, sha, k, 1).Err())
	alone := single.tl.one(t)
	assert.Equal(t, 1, loadsOf(singleSpy), "alone: the hook's SCRIPT LOAD went first")

	_, err := piped.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.EvalSha(ctx, sha, k, 1)
		p.Set(ctx, "attrs:other", 1, 0)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 1, loadsOf(pipedSpy), "piped: the hook's SCRIPT LOAD went first")
	spans := piped.tl.take()
	require.Len(t, spans, 2)
	child := spans[0]

	port := func(r *rig, m map[string]any) map[string]any {
		return merge(m, map[string]any{kPort: int64(r.Srv.Port)})
	}
	assert.Equal(t, alone.Name(), child.Name())
	assert.Equal(t, port(piped, single.tl.created(t, alone).Attrs), piped.tl.created(t, child).Attrs, "the same attributes at creation")
	assert.Equal(t, port(piped, attrs(alone)), attrs(child), "the same attributes at the end")
	assert.Equal(t, events(alone), events(child))
	assert.Equal(t, statusOf(alone), statusOf(child))
}

// A batch child of a repaired use carries what a repaired single call
// carries: scripthook.repaired=true and the scripthook.repair event with
// its cause and how. Optimistic mode sends a warm batch by SHA1 with no
// body; after another client's SCRIPT FLUSH both uses meet NOSCRIPT, and
// since nothing after them took effect the hook re-sends them in one more
// round trip: both repaired (scripthook.batch.repaired=2), no error.
func TestAttributesBatchChildRepaired(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
	ctx := t.Context()
	sha := testkit.SHA1(bigIncr)
	k := []string{"attrs:repaired"}
	batch := func() {
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Eval(ctx, bigIncr, k, 1)
			p.Eval(ctx, bigIncr, k, 1)
			return nil
		})
		require.NoError(t, err)
	}
	batch() // as written, with the probes
	batch() // warm
	r.tl.take()
	r.FlushScripts(t)
	batch()
	spans := r.tl.take()
	require.Len(t, spans, 3)
	b := spans[2]
	assert.Equal(t, int64(2), attrs(b)[kBRepaired], "both uses repaired")
	assert.Equal(t, status{codes.Unset, ""}, statusOf(b), "a repaired NOSCRIPT is no error")
	for _, c := range spans[:2] {
		a := attrs(c)
		assert.Equal(t, "EVAL "+sha, c.Name())
		assert.Equal(t, true, a[kRepaired], "scripthook.repaired")
		assert.NotContains(t, a, kErrType)
		assert.Equal(t, status{codes.Unset, ""}, statusOf(c))
		evs := events(c)
		require.Len(t, evs, 1, "the repair event")
		assert.Equal(t, "scripthook.repair", evs[0].Name)
		assert.Equal(t, "evicted", evs[0].Attrs[kCause], "the hook believed it there and saw no flush")
		assert.Equal(t, "load", evs[0].Attrs[kHow])
		// Everything a single call has: the same keys.
		assert.ElementsMatch(t, keysOf(r.ended("EVAL", sha, sha, 1, "EVALSHA", false, true)), keysOf(a))
	}
}

// The repair event says why the script was missing and how it was given
// back. evicted: it had run there and the hook saw no flush (another
// client's SCRIPT FLUSH). lost: the hook had pinned it with SCRIPT LOAD
// (a registered script) and it is gone. missing: the hook knows the body
// (from an EVAL on another server) but did not believe this server had it.
// how=body: the user may not run SCRIPT LOAD, so the repair sent the body.
func TestAttributesRepairCauses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	t.Run("evicted and lost", func(t *testing.T) {
		t.Parallel()
		r := newRig(t, func(h *scripthook.Hook) { h.Register("reg", regBody) })
		k := []string{"attrs:cause"}
		for i := 0; i < 2; i++ {
			require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
			require.NoError(t, r.Hooked.Eval(ctx, regBody, k, 1).Err())
		}
		r.tl.take()
		r.FlushScripts(t)
		require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
		assert.Equal(t, []event{*repairEvent("evicted", "load")}, events(r.tl.one(t)))
		require.NoError(t, r.Hooked.Eval(ctx, regBody, k, 1).Err())
		assert.Equal(t, []event{*repairEvent("lost", "load")}, events(r.tl.one(t)))
	})
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		tl := newTel(t)
		h := scripthook.New(tl.opts()...)
		a, b := testkit.NewRig(t, nil), testkit.NewRig(t, nil)
		require.NoError(t, h.Install(a.Hooked))
		require.NoError(t, h.Install(b.Hooked))
		require.NoError(t, a.Hooked.Eval(ctx, incrBody, []string{"k"}, 1).Err()) // the hook learns the body
		_, err := b.Admin.ScriptLoad(ctx, incrBody).Result()
		require.NoError(t, err)
		b.FlushScripts(t)
		tl.take()
		require.NoError(t, b.Hooked.EvalSha(ctx, testkit.SHA1(incrBody), []string{"k"}, 1).Err())
		s := tl.one(t)
		assert.Equal(t, []event{*repairEvent("missing", "load")}, events(s))
		assert.Equal(t, true, attrs(s)[kRepaired])
		assert.Equal(t, int64(b.Srv.Port), attrs(s)[kPort])
	})
	t.Run("body", func(t *testing.T) {
		t.Parallel()
		srv := redistest.Start(t)
		admin := testkit.Client(t, srv, nil)
		require.NoError(t, admin.Do(ctx, "ACL", "SETUSER", "noload", "on", ">pw", "~*", "+@all", "-script|load").Err())
		r := newRigOn(t, srv, &redis.Options{Username: "noload", Password: "pw", MaxRetries: -1}, nil)
		k := []string{"attrs:body"}
		require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
		require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
		r.tl.take()
		r.tl.points(t)
		r.FlushScripts(t)
		require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
		sha := testkit.SHA1(incrBody)
		r.check(t, "repaired by body", call{op: "EVAL", proc: sha, sha: sha, keys: 1, sent: "EVAL", bodySent: true,
			repair: repairEvent("evicted", "body")})
	})
}

// With WithMaxChildSpans(n), the first n script commands of a batch get a
// child span and scripthook.batch.scripts_without_span counts the rest;
// with 0, none gets one. Other commands never get a child.
func TestAttributesMaxChildSpans(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, n := range []int{2, 0} {
		r := newRigOn(t, srv, &redis.Options{MaxRetries: -1}, nil, scripthook.WithMaxChildSpans(n))
		ctx := t.Context()
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 5; i++ {
				p.Eval(ctx, bigIncr, []string{"attrs:max"}, 1)
				p.Set(ctx, "attrs:other", 1, 0)
			}
			return nil
		})
		require.NoError(t, err)
		spans := r.tl.take()
		require.Len(t, spans, 1+n, "WithMaxChildSpans(%d): %v", n, names(spans))
		b := spans[n]
		assert.Equal(t, "PIPELINE", b.Name())
		assert.Equal(t, int64(5), attrs(b)[kBScripts])
		assert.Equal(t, int64(5-n), attrs(b)[kBNoSpan], "WithMaxChildSpans(%d)", n)
	}
}

// WithRewrite(false) sends scripts as written but is "still traced"
// (README, Options). A single call's span says EVAL went out, under the
// same names; a batch still gets "one [child span] per script command (up
// to WithMaxChildSpans)".
func TestAttributesRewriteOff(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil, scripthook.WithRewrite(false))
	ctx := t.Context()
	sha := testkit.SHA1(bigIncr)
	k := []string{"attrs:norewrite"}
	require.NoError(t, r.Hooked.Eval(ctx, bigIncr, k, 1).Err())
	r.check(t, "first", call{op: "EVAL", proc: scripthook.OtherName, sha: sha, keys: 1, sent: "EVAL", bodySent: true})
	require.NoError(t, r.Hooked.Eval(ctx, bigIncr, k, 1).Err())
	r.check(t, "second", call{op: "EVAL", proc: sha, sha: sha, keys: 1, sent: "EVAL", bodySent: true})

	_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, bigIncr, k, 1)
		p.Eval(ctx, bigIncr, k, 1)
		return nil
	})
	require.NoError(t, err)
	spans := r.tl.take()
	assert.Equal(t, []string{"EVAL " + sha, "EVAL " + sha, "PIPELINE EVAL"}, names(spans), "the batch and one child per script command")
	b := spans[len(spans)-1]
	assert.Equal(t, int64(2), attrs(b)[kBScripts])
	assert.Equal(t, int64(2), attrs(b)[kBBodies])
	assert.Equal(t, int64(0), attrs(b)[kBNoSpan])
}

// wireTracer stands for go-redis's redisotel placed after scripthook: it
// traces every command that goes to the server as its own span, in the
// context scripthook hands down.
type wireTracer struct{ tr trace.Tracer }

func (w wireTracer) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w wireTracer) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		ctx, span := w.tr.Start(ctx, "wire "+testkit.FullName(cmd))
		defer span.End()
		return next(ctx, cmd)
	}
}

func (w wireTracer) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := make([]string, len(cmds))
		for i, c := range cmds {
			n[i] = testkit.FullName(c)
		}
		ctx, span := w.tr.Start(ctx, "wire pipeline "+strings.Join(n, ","))
		defer span.End()
		return next(ctx, cmds)
	}
}

// Spans are children of the span in the caller's context and cover the
// whole run, repairs included (README): a tracer after scripthook sees the
// repaired call's EVALSHA, the hook's SCRIPT LOAD and the second EVALSHA
// as children of the script span, inside its time; a batch's wire pipeline
// is a child of the batch span, and the batch span a child of the
// caller's.
func TestAttributesSpansCoverTheRun(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	r.Hooked.AddHook(wireTracer{r.tl.tp.Tracer("wire")})
	ctx := t.Context()
	k := []string{"attrs:cover"}
	for i := 0; i < 2; i++ {
		require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
	}
	r.FlushScripts(t)
	r.tl.take()
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
	spans := r.tl.take()
	require.Len(t, spans, 4, "%v", names(spans))
	script := spans[3]
	require.Equal(t, "EVAL "+testkit.SHA1(incrBody), script.Name())
	assert.Equal(t, []string{"wire evalsha", "wire script|load", "wire evalsha"}, names(spans[:3]))
	for _, w := range spans[:3] {
		within(t, script, w)
	}

	pctx, parent := r.tl.tp.Tracer("test").Start(ctx, "caller")
	_, err := r.Hooked.Pipelined(pctx, func(p redis.Pipeliner) error {
		p.Eval(pctx, bigIncr, k, 1)
		p.Eval(pctx, bigIncr, k, 1)
		return nil
	})
	require.NoError(t, err)
	parent.End()
	spans = r.tl.take()
	var batch, wire sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch {
		case s.Name() == "PIPELINE EVAL":
			batch = s
		case strings.HasPrefix(s.Name(), "wire pipeline"):
			wire = s
		}
	}
	require.NotNil(t, batch, "%v", names(spans))
	require.NotNil(t, wire, "%v", names(spans))
	assert.Equal(t, parent.SpanContext().SpanID(), batch.Parent().SpanID(), "the batch is the caller's child")
	within(t, batch, wire)
	for _, s := range byParent(spans)[batch.SpanContext().SpanID()] {
		if s != wire {
			assert.Equal(t, "EVAL "+testkit.SHA1(bigIncr), s.Name())
		}
	}
}

// within asserts that inner is a child of outer and inside its time.
func within(t *testing.T, outer, inner sdktrace.ReadOnlySpan) {
	t.Helper()
	assert.Equal(t, outer.SpanContext().SpanID(), inner.Parent().SpanID(), "%q is a child of %q", inner.Name(), outer.Name())
	assert.False(t, inner.StartTime().Before(outer.StartTime()), "%q starts inside %q", inner.Name(), outer.Name())
	assert.False(t, inner.EndTime().After(outer.EndTime()), "%q ends inside %q", inner.Name(), outer.Name())
}

func keysOf(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
