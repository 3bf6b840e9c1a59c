package tracing_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// boundBody is a distinct script per tag, long enough to go by SHA1.
func boundBody(tag string) string {
	return fmt.Sprintf("-- %s %s\nreturn redis.call('INCR', KEYS[1])", tag, strings.Repeat("x", 300))
}

// The names a Hook gives scripts are bounded: registered names, then at
// most WithMaxScriptNames SHA1s of scripts that proved hot, then OtherName.
// Many distinct scripts, each called twice (so each proves hot), through a
// real SDK: the duration metric's db.stored_procedure.name and the span
// names take at most that many values. (It was in the root package; it is
// here so that the SDK stays out of the library's go.mod.)
func TestNamesBounded(t *testing.T) {
	const maxNames, scripts = 10, 2000
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	h := scripthook.New(scripthook.WithMaxScriptNames(maxNames), scripthook.WithMeterProvider(mp), scripthook.WithTracerProvider(tp))
	h.Register("reg", boundBody("registered"))
	rdb := fakeClient(t, &testkit.Fake{}, h)
	ctx := t.Context()
	require.NoError(t, rdb.Eval(ctx, boundBody("registered"), []string{"k"}).Err())
	for i := 0; i < scripts; i++ {
		src := boundBody(fmt.Sprint("dyn-", i))
		for n := 0; n < 2; n++ {
			require.NoError(t, rdb.Eval(ctx, src, []string{"k"}).Err())
		}
	}

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	names := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "db.client.operation.duration" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				v, _ := dp.Attributes.Value("db.stored_procedure.name")
				names[v.AsString()] = true
			}
		}
	}
	assert.True(t, names["reg"], "the registered name")
	assert.True(t, names[scripthook.OtherName], "everything beyond the bound")
	assert.LessOrEqual(t, len(names), maxNames+2, "registered + bound + OtherName: %d series", len(names))

	spanNames := map[string]bool{}
	for _, s := range rec.Ended() {
		spanNames[s.Name()] = true
	}
	assert.LessOrEqual(t, len(spanNames), maxNames+2, "span names: %d", len(spanNames))
	assert.Equal(t, 2*scripts+1, len(rec.Ended()))
}
