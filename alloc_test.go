package scripthook

// Allocations on the warm paths, over a next that allocates nothing (see
// bench_test.go), with telemetry that cannot record: tracing off, the
// global provider before an SDK is installed, and a no-op provider. The
// bounds are what the code does now; a change that adds an allocation to
// the hot path fails here.

import (
	"context"
	"runtime/debug"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/otel/trace/noop"
)

// allocRegimes are the ways telemetry can be present and record nothing.
// None of them may cost an allocation.
var allocRegimes = []struct {
	name string
	opts []Option
}{
	{"tracing off", []Option{WithTracing(false)}},
	{"global provider, no SDK", nil},
	{"no-op provider", []Option{WithTracerProvider(noop.NewTracerProvider())}},
}

// A warm EVAL sent as EVALSHA allocates one thing: the command sent in
// place of the caller's (rewritten, with room for a short command's
// arguments inline). The body's size does not matter. A command that is
// not a script allocates nothing.
func TestAllocWarmCall(t *testing.T) {
	ctx := context.Background()
	for _, r := range allocRegimes {
		t.Run(r.name, func(t *testing.T) {
			for _, size := range []int{200, 32 << 10} {
				h := New(r.opts...)
				p := h.ProcessHook(nopNext)
				cmd := redis.NewCmd(ctx, "eval", benchBody(size), 1, "key", "arg")
				warmCall(t, h, p, cmd)
				before := h.Stats().Rewritten
				allocs := testing.AllocsPerRun(200, func() { _ = p(ctx, cmd) })
				t.Logf("warm EVAL of %d B: %.0f allocs", size, allocs)
				assert.LessOrEqual(t, allocs, 1.0, "only the command sent in place of the caller's")
				assert.Equal(t, before+201, h.Stats().Rewritten, "every call went by SHA1")
			}
			// Longer than the inline room: the arguments get a slice of
			// their own.
			h := New(r.opts...)
			p := h.ProcessHook(nopNext)
			cmd := redis.NewCmd(ctx, "eval", benchBody(200), 8, "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8")
			warmCall(t, h, p, cmd)
			allocs := testing.AllocsPerRun(200, func() { _ = p(ctx, cmd) })
			t.Logf("warm EVAL with 10 arguments: %.0f allocs", allocs)
			assert.LessOrEqual(t, allocs, 2.0, "the command and its argument slice")

			p = New(r.opts...).ProcessHook(nopNext)
			for _, cmd := range []redis.Cmder{
				redis.NewStringCmd(ctx, "get", "k"),
				redis.NewBoolCmd(ctx, "expire", "k", 10),
			} {
				assert.Zero(t, testing.AllocsPerRun(200, func() { _ = p(ctx, cmd) }), cmd.Name())
			}
		})
	}
}

// A warm pipeline of n EVAL of one script costs a fixed number of
// allocations per batch plus at most one per call, measured at two sizes
// to tell the two apart.
//
// Per batch (strict, 10): the outgoing command slice, one slice of
// rewritten commands, one slice for all their arguments, the script's use
// record and the slice of uses, the list of carriers settle walks, and
// the SCRIPT LOAD (its struct, the StringCmd inside and its arguments,
// with the body boxed). Optimistic carries no SCRIPT LOAD: 5.
//
// Per call (1): decide.go's build boxes the body into an interface for
// every rewritten command, also for those it then sends by SHA1, where the
// boxed body is discarded. Only commands sent by body need it; per call
// the cost could be zero.
//
// Under the race detector the compiler keeps fewer values on the stack:
// plan.go's key boxes the SHA1 on the heap for each of the two lookups per
// call (raceAllocs more per call).
//
// A batch of non-script commands, and a batch of one EVAL (sent as written:
// a SCRIPT LOAD would cost more bytes than it saves), allocate almost
// nothing.
func TestAllocWarmPipeline(t *testing.T) {
	ctx := context.Background()
	for _, r := range allocRegimes {
		t.Run(r.name, func(t *testing.T) {
			for _, m := range []struct {
				mode             PipelineMode
				perBatch, perCmd float64
			}{
				{PipelineStrict, 10, 1 + raceAllocs},
				{PipelineOptimistic, 5, 1 + raceAllocs},
			} {
				h := New(append([]Option{WithPipelineMode(m.mode)}, r.opts...)...)
				body := benchBody(4 << 10)
				allocs := map[int]float64{}
				for _, n := range []int{10, 1000} {
					cmds := evalBatch(body, n)
					warmBatch(t, h, cmds)
					p := h.ProcessPipelineHook(nopBatchNext)
					before := h.Stats()
					allocs[n] = testing.AllocsPerRun(50, func() { _ = p(ctx, cmds) })
					after := h.Stats()
					assert.Equal(t, int64(51*n), after.Rewritten-before.Rewritten, "%s n=%d: every call by SHA1", m.mode, n)
					if m.mode == PipelineStrict {
						assert.Equal(t, int64(51), after.Loads-before.Loads, "strict: one SCRIPT LOAD per batch")
					} else {
						assert.Zero(t, after.BodiesSent-before.BodiesSent, "optimistic: no body")
					}
				}
				perCmd := (allocs[1000] - allocs[10]) / 990
				perBatch := allocs[10] - 10*perCmd
				t.Logf("%s warm pipeline: %.0f allocs for 10 calls, %.0f for 1000: %.1f per batch + %.2f per call",
					m.mode, allocs[10], allocs[1000], perBatch, perCmd)
				for n, a := range allocs {
					assert.LessOrEqual(t, a, m.perBatch+1+m.perCmd*float64(n), "%s n=%d", m.mode, n)
				}
			}

			h := New(r.opts...)
			p := h.ProcessPipelineHook(nopBatchNext)
			plain := []redis.Cmder{redis.NewStringCmd(ctx, "get", "k"), redis.NewStatusCmd(ctx, "set", "k", "v")}
			assert.Zero(t, testing.AllocsPerRun(100, func() { _ = p(ctx, plain) }), "a batch without scripts")
			one := evalBatch(benchBody(4<<10), 1)
			f := &testkit.Fake{}
			for i := 0; i < 2; i++ { // learn the server (probes) and the script
				_ = h.ProcessPipelineHook(f.ProcessPipeline)(ctx, one)
			}
			allocs := testing.AllocsPerRun(100, func() { _ = p(ctx, one) })
			t.Logf("a batch of one EVAL: %.0f allocs", allocs)
			assert.LessOrEqual(t, allocs, 2.0+raceAllocs, "the script's use record and the slice of uses")
		})
	}
}

// raceAllocs is how many more allocations per batched call the race
// detector's build makes (see TestAllocWarmPipeline).
var raceAllocs = func() float64 {
	if raceEnabled() {
		return 2
	}
	return 0
}()

// raceEnabled reports whether the test binary was built with -race.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// A warm FCALL of a registered library's function (the server holds it)
// allocates nothing: the command goes as the caller wrote it. Nor does an
// FCALL of a function the hook was not given.
func TestAllocWarmFCall(t *testing.T) {
	ctx := context.Background()
	for _, r := range allocRegimes {
		t.Run(r.name, func(t *testing.T) {
			h := New(r.opts...)
			_, err := h.RegisterLibrary("#!lua name=alloclib\nredis.register_function('allocf', function(keys, args) return 1 end)")
			assert.NoError(t, err)
			p := h.ProcessHook(nopNext)
			cmd := redis.NewCmd(ctx, "fcall", "allocf", 1, "key", "arg")
			_ = p(ctx, cmd) // the first call loads the library
			assert.Equal(t, int64(1), h.Stats().FunctionLoads)
			allocs := testing.AllocsPerRun(200, func() { _ = p(ctx, cmd) })
			t.Logf("warm FCALL: %.0f allocs", allocs)
			assert.Equal(t, 0.0, allocs)
			assert.Equal(t, int64(1), h.Stats().FunctionLoads, "loaded once")

			other := redis.NewCmd(ctx, "fcall", "notregistered", 0)
			allocs = testing.AllocsPerRun(200, func() { _ = p(ctx, other) })
			t.Logf("FCALL of an unregistered function: %.0f allocs", allocs)
			assert.Equal(t, 0.0, allocs)
		})
	}
}
