package tracing_test

import (
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// README: the counters scripthook.noscript.repaired, .noscript.evicted,
// .noscript.passed, scripthook.loads, .bodies.sent, .commands.rewritten and
// .request.bytes_saved are "read from Stats when the SDK collects". After
// a cold call (a body), a warm one (by SHA1), a repair after another
// client's flush (evicted, one SCRIPT LOAD, repaired) and an EVALSHA of an
// unknown SHA1 (its NOSCRIPT passed to the caller), each counter equals its
// Stats field, with exactly the values those calls make, and carries
// db.system.name=redis.
func TestMetricsCounters(t *testing.T) {
	t.Parallel()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(t.Context()) })
	h := scripthook.New(scripthook.WithMeterProvider(mp), scripthook.WithTracing(false))
	r := testkit.RigOn(t, redistest.Start(t), &redis.Options{MaxRetries: -1}, nil)
	require.NoError(t, h.Install(r.Hooked))
	ctx := t.Context()
	k := []string{"metrics:k"}
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
	r.FlushScripts(t)
	require.NoError(t, r.Hooked.Eval(ctx, incrBody, k, 1).Err())
	require.Error(t, r.Hooked.EvalSha(ctx, testkit.SHA1("return 'nobody loaded this'"), nil).Err())
	// A registered library: preloaded before its first FCALL, loaded again
	// after another client's FUNCTION FLUSH, the call repaired.
	_, err := h.RegisterLibrary("#!lua name=metricslib\nredis.register_function('metrics_f', function() return 7 end)")
	require.NoError(t, err)
	require.NoError(t, r.Hooked.FCall(ctx, "metrics_f", nil).Err())
	require.NoError(t, r.Plain.FunctionFlush(ctx).Err())
	require.Equal(t, int64(7), r.Hooked.FCall(ctx, "metrics_f", nil).Val())

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	got := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		assert.Equal(t, scripthook.ScopeName, sm.Scope.Name)
		for _, m := range sm.Metrics {
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			assert.True(t, sum.IsMonotonic, "%s is a counter", m.Name)
			require.Len(t, sum.DataPoints, 1, m.Name)
			assert.Equal(t, map[string]any{kSystem: "redis"}, kvMap(sum.DataPoints[0].Attributes.ToSlice()), m.Name)
			got[m.Name] = sum.DataPoints[0].Value
		}
	}
	st := h.Stats()
	assert.Equal(t, map[string]int64{
		"scripthook.noscript.repaired":   st.NoScriptRepaired,
		"scripthook.noscript.evicted":    st.Evicted,
		"scripthook.noscript.passed":     st.NoScriptPassed,
		"scripthook.loads":               st.Loads,
		"scripthook.bodies.sent":         st.BodiesSent,
		"scripthook.commands.rewritten":  st.Rewritten,
		"scripthook.request.bytes_saved": st.BytesSaved,
		"scripthook.function.loads":      st.FunctionLoads,
		"scripthook.function.repaired":   st.FunctionRepaired,
		"scripthook.function.passed":     st.FunctionNotFoundPassed,
	}, got, "the counters are Stats")
	assert.Equal(t, scripthook.Stats{
		NoScriptRepaired: 1, Evicted: 1, NoScriptPassed: 1, Loads: 1,
		BodiesSent: 4, // the cold EVAL, the repair's SCRIPT LOAD, two FUNCTION LOADs
		Rewritten:  3, // the warm call, the repair's EVALSHA that met NOSCRIPT and the one after the load
		BytesSaved: st.BytesSaved, Scripts: 1,
		FunctionLoads: 2, FunctionRepaired: 1,
	}, st)
	assert.Positive(t, st.BytesSaved)
}

// WithTracing(false) starts no span whatever the provider, and the
// duration metric is still recorded (README, Options: "Metrics are decided
// by the meter provider alone"). A sampler that never samples records no
// span either, and the metric does not depend on it.
func TestMetricsWithoutSpans(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, c := range []struct {
		what string
		opt  func(tp *sdktrace.TracerProvider) []scripthook.Option
		smp  sdktrace.Sampler
	}{
		{"WithTracing(false)", func(tp *sdktrace.TracerProvider) []scripthook.Option {
			return []scripthook.Option{scripthook.WithTracerProvider(tp), scripthook.WithTracing(false)}
		}, sdktrace.AlwaysSample()},
		{"a sampler that never samples", func(tp *sdktrace.TracerProvider) []scripthook.Option {
			return []scripthook.Option{scripthook.WithTracerProvider(tp)}
		}, sdktrace.NeverSample()},
	} {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(c.smp), sdktrace.WithSpanProcessor(rec))
		tl := newTel(t)
		h := scripthook.New(append(c.opt(tp), scripthook.WithMeterProvider(tl.mp))...)
		rdb := testkit.Client(t, srv, &redis.Options{MaxRetries: -1})
		require.NoError(t, h.Install(rdb))
		ctx := t.Context()
		for i := 0; i < 2; i++ {
			require.NoError(t, rdb.Eval(ctx, incrBody, []string{"metrics:nospan"}, 1).Err())
		}
		_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Eval(ctx, incrBody, []string{"metrics:nospan"}, 1)
			return nil
		})
		require.NoError(t, err)
		assert.Empty(t, rec.Started(), "%s: no span", c.what)
		var ops []string
		for _, p := range tl.points(t) {
			ops = append(ops, p.Attrs[kOp].(string))
		}
		assert.ElementsMatch(t, []string{"EVAL", "EVAL", "PIPELINE EVAL"}, ops, "%s: the durations are recorded", c.what)
		_ = tp.Shutdown(ctx)
	}
}
