package scripthook_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// traced is a client with the hook recording spans and metrics in memory.
type traced struct {
	*rig
	spans  *tracetest.SpanRecorder
	tp     *sdktrace.TracerProvider
	reader *sdkmetric.ManualReader
}

func newTraced(t *testing.T, srv *redistest.Server, opts ...scripthook.Option) *traced {
	t.Helper()
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) })
	r := rigOn(t, srv, &redis.Options{}, append([]scripthook.Option{
		scripthook.WithTracing(true), scripthook.WithTracerProvider(tp), scripthook.WithMeterProvider(mp),
	}, opts...)...)
	// Install (rather than AddHook) also gives db.namespace.
	r.rdb = redis.NewClient(&redis.Options{Addr: srv.Addr, DB: 3})
	t.Cleanup(func() { _ = r.rdb.Close() })
	require.NoError(t, r.h.Install(r.rdb))
	return &traced{rig: r, spans: spans, tp: tp, reader: reader}
}

func attrsOf(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func TestScriptSpans(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTraced(t, srv)
	ctx, parent := tr.tp.Tracer("test").Start(t.Context(), "parent")
	sha := tr.h.Register("counter", incrScript)
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, "a").Err())
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, "b").Err())
	require.NoError(t, tr.rdb.Get(ctx, "k").Err()) // not a script: no span
	parent.End()

	ended := tr.spans.Ended()
	require.Len(t, ended, 3)
	first, second := ended[0], ended[1]
	for _, s := range []sdktrace.ReadOnlySpan{first, second} {
		assert.Equal(t, "EVALSHA counter", s.Name())
		assert.Equal(t, trace.SpanKindClient, s.SpanKind())
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent().SpanID(), "child of the caller's span")
		assert.Equal(t, codes.Unset, s.Status().Code)
		a := attrsOf(s)
		assert.Equal(t, "redis", a["db.system.name"].AsString())
		assert.Equal(t, "counter", a["db.stored_procedure.name"].AsString())
		assert.Equal(t, "3", a["db.namespace"].AsString())
		assert.Equal(t, "127.0.0.1", a["server.address"].AsString())
		assert.Equal(t, int64(srv.Port), a["server.port"].AsInt64())
		assert.Equal(t, sha, a["scripthook.sha1"].AsString())
		assert.Equal(t, int64(1), a["scripthook.keys"].AsInt64())
		assert.False(t, a["scripthook.reloaded"].AsBool())
		_, hasQuery := a["db.query.text"]
		assert.False(t, hasQuery, "no query text by default")
	}
	assert.Equal(t, "EVAL", attrsOf(first)["db.operation.name"].AsString(), "the first call sent the body")
	assert.True(t, attrsOf(first)["scripthook.body_sent"].AsBool())
	assert.False(t, attrsOf(first)["scripthook.rewritten"].AsBool())
	assert.Equal(t, "EVALSHA", attrsOf(second)["db.operation.name"].AsString())
	assert.True(t, attrsOf(second)["scripthook.rewritten"].AsBool())
}

// A repaired NOSCRIPT is one span covering the retry, not an error, with an
// event saying why and how.
func TestReloadEvent(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTraced(t, srv)
	ctx := t.Context()
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, "a").Err())
	tr.flushScripts(t)
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, "b").Err())
	ended := tr.spans.Ended()
	require.Len(t, ended, 2)
	s := ended[1]
	assert.Equal(t, codes.Unset, s.Status().Code)
	a := attrsOf(s)
	assert.True(t, a["scripthook.reloaded"].AsBool())
	assert.Equal(t, "EVAL", a["db.operation.name"].AsString(), "the command finally sent")
	require.Len(t, s.Events(), 1)
	ev := s.Events()[0]
	assert.Equal(t, "scripthook.reload", ev.Name)
	assert.Contains(t, ev.Attributes, attribute.String("scripthook.reload.reason", "NOSCRIPT"))
	assert.Contains(t, ev.Attributes, attribute.String("scripthook.reload.how", "EVAL"))
}

func TestSpanErrors(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTraced(t, srv)
	ctx := t.Context()
	require.NoError(t, tr.admin.Do(ctx, "select", 3).Err())
	cases := []struct {
		name, body string
		code       string // "" means not an error
	}{
		{"nil is not an error", "return nil", ""},
		{"wrongtype", "redis.call('HSET', KEYS[1], 'f', 'v') return redis.call('GET', KEYS[1])", "WRONGTYPE"},
		{"compile", "return +", "ERR"},
		{"custom", "return redis.error_reply('MYERR nope')", "MYERR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr.spans.Reset()
			_ = tr.rdb.Eval(ctx, tc.body, []string{"h"}).Err()
			ended := tr.spans.Ended()
			require.Len(t, ended, 1)
			s := ended[0]
			a := attrsOf(s)
			if tc.code == "" {
				assert.Equal(t, codes.Unset, s.Status().Code)
				_, has := a["error.type"]
				assert.False(t, has)
				return
			}
			assert.Equal(t, codes.Error, s.Status().Code)
			assert.NotEmpty(t, s.Status().Description)
			assert.Equal(t, tc.code, a["db.response.status_code"].AsString())
			assert.Equal(t, tc.code, a["error.type"].AsString())
			assert.Empty(t, s.Events(), "no RecordError")
		})
	}
	t.Run("network", func(t *testing.T) {
		tr.spans.Reset()
		srv.Stop()
		require.Error(t, tr.rdb.Eval(ctx, "return 1", nil).Err())
		s := tr.spans.Ended()[0]
		assert.Equal(t, codes.Error, s.Status().Code)
		assert.NotEmpty(t, attrsOf(s)["error.type"].AsString())
	})
}

func TestBatchSpans(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTraced(t, srv, scripthook.WithMaxChildSpans(2))
	ctx := t.Context()
	_, err := tr.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, incrScript, []string{"k"}, 1)
		p.Set(ctx, "x", 1, 0)
		p.Eval(ctx, incrScript, []string{"k"}, 2)
		p.Eval(ctx, echoScript, nil, 3)
		return nil
	})
	require.NoError(t, err)
	ended := tr.spans.Ended()
	require.Len(t, ended, 3, "two children (the limit) and the batch")
	batch := ended[2]
	assert.Equal(t, "PIPELINE", batch.Name())
	a := attrsOf(batch)
	assert.Equal(t, "PIPELINE", a["db.operation.name"].AsString())
	assert.Equal(t, int64(4), a["db.operation.batch.size"].AsInt64())
	assert.Equal(t, int64(3), a["scripthook.batch.scripts"].AsInt64())
	assert.Equal(t, int64(2), a["scripthook.batch.bodies_sent"].AsInt64())
	assert.Equal(t, int64(1), a["scripthook.batch.rewritten"].AsInt64())
	assert.Equal(t, int64(1), a["scripthook.batch.scripts_without_span"].AsInt64())
	for _, child := range ended[:2] {
		assert.Equal(t, batch.SpanContext().SpanID(), child.Parent().SpanID())
	}
	assert.Equal(t, "EVAL "+redis.NewScript(incrScript).Hash(), ended[0].Name())
	assert.Equal(t, "EVALSHA "+redis.NewScript(incrScript).Hash(), ended[1].Name())

	tr.spans.Reset()
	_, err = tr.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, incrScript, []string{"k"}, 1)
		p.Eval(ctx, incrScript, []string{"k"}, 2)
		return nil
	})
	require.NoError(t, err)
	ended = tr.spans.Ended()
	tx := ended[len(ended)-1]
	assert.Equal(t, "MULTI EVALSHA", tx.Name())
	assert.Equal(t, int64(2), attrsOf(tx)["db.operation.batch.size"].AsInt64())

	tr.spans.Reset()
	_, err = tr.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "a", 1, 0)
		return nil
	})
	require.NoError(t, err)
	assert.Empty(t, tr.spans.Ended(), "batches without scripts are redisotel's job")
}

// No key, argument or body appears in anything exported, unless asked; even
// then only a sanitized query text.
func TestPrivacy(t *testing.T) {
	const secret = "s3cr3t-value-do-not-leak"
	srv := redistest.Start(t)
	body := "-- " + secret + "\nreturn redis.call('SET', KEYS[1], ARGV[1])"
	for _, queryText := range []bool{false, true} {
		tr := newTraced(t, srv, scripthook.WithQueryText(queryText))
		ctx := t.Context()
		keys := []string{"key-" + secret}
		require.NoError(t, tr.rdb.Eval(ctx, body, keys, secret).Err())
		tr.flushScripts(t)
		require.NoError(t, tr.rdb.Eval(ctx, body, keys, secret).Err())
		_, err := tr.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Eval(ctx, body, keys, secret)
			p.Eval(ctx, "return redis.error_reply('ERR failed')", keys, secret)
			return nil
		})
		require.Error(t, err)
		var rm metricdata.ResourceMetrics
		require.NoError(t, tr.reader.Collect(ctx, &rm))
		exported := dumpSpans(t, tr.spans.Ended()) + dumpJSON(t, rm)
		assert.NotContains(t, exported, secret)
		assert.NotContains(t, exported, "redis.call('SET'")
		if queryText {
			// The command as finally sent: these calls all carried the body.
			assert.Contains(t, exported, `"EVAL `+redis.NewScript(body).Hash()+` 1 ? ?"`)
		} else {
			assert.NotContains(t, exported, "db.query.text")
		}
	}
}

func dumpSpans(t *testing.T, spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.Name())
		b.WriteString(dumpJSON(t, s.Attributes()))
		b.WriteString(dumpJSON(t, s.Events()))
		b.WriteString(dumpJSON(t, s.Status()))
		b.WriteString(dumpJSON(t, s.Links()))
	}
	return b.String()
}

func dumpJSON(t *testing.T, v any) string {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// Two clients in one process keep their own options.
func TestPerClientOptions(t *testing.T) {
	srv := redistest.Start(t)
	tracingOnly := newTraced(t, srv, scripthook.WithRewrite(false))
	ctx := t.Context()

	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	rewriting := redis.NewClient(&redis.Options{Addr: srv.Addr})
	defer rewriting.Close()
	rewriting.AddHook(scripthook.New(scripthook.WithTracing(false), scripthook.WithTracerProvider(tp)))

	for i := 0; i < 2; i++ {
		require.NoError(t, tracingOnly.rdb.Eval(ctx, incrScript, []string{"k"}, i).Err())
		require.NoError(t, rewriting.Eval(ctx, incrScript, []string{"k"}, i).Err())
	}
	assert.Empty(t, recorder.Ended())
	ended := tracingOnly.spans.Ended()
	require.Len(t, ended, 2)
	for _, s := range ended {
		assert.True(t, strings.HasPrefix(s.Name(), "EVAL "), s.Name())
		assert.Equal(t, "EVAL", attrsOf(s)["db.operation.name"].AsString())
	}
	assert.Equal(t, int64(0), tracingOnly.h.Stats().Rewritten)
}

func TestMetrics(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTraced(t, srv)
	ctx := t.Context()
	for i := 0; i < 5; i++ {
		require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, i).Err())
	}
	tr.flushScripts(t)
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, "x").Err())
	_, err := tr.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, incrScript, []string{"k"}, 1)
		return nil
	})
	require.NoError(t, err)

	var rm metricdata.ResourceMetrics
	require.NoError(t, tr.reader.Collect(ctx, &rm))
	found := map[string]metricdata.Aggregation{}
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, scripthook.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			found[m.Name] = m.Data
		}
	}
	hist, ok := found["db.client.operation.duration"].(metricdata.Histogram[float64])
	require.True(t, ok)
	var count uint64
	ops := map[string]bool{}
	for _, dp := range hist.DataPoints {
		count += dp.Count
		v, _ := dp.Attributes.Value("db.operation.name")
		ops[v.AsString()] = true
	}
	assert.Equal(t, uint64(7), count, "six script runs and one batch")
	assert.True(t, ops["EVALSHA"] && ops["EVAL"] && ops["PIPELINE EVALSHA"], "%v", ops)
	sum := func(name string) int64 {
		s, ok := found[name].(metricdata.Sum[int64])
		require.True(t, ok, name)
		return s.DataPoints[0].Value
	}
	assert.Equal(t, int64(1), sum("scripthook.noscript.repaired"))
	assert.Equal(t, tr.h.Stats().BodiesSent, sum("scripthook.bodies.sent"))
	assert.Equal(t, tr.h.Stats().BytesSaved, sum("scripthook.request.bytes_saved"))
}

// innerRecorder is a hook added after scripthook, where README puts
// redisotel: it notes each command it sees and the span its context
// carries.
type innerRecorder struct {
	mu    sync.Mutex
	names []string
	spans []trace.SpanID
}

func (r *innerRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *innerRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (r *innerRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !strings.HasPrefix(cmd.Name(), "eval") {
			return next(ctx, cmd) // connection set-up (HELLO, CLIENT SETINFO) passes hooks too
		}
		r.mu.Lock()
		r.names = append(r.names, cmd.Name())
		r.spans = append(r.spans, trace.SpanFromContext(ctx).SpanContext().SpanID())
		r.mu.Unlock()
		return next(ctx, cmd)
	}
}

// A hook after scripthook sees what crosses the wire (EVALSHA; after a
// flush, the failed EVALSHA and the reloading EVAL as calls of their own),
// each under scripthook's span for that script run.
func TestInnerHookSeesTheWire(t *testing.T) {
	srv := redistest.Start(t)
	tr := newTraced(t, srv)
	inner := &innerRecorder{}
	tr.rdb.AddHook(inner)
	ctx := t.Context()
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, 1).Err())
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, 2).Err())
	tr.flushScripts(t)
	require.NoError(t, tr.rdb.Eval(ctx, incrScript, []string{"k"}, 3).Err())

	assert.Equal(t, []string{"eval", "evalsha", "evalsha", "eval"}, inner.names)
	ended := tr.spans.Ended()
	require.Len(t, ended, 3)
	want := []trace.SpanID{
		ended[0].SpanContext().SpanID(),
		ended[1].SpanContext().SpanID(),
		ended[2].SpanContext().SpanID(), ended[2].SpanContext().SpanID(),
	}
	assert.Equal(t, want, inner.spans, "each command under its script run's span")
}
