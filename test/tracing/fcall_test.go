package tracing_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// traceLib is the function library the tests load: a writing function, a
// read-only one (no-writes, so FCALL_RO may call it) and one that fails
// with a prefix of its own.
const traceLib = `#!lua name=tracelib
redis.register_function('trace_incr', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)
redis.register_function{function_name='trace_get', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}
redis.register_function('trace_fail', function(keys, args) return redis.error_reply('FN_FAIL from a function') end)
`

// newFuncRig is newRig with traceLib loaded on the server.
func newFuncRig(t *testing.T, opts ...scripthook.Option) *rig {
	t.Helper()
	r := newRig(t, nil, opts...)
	require.NoError(t, r.Admin.FunctionLoad(t.Context(), traceLib).Err())
	return r
}

// fcallAttrs is what a successful function call's span carries at the
// end: a script run's attributes, with the function as
// db.stored_procedure.name and no scripthook.sha1 (README: a function has
// none).
func (r *rig) fcallAttrs(op, fn string, keys int) map[string]any {
	return merge(r.created(op, fn), map[string]any{
		kKeys: int64(keys), kSent: op, kBodySent: false, kRepaired: false,
	})
}

// Single FCALL and FCALL_RO calls get a span each, named "FCALL
// <function>" and "FCALL_RO <function>" from the first call (a function
// name is bounded like a SHA1, not a hot script), with the function as
// db.stored_procedure.name, the attributes of a script run at creation
// (the sampler sees them) and at the end, and the duration series named
// the same way. With WithQueryText the query text is "FCALL <function>
// <numkeys> ? ...".
func TestFCallSingle(t *testing.T) {
	t.Parallel()
	for _, qt := range []bool{false, true} {
		r := newFuncRig(t, scripthook.WithQueryText(qt))
		ctx := t.Context()
		k := []string{"fcall:k"}
		for _, c := range []struct {
			op, fn string
			do     func() error
			query  string
		}{
			{"FCALL", "trace_incr", func() error { return r.Hooked.FCall(ctx, "trace_incr", k, 2).Err() }, "FCALL trace_incr 1 ? ?"},
			{"FCALL", "trace_incr", func() error { return r.Hooked.FCall(ctx, "trace_incr", k, 2).Err() }, "FCALL trace_incr 1 ? ?"},
			{"FCALL_RO", "trace_get", func() error { return r.Hooked.FCallRO(ctx, "trace_get", k).Err() }, "FCALL_RO trace_get 1 ?"},
		} {
			require.NoError(t, c.do(), c.op)
			s := r.tl.one(t)
			assert.Equal(t, c.op+" "+c.fn, s.Name())
			created, ended := r.created(c.op, c.fn), r.fcallAttrs(c.op, c.fn, 1)
			if qt {
				created[kQuery], ended[kQuery] = c.query, c.query
			}
			assert.Equal(t, created, r.tl.created(t, s).Attrs, "%s: at creation", c.op)
			assert.Equal(t, ended, attrs(s), "%s: at the end", c.op)
			assert.Equal(t, status{codes.Unset, ""}, statusOf(s))
			assert.Empty(t, events(s))
			assert.Equal(t, []point{{Attrs: r.metric(c.op, c.fn), Count: 1}}, r.tl.points(t), "%s: the series", c.op)
		}
		v, err := r.Plain.Get(ctx, k[0]).Int()
		require.NoError(t, err)
		assert.Equal(t, 4, v)
	}
}

// A function call's server errors are errors like a script's: status
// Error with an empty description, error.type and db.response.status_code
// the prefix (ERR for a function that does not exist, the function's own
// prefix for its error_reply).
func TestFCallErrors(t *testing.T) {
	t.Parallel()
	r := newFuncRig(t)
	ctx := t.Context()
	for _, c := range []struct{ fn, prefix string }{{"no_such_function", "ERR"}, {"trace_fail", "FN_FAIL"}} {
		require.Error(t, r.Hooked.FCall(ctx, c.fn, nil).Err())
		s := r.tl.one(t)
		assert.Equal(t, "FCALL "+c.fn, s.Name())
		serverError(t, c.fn, s, r.tl.points(t), c.prefix)
	}
}

// "Function names are bounded by the same count": with
// WithMaxScriptNames(2), a hot script takes one name, the first function
// the other, and the second function is _OTHER (span "FCALL"); names once
// given stay.
func TestFCallNamesBounded(t *testing.T) {
	t.Parallel()
	r := newFuncRig(t, scripthook.WithMaxScriptNames(2))
	ctx := t.Context()
	k := []string{"fcall:bound"}
	for i := 0; i < 2; i++ {
		require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
	}
	require.NoError(t, r.Hooked.FCall(ctx, "trace_incr", k, 1).Err())
	require.NoError(t, r.Hooked.FCallRO(ctx, "trace_get", k).Err())
	require.NoError(t, r.Hooked.FCall(ctx, "trace_incr", k, 1).Err())
	assert.Equal(t, []string{"EVAL", "EVAL " + testkit.SHA1(incrBody), "FCALL trace_incr", "FCALL_RO", "FCALL trace_incr"}, names(r.tl.take()))
	procs := map[string]bool{}
	for _, p := range r.tl.points(t) {
		procs[p.Attrs[kProc].(string)] = true
	}
	assert.Equal(t, map[string]bool{scripthook.OtherName: true, testkit.SHA1(incrBody): true, "trace_incr": true}, procs)
}

// README (OpenTelemetry table): a function call is a span "single or as a
// batch child", and a batch child is made "per script or function command
// (up to WithMaxChildSpans), also with WithRewrite(false)", built by the
// same code as a single call. So a pipeline of FCALLs is "PIPELINE FCALL"
// with one child per FCALL carrying exactly a single FCALL's attributes; a
// mixed pipeline and a transaction get theirs too.
func TestFCallBatchChildren(t *testing.T) {
	t.Parallel()
	for _, rewrite := range []bool{true, false} {
		r := newFuncRig(t, scripthook.WithRewrite(rewrite))
		ctx := t.Context()
		k := []string{"fcall:batch"}
		require.NoError(t, r.Hooked.FCall(ctx, "trace_incr", k, 1).Err())
		single := r.tl.one(t)
		r.tl.points(t)

		check := func(what string, cmds func(p redis.Pipeliner), tx bool, want batchWant) []sdktrace.ReadOnlySpan {
			t.Helper()
			var err error
			if tx {
				_, err = r.Hooked.TxPipelined(ctx, func(p redis.Pipeliner) error { cmds(p); return nil })
			} else {
				_, err = r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error { cmds(p); return nil })
			}
			require.NoError(t, err, what)
			spans := r.tl.spans.Ended()
			r.checkBatch(t, what, want)
			return spans
		}
		spans := check("FCALLs", func(p redis.Pipeliner) {
			p.FCall(ctx, "trace_incr", k, 1)
			p.FCall(ctx, "trace_incr", k, 1)
		}, false, batchWant{name: "PIPELINE FCALL", size: 2, children: []string{"FCALL trace_incr", "FCALL trace_incr"}})
		for _, c := range spans {
			if c.Parent().IsValid() {
				assert.Equal(t, attrs(single), attrs(c), "WithRewrite(%v): a child FCALL has a single FCALL's attributes", rewrite)
				assert.Equal(t, r.tl.created(t, single).Attrs, r.tl.created(t, c).Attrs, "WithRewrite(%v): and at creation", rewrite)
			}
		}
		check("FCALL and EVAL", func(p redis.Pipeliner) {
			p.FCallRO(ctx, "trace_get", k)
			p.Eval(ctx, bigIncr, k, 1)
		}, false, batchWant{name: "PIPELINE", size: 2, children: []string{"FCALL_RO trace_get", "EVAL"}})
		check("a transaction of FCALLs", func(p redis.Pipeliner) {
			p.FCall(ctx, "trace_incr", k, 1)
			p.FCallRO(ctx, "trace_get", k)
		}, true, batchWant{name: "MULTI", size: 2, children: []string{"FCALL trace_incr", "FCALL_RO trace_get"}})
	}
}
