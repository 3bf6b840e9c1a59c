package tracing_test

import (
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// call is one expected single-call span: its name parts, what went out and
// the repair event, if any.
type call struct {
	op, proc, sha string
	keys          int
	sent          string
	bodySent      bool
	repair        *event
}

// check asserts a single call's span (name, attributes at creation and at
// the end, status, events, kind) and its duration series.
func (r *rig) check(t *testing.T, what string, w call) sdktrace.ReadOnlySpan {
	t.Helper()
	s := r.tl.one(t)
	assert.Equal(t, spanName(w.op, w.proc), s.Name(), "%s: the span name", what)
	assert.Equal(t, r.created(w.op, w.proc), r.tl.created(t, s).Attrs, "%s: the attributes a sampler sees", what)
	assert.Equal(t, r.ended(w.op, w.proc, w.sha, w.keys, w.sent, w.bodySent, w.repair != nil), attrs(s), "%s: the attributes at the end", what)
	var evs []event
	if w.repair != nil {
		evs = []event{*w.repair}
	}
	assert.Equal(t, evs, events(s), "%s: events", what)
	assert.Equal(t, status{codes.Unset, ""}, statusOf(s), "%s: status", what)
	assert.Equal(t, trace.SpanKindClient, s.SpanKind(), "%s: a client span", what)
	assert.Equal(t, []point{{Attrs: r.metric(w.op, w.proc), Count: 1}}, r.tl.points(t), "%s: the duration series", what)
	return s
}

func repairEvent(cause, how string) *event {
	return &event{Name: "scripthook.repair", Attrs: map[string]any{kCause: cause, kHow: how}}
}

// A user calling the same EVAL three times sees one name for what they
// asked for, whatever went out: the first call (the body went out as
// written) is "EVAL", because a script proves hot only with its second
// call; the second call went out as EVALSHA and is "EVAL <sha1>"; after
// another client's SCRIPT FLUSH the third call met NOSCRIPT, was repaired
// (SCRIPT LOAD, then EVALSHA) and is still "EVAL <sha1>", with a
// scripthook.repair event (cause evicted: the hook saw no flush; how load).
// scripthook.sent tells what went out, and the server's command counts
// agree with it. The duration metric's db.operation.name is EVAL each time.
func TestNamingSingleEval(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	sha := testkit.SHA1(incrBody)
	keys := []string{"naming:eval"}
	counted := []string{"eval", "evalsha", "script|load"}

	r.ResetStats(t)
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, keys, 1).Err())
	r.check(t, "cold", call{op: "EVAL", proc: scripthook.OtherName, sha: sha, keys: 1, sent: "EVAL", bodySent: true})
	assert.Equal(t, map[string]int64{"eval": 1, "evalsha": 0, "script|load": 0}, r.calls(t, counted...), "cold: the body went out")

	r.ResetStats(t)
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, keys, 1).Err())
	r.check(t, "warm", call{op: "EVAL", proc: sha, sha: sha, keys: 1, sent: "EVALSHA"})
	assert.Equal(t, map[string]int64{"eval": 0, "evalsha": 1, "script|load": 0}, r.calls(t, counted...), "warm: EVALSHA went out")

	r.FlushScripts(t)
	r.ResetStats(t)
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, keys, 1).Err())
	r.check(t, "repaired", call{op: "EVAL", proc: sha, sha: sha, keys: 1, sent: "EVALSHA", bodySent: true,
		repair: repairEvent("evicted", "load")})
	assert.Equal(t, map[string]int64{"eval": 0, "evalsha": 2, "script|load": 1}, r.calls(t, counted...), "repaired: NOSCRIPT, SCRIPT LOAD, EVALSHA")
	v, err := r.Plain.Get(ctx, keys[0]).Int()
	require.NoError(t, err)
	assert.Equal(t, 3, v, "each call ran once")
}

// EVAL_RO follows the same rule: "EVAL_RO" cold, "EVAL_RO <sha1>" once hot,
// sent as EVALSHA_RO, and the metric's db.operation.name is EVAL_RO.
func TestNamingSingleEvalRO(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	sha := testkit.SHA1(readBody)
	keys := []string{"naming:ro"}
	require.NoError(t, r.Plain.Set(ctx, keys[0], "v", 0).Err())

	require.NoError(t, r.Hooked.EvalRO(ctx, readBody, keys).Err())
	r.check(t, "cold", call{op: "EVAL_RO", proc: scripthook.OtherName, sha: sha, keys: 1, sent: "EVAL_RO", bodySent: true})
	require.NoError(t, r.Hooked.EvalRO(ctx, readBody, keys).Err())
	r.check(t, "warm", call{op: "EVAL_RO", proc: sha, sha: sha, keys: 1, sent: "EVALSHA_RO"})
	r.FlushScripts(t)
	require.NoError(t, r.Hooked.EvalRO(ctx, readBody, keys).Err())
	r.check(t, "repaired", call{op: "EVAL_RO", proc: sha, sha: sha, keys: 1, sent: "EVALSHA_RO", bodySent: true,
		repair: repairEvent("evicted", "load")})
}

// A caller's own EVALSHA and EVALSHA_RO are named as what they are, with
// the script's SHA1 once the hook knows it as hot (here from an EVAL of
// the same body), and go out as written. After a flush by another client
// the hook repairs the caller's EVALSHA (it knows the body): same name,
// scripthook.repaired, the event.
func TestNamingCallerEvalSha(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	sha := testkit.SHA1(readBody)
	keys := []string{"naming:evalsha"}
	require.NoError(t, r.Plain.Set(ctx, keys[0], "v", 0).Err())

	require.NoError(t, r.Hooked.Eval(ctx, readBody, keys).Err())
	r.check(t, "the EVAL that teaches the body", call{op: "EVAL", proc: scripthook.OtherName, sha: sha, keys: 1, sent: "EVAL", bodySent: true})
	require.NoError(t, r.Hooked.EvalSha(ctx, sha, keys).Err())
	r.check(t, "EVALSHA", call{op: "EVALSHA", proc: sha, sha: sha, keys: 1, sent: "EVALSHA"})
	require.NoError(t, r.Hooked.EvalShaRO(ctx, sha, keys).Err())
	r.check(t, "EVALSHA_RO", call{op: "EVALSHA_RO", proc: sha, sha: sha, keys: 1, sent: "EVALSHA_RO"})
	r.FlushScripts(t)
	require.NoError(t, r.Hooked.EvalSha(ctx, sha, keys).Err())
	r.check(t, "EVALSHA repaired", call{op: "EVALSHA", proc: sha, sha: sha, keys: 1, sent: "EVALSHA", bodySent: true,
		repair: repairEvent("evicted", "load")})
}

// A script given to Register is named by its name from its very first
// call, for every command that runs it: "EVAL limiter", "EVALSHA
// limiter", "EVAL_RO reader", "EVALSHA_RO reader"; scripthook.sha1 still
// holds the SHA1. The first EVAL goes as written (README: the first EVAL a
// Hook sends to a server always does); a registered script's first EVALSHA
// gets the hook's SCRIPT LOAD first (a body went out for it). After a
// flush by another client, the registered script, pinned by SCRIPT LOAD,
// was lost (cause lost).
func TestNamingRegistered(t *testing.T) {
	t.Parallel()
	var sha, roSHA string
	r := newRig(t, func(h *scripthook.Hook) {
		sha = h.Register("limiter", regBody)
		roSHA = h.Register("reader", regRO)
	})
	require.Equal(t, testkit.SHA1(regBody), sha)
	ctx := t.Context()
	keys := []string{"naming:reg"}

	require.NoError(t, r.Hooked.EvalSha(ctx, sha, keys, 1).Err())
	r.check(t, "first EVALSHA", call{op: "EVALSHA", proc: "limiter", sha: sha, keys: 1, sent: "EVALSHA", bodySent: true})
	require.NoError(t, r.Hooked.Eval(ctx, regBody, keys, 1).Err())
	r.check(t, "first EVAL", call{op: "EVAL", proc: "limiter", sha: sha, keys: 1, sent: "EVAL", bodySent: true})
	require.NoError(t, r.Hooked.Eval(ctx, regBody, keys, 1).Err())
	r.check(t, "warm EVAL", call{op: "EVAL", proc: "limiter", sha: sha, keys: 1, sent: "EVALSHA"})
	require.NoError(t, r.Hooked.EvalRO(ctx, regRO, keys).Err())
	r.check(t, "first EVAL_RO", call{op: "EVAL_RO", proc: "reader", sha: roSHA, keys: 1, sent: "EVAL_RO", bodySent: true})
	require.NoError(t, r.Hooked.EvalShaRO(ctx, roSHA, keys).Err())
	r.check(t, "EVALSHA_RO", call{op: "EVALSHA_RO", proc: "reader", sha: roSHA, keys: 1, sent: "EVALSHA_RO"})
	r.FlushScripts(t)
	require.NoError(t, r.Hooked.Eval(ctx, regBody, keys, 1).Err())
	r.check(t, "repaired", call{op: "EVAL", proc: "limiter", sha: sha, keys: 1, sent: "EVALSHA", bodySent: true,
		repair: repairEvent("lost", "load")})
}

// README: db.stored_procedure.name is "for any other script its SHA1 once
// it proved hot (its second call)". A caller's EVALSHA of a script the
// hook never saw (loaded by another client) is such a script: its first
// call is named "EVALSHA" (_OTHER) and only its second "EVALSHA <sha1>".
// Otherwise every one-off EVALSHA of a distinct SHA1 takes one of the
// WithMaxScriptNames slots meant for hot scripts.
func TestNamingUnknownSHA1FromSecondCall(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	ctx := t.Context()
	body := "-- tracing: loaded by another client\nreturn 'loaded elsewhere'"
	sha, err := r.Admin.ScriptLoad(ctx, body).Result()
	require.NoError(t, err)

	require.NoError(t, r.Hooked.EvalSha(ctx, sha, nil).Err())
	r.check(t, "first EVALSHA of a SHA1 the hook does not know", call{op: "EVALSHA", proc: scripthook.OtherName, sha: sha, sent: "EVALSHA"})
	require.NoError(t, r.Hooked.EvalSha(ctx, sha, nil).Err())
	r.check(t, "second EVALSHA", call{op: "EVALSHA", proc: sha, sha: sha, sent: "EVALSHA"})
}

// Beyond WithMaxScriptNames, every other script is _OTHER
// (scripthook.OtherName) and its span is named by the command alone:
// with a bound of 2, scripts A and B get their SHA1 on their second call,
// C never does; a name once given stays (A's third call); a registered
// script is named whatever the bound. The metric has exactly those
// db.stored_procedure.name values. A bound of 0 names no unregistered
// script at all.
func TestNamingOtherBeyondMax(t *testing.T) {
	t.Parallel()
	require.Equal(t, "_OTHER", scripthook.OtherName)
	srv := newRig(t, nil).Srv // a server for both bounds
	body := func(s string) string { return "-- tracing: script " + s + "\nreturn redis.call('INCR', KEYS[1])" }
	for _, bound := range []int{2, 0} {
		t.Run(fmt.Sprint("bound ", bound), func(t *testing.T) {
			r := newRigOn(t, srv, &redis.Options{MaxRetries: -1}, func(h *scripthook.Hook) { h.Register("reg", regBody) },
				scripthook.WithMaxScriptNames(bound))
			r.FlushScripts(t)
			ctx := t.Context()
			keys := []string{"naming:other"}
			want := []string{}
			wantProcs := map[string]bool{scripthook.OtherName: true, "reg": true}
			run := func(src string, named bool) {
				require.NoError(t, r.Hooked.Eval(ctx, src, keys).Err())
				proc := scripthook.OtherName
				if named {
					proc = testkit.SHA1(src)
				}
				want = append(want, spanName("EVAL", proc))
				wantProcs[proc] = true
			}
			run(body("A"), false)
			run(body("A"), bound >= 1)
			run(body("B"), false)
			run(body("B"), bound >= 2)
			run(body("C"), false)
			run(body("C"), false)
			run(body("A"), bound >= 1)
			require.NoError(t, r.Hooked.Eval(ctx, regBody, keys, 1).Err())
			want = append(want, "EVAL reg")
			assert.Equal(t, want, names(r.tl.take()))

			procs := map[string]bool{}
			for _, p := range r.tl.points(t) {
				procs[p.Attrs[kProc].(string)] = true
			}
			assert.Equal(t, wantProcs, procs, "the metric's db.stored_procedure.name values")
		})
	}
}

// batchWant is an expected batch: its name, its size attribute, and the
// names of its children in order.
type batchWant struct {
	name     string
	size     int
	children []string
	sent     []string
}

// checkBatch asserts the spans of one batch (name, size, children named by
// the single-call rule, sent as expected) and its one duration series.
func (r *rig) checkBatch(t *testing.T, what string, w batchWant) {
	t.Helper()
	spans := r.tl.take()
	require.Len(t, spans, 1+len(w.children), "%s: %v", what, names(spans))
	var batch sdktrace.ReadOnlySpan
	for _, s := range spans {
		if !s.Parent().IsValid() {
			require.Nil(t, batch, "%s: one root", what)
			batch = s
		}
	}
	require.NotNil(t, batch, "%s: a batch span", what)
	assert.Equal(t, w.name, batch.Name(), "%s: the batch span's name", what)
	a := attrs(batch)
	assert.Equal(t, w.name, a[kOp], "%s: db.operation.name", what)
	if w.size >= 2 {
		assert.Equal(t, int64(w.size), a[kBatchSize], "%s: db.operation.batch.size", what)
	} else {
		assert.NotContains(t, a, kBatchSize, "%s: no batch size below 2", what)
	}
	var got, sent []string
	for _, c := range byParent(spans)[batch.SpanContext().SpanID()] {
		got = append(got, c.Name())
		sent = append(sent, fmt.Sprint(attrs(c)[kSent]))
	}
	assert.Equal(t, w.children, got, "%s: one child per script command, named like a single call", what)
	if w.sent != nil {
		assert.Equal(t, w.sent, sent, "%s: what went out", what)
	}
	assert.Equal(t, []point{{Attrs: r.metric(w.name, ""), Count: 1}}, r.tl.points(t), "%s: one duration series, named like the span", what)
}

// Batch spans are named by what the caller batched: "PIPELINE <CMD>" when
// every command of the caller is the same (EVAL spelt "eval" or "EVAL" is
// the same), "PIPELINE" otherwise, "MULTI <CMD>" and "MULTI" for
// transactions (go-redis's own MULTI and EXEC are not the caller's
// commands), whatever the hook sent in their place: a warm batch of EVALs
// that went out as SCRIPT LOAD + EVALSHA is still "PIPELINE EVAL". Each
// script command gets a child span named by the single-call rule
// ("EVAL <sha1>", "EVALSHA <registered name>", "EVAL" for a script used
// once, cold). The duration series is the batch's, named like its span.
func TestNamingBatches(t *testing.T) {
	t.Parallel()
	var regSHA string
	r := newRig(t, func(h *scripthook.Hook) { regSHA = h.Register("reg", regBody) })
	ctx := t.Context()
	sha, roSHA := testkit.SHA1(bigIncr), testkit.SHA1(bigRead)
	k := []string{"naming:batch"}
	evalN, roN := "EVAL "+sha, "EVAL_RO "+roSHA
	pipe := func(fn func(p redis.Pipeliner)) {
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error { fn(p); return nil })
		require.NoError(t, err)
	}
	tx := func(fn func(p redis.Pipeliner)) {
		_, err := r.Hooked.TxPipelined(ctx, func(p redis.Pipeliner) error { fn(p); return nil })
		require.NoError(t, err)
	}

	pipe(func(p redis.Pipeliner) { p.Eval(ctx, incrBody, k, 1) })
	r.checkBatch(t, "a cold one-command pipeline", batchWant{name: "PIPELINE EVAL", size: 1,
		children: []string{"EVAL"}, sent: []string{"EVAL"}})

	// Make both scripts hot (named) with single calls.
	for i := 0; i < 2; i++ {
		require.NoError(t, r.Hooked.Eval(ctx, bigIncr, k, 1).Err())
		require.NoError(t, r.Hooked.EvalRO(ctx, bigRead, k).Err())
	}
	r.tl.take()
	r.tl.points(t)

	pipe(func(p redis.Pipeliner) {
		p.Eval(ctx, bigIncr, k, 1)
		p.Do(ctx, "eval", bigIncr, 1, k[0], 1)
	})
	r.checkBatch(t, "EVAL and eval", batchWant{name: "PIPELINE EVAL", size: 2, children: []string{evalN, evalN}})
	pipe(func(p redis.Pipeliner) {
		p.Eval(ctx, bigIncr, k, 1)
		p.Eval(ctx, bigIncr, k, 1)
	})
	r.checkBatch(t, "a warm pipeline", batchWant{name: "PIPELINE EVAL", size: 2, children: []string{evalN, evalN},
		sent: []string{"EVALSHA", "EVALSHA"}})
	pipe(func(p redis.Pipeliner) {
		p.Eval(ctx, bigIncr, k, 1)
		p.Set(ctx, "naming:other", 1, 0)
	})
	r.checkBatch(t, "EVAL and SET", batchWant{name: "PIPELINE", size: 2, children: []string{evalN}})
	pipe(func(p redis.Pipeliner) {
		p.Eval(ctx, bigIncr, k, 1)
		p.EvalRO(ctx, bigRead, k)
	})
	r.checkBatch(t, "EVAL and EVAL_RO", batchWant{name: "PIPELINE", size: 2, children: []string{evalN, roN}})
	pipe(func(p redis.Pipeliner) {
		p.EvalSha(ctx, regSHA, k, 1)
		p.EvalSha(ctx, regSHA, k, 1)
		p.EvalShaRO(ctx, roSHA, k)
	})
	r.checkBatch(t, "EVALSHA and EVALSHA_RO", batchWant{name: "PIPELINE", size: 3,
		children: []string{"EVALSHA reg", "EVALSHA reg", "EVALSHA_RO " + roSHA}, sent: []string{"EVALSHA", "EVALSHA", "EVALSHA_RO"}})
	pipe(func(p redis.Pipeliner) {
		p.EvalSha(ctx, regSHA, k, 1)
		p.EvalSha(ctx, regSHA, k, 1)
	})
	r.checkBatch(t, "EVALSHAs", batchWant{name: "PIPELINE EVALSHA", size: 2, children: []string{"EVALSHA reg", "EVALSHA reg"}})
	tx(func(p redis.Pipeliner) {
		p.Eval(ctx, bigIncr, k, 1)
		p.Eval(ctx, bigIncr, k, 1)
	})
	r.checkBatch(t, "a transaction of EVALs", batchWant{name: "MULTI EVAL", size: 2, children: []string{evalN, evalN}})
	tx(func(p redis.Pipeliner) {
		p.Eval(ctx, bigIncr, k, 1)
		p.Incr(ctx, "naming:other")
	})
	r.checkBatch(t, "a transaction of EVAL and INCR", batchWant{name: "MULTI", size: 2, children: []string{evalN}})
}
