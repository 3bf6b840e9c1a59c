package tracing_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// nameCounter is a span processor that keeps no span: it counts ended
// spans by name, so that memory measured around it is the SDK's and the
// hook's, not the spans'.
type nameCounter struct {
	mu    sync.Mutex
	names map[string]int
	total int
}

func (c *nameCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *nameCounter) OnEnd(s sdktrace.ReadOnlySpan) {
	c.mu.Lock()
	c.names[s.Name()]++
	c.total++
	c.mu.Unlock()
}
func (c *nameCounter) Shutdown(context.Context) error   { return nil }
func (c *nameCounter) ForceFlush(context.Context) error { return nil }

// fakeClient is a client whose commands the Fake answers (it never
// dials), with h installed before it.
func fakeClient(t testing.TB, f *testkit.Fake, h *scripthook.Hook) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, h.Install(c))
	c.AddHook(f)
	return c
}

// README: "a program that builds a million distinct scripts makes at most
// 100 + (registered) + 1 values". 100,000 distinct scripts, each called
// twice in a row (so each proves hot) by four goroutines, and two
// registered scripts, through the real
// SDK (a cumulative ManualReader, a processor that keeps no span): the
// duration metric has exactly 100 + 2 + 1 series and the spans exactly as
// many names (the first 100 scripts to prove hot keep their SHA1, every
// other one is _OTHER). The heap, measured after GC once the first 10,000
// scripts have run and again after all 100,000 with everything still
// alive, grows by less than 4 MB: nothing, in the hook or the SDK, keeps
// anything per script (one byte per script would be 90 KB, a SHA1 string
// per script about 5 MB). The Fake answers at the hook level (a real
// server would be the bottleneck); its own counters are reset as it goes.
//
// The heap is the process's, so the test runs alone in a child process
// (the test binary again, with cardinalityChild set): other tests running
// in parallel would move it.
func TestCardinalityHundredThousandScripts(t *testing.T) {
	if os.Getenv(cardinalityChild) == "1" {
		cardinalityHundredThousand(t)
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestCardinalityHundredThousandScripts$", "-test.v", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), cardinalityChild+"=1")
	out, err := cmd.CombinedOutput()
	t.Logf("the child process:\n%s", out)
	require.NoError(t, err, "the child failed")
	assert.Regexp(t, `(?m)^--- PASS: TestCardinalityHundredThousandScripts `, string(out), "the test passed in the child")
}

// cardinalityChild marks the child process of
// TestCardinalityHundredThousandScripts.
const cardinalityChild = "SCRIPTHOOK_TRACING_CARDINALITY_CHILD"

func cardinalityHundredThousand(t *testing.T) {
	const scripts, mark, regs = 100_000, 10_000, 2
	ctx := context.Background()
	counter := &nameCounter{names: map[string]int{}}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(counter))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = tp.Shutdown(ctx); _ = mp.Shutdown(ctx) })
	h := scripthook.New(scripthook.WithTracerProvider(tp), scripthook.WithMeterProvider(mp))
	regSrc := func(i int) string { return fmt.Sprintf("-- registered %d\nreturn redis.call('INCR', KEYS[1])", i) }
	for i := 0; i < regs; i++ {
		h.Register(fmt.Sprint("reg", i), regSrc(i))
	}
	f := &testkit.Fake{EvictAt: 500}
	rdb := fakeClient(t, f, h)
	keys := []string{"card:k"}
	// run calls scripts [from, to) on workers goroutines, each script twice
	// in a row, and a registered script after every 100th.
	run := func(from, to int) {
		const workers = 4
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := from + w; i < to; i += workers {
					src := fmt.Sprintf("-- distinct script %d, long enough to go by SHA1\nreturn redis.call('INCR', KEYS[1])", i)
					for n := 0; n < 2; n++ {
						if err := rdb.Eval(ctx, src, keys).Err(); err != nil {
							errs <- err
							return
						}
					}
					if i%100 == 0 {
						if err := rdb.Eval(ctx, regSrc(i/100%regs), keys).Err(); err != nil {
							errs <- err
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
	for from := 0; from < mark; from += 1000 {
		run(from, from+1000)
		f.Reset() // the Fake counts runs per body; that is not ours to measure
	}
	before := testkit.HeapAfterGC()
	for from := mark; from < scripts; from += 1000 {
		run(from, from+1000)
		f.Reset()
	}
	after := testkit.HeapAfterGC()
	growth := int64(after) - int64(before)
	t.Logf("heap after GC: %d KB at %d scripts, %d KB at %d: %+d KB", before>>10, mark, after>>10, scripts, growth>>10)
	assert.Less(t, growth, int64(4<<20), "the heap grows with the number of distinct scripts")

	var rm metricdata.ResourceMetrics
	require.NoError(t, reader.Collect(ctx, &rm))
	series := map[string]bool{}
	procs := map[string]bool{}
	var calls uint64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != durationMx {
				continue
			}
			for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
				series[dp.Attributes.Encoded(attribute.DefaultEncoder())] = true
				v, _ := dp.Attributes.Value(kProc)
				procs[v.AsString()] = true
				calls += dp.Count
			}
		}
	}
	want := scripthook.DefaultMaxScriptNames + regs + 1
	assert.Equal(t, want, len(series), "series of %s", durationMx)
	assert.Equal(t, want, len(procs), "db.stored_procedure.name values")
	assert.True(t, procs[scripthook.OtherName] && procs["reg0"] && procs["reg1"], "the registered names and _OTHER")
	assert.Equal(t, uint64(2*scripts+scripts/100), calls, "every call recorded")

	counter.mu.Lock()
	defer counter.mu.Unlock()
	assert.Equal(t, want, len(counter.names), "distinct span names")
	assert.Equal(t, 2*scripts+scripts/100, counter.total, "every call traced")
	assert.Equal(t, 2*scripts-scripthook.DefaultMaxScriptNames, counter.names["EVAL"], "every call named _OTHER is just EVAL")
	runtime.KeepAlive(h)
	runtime.KeepAlive(rdb)
}

// The same bound on a real server, with the SDK's span recorder and a
// manual reader: 2,000 distinct scripts, each called twice, with
// WithMaxScriptNames(10) and one registered script: exactly 10 + 1 + 1
// span names and series.
func TestCardinalityRealServer(t *testing.T) {
	t.Parallel()
	const scripts, bound = 2000, 10
	r := newRig(t, func(h *scripthook.Hook) { h.Register("reg", regBody) }, scripthook.WithMaxScriptNames(bound))
	ctx := t.Context()
	keys := []string{"card:real"}
	for i := 0; i < scripts; i++ {
		src := fmt.Sprintf("-- distinct script %d on a real server\nreturn redis.call('INCR', KEYS[1])", i)
		for n := 0; n < 2; n++ {
			require.NoError(t, r.Hooked.Eval(ctx, src, keys).Err())
		}
	}
	require.NoError(t, r.Hooked.Eval(ctx, regBody, keys, 1).Err())
	spanNames := map[string]bool{}
	spans := r.tl.take()
	for _, s := range spans {
		spanNames[s.Name()] = true
	}
	assert.Len(t, spans, 2*scripts+1)
	assert.Len(t, spanNames, bound+2, "span names")
	procs := map[string]bool{}
	for _, p := range r.tl.points(t) {
		procs[p.Attrs[kProc].(string)] = true
	}
	assert.Len(t, procs, bound+2, "series")
	assert.True(t, spanNames["EVAL"] && spanNames["EVAL reg"])
}
