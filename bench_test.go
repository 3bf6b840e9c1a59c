package scripthook

// The hook's own cost per call and per batch, over a next that does
// nothing: what remains is scripthook's work. Against a real server see
// test/integration/bench_test.go; against other libraries, the bench/
// module.
//
//	go test -run XXX -bench . -benchmem .

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/testkit"
)

// nopNext is a server that answers every single command with success and
// no value: the rest of the chain costs nothing.
func nopNext(context.Context, redis.Cmder) error { return nil }

// nopBatchNext is the same for batches, except that it answers the hook's
// own SCRIPT LOAD with the script's SHA1, as a server does, so that warm
// batches stay warm. It allocates nothing.
func nopBatchNext(_ context.Context, cmds []redis.Cmder) error {
	for _, c := range cmds {
		if l, ok := c.(*loadCmd); ok {
			l.SetVal(l.s.hex())
		}
	}
	return nil
}

// benchBody is a script of exactly size bytes (a comment, then one INCR).
func benchBody(size int) string {
	const tail = "return redis.call('INCR', KEYS[1])"
	return strings.Repeat("-", size-len(tail)-1) + "\n" + tail
}

// warmCall makes cmd's script present on the hook's server: over nopNext
// the first EVAL goes as written and succeeds, so later calls go by SHA1.
// It fails b if they do not.
func warmCall(tb testing.TB, h *Hook, p redis.ProcessHook, cmd redis.Cmder) {
	tb.Helper()
	ctx := context.Background()
	_ = p(ctx, cmd)
	before := h.Stats().Rewritten
	_ = p(ctx, cmd)
	if h.Stats().Rewritten != before+1 {
		tb.Fatalf("the warm call was not sent by SHA1: %+v", h.Stats())
	}
}

// warmBatch runs cmds through h twice with testkit.Fake as the server, so
// that the hook has learned the server's capabilities (the first batch's
// probes) and what it holds: the steady state of a long-lived client.
func warmBatch(tb testing.TB, h *Hook, cmds []redis.Cmder) {
	tb.Helper()
	f := &testkit.Fake{}
	p := h.ProcessPipelineHook(f.ProcessPipeline)
	for i := 0; i < 2; i++ {
		if err := p(context.Background(), cmds); err != nil {
			tb.Fatal(err)
		}
	}
	if h.Stats().Rewritten == 0 {
		tb.Fatalf("the warm batch sent nothing by SHA1: %+v", h.Stats())
	}
}

// evalBatch is n EVAL commands of one body with distinct arguments.
func evalBatch(body string, n int) []redis.Cmder {
	cmds := make([]redis.Cmder, n)
	for i := range cmds {
		cmds[i] = redis.NewCmd(context.Background(), "eval", body, 1, "key", i)
	}
	return cmds
}

// BenchmarkNonScript is a command that is not a script, through the hook:
// GET and SET stop at quickOther (length, first letter), EXPIRE (a name
// starting with 'e') at classify's name comparison.
func BenchmarkNonScript(b *testing.B) {
	p := New(WithTracing(false)).ProcessHook(nopNext)
	ctx := context.Background()
	for _, cmd := range []redis.Cmder{
		redis.NewStringCmd(ctx, "get", "key"),
		redis.NewStatusCmd(ctx, "set", "key", "value"),
		redis.NewBoolCmd(ctx, "expire", "key", 10),
	} {
		b.Run(cmd.Name(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = p(ctx, cmd)
			}
		})
	}
}

// BenchmarkWarmEval is an EVAL of a script the server has, sent as
// EVALSHA. Its cost grows with the body only by the identity proof (a
// memory compare, see BenchmarkCacheHit), never by hashing.
func BenchmarkWarmEval(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"200B", 200}, {"4KB", 4 << 10}, {"32KB", 32 << 10}} {
		b.Run(size.name, func(b *testing.B) {
			for _, tr := range []struct {
				name string
				opts []Option
			}{
				{"tracing-off", []Option{WithTracing(false)}},
				{"global-noop-provider", nil},
			} {
				b.Run(tr.name, func(b *testing.B) {
					h := New(tr.opts...)
					p := h.ProcessHook(nopNext)
					ctx := context.Background()
					cmd := redis.NewCmd(ctx, "eval", benchBody(size.n), 1, "key", "arg")
					warmCall(b, h, p, cmd)
					b.ReportAllocs()
					for b.Loop() {
						_ = p(ctx, cmd)
					}
				})
			}
		})
	}
}

// BenchmarkWarmEvalParallel is the same from many goroutines at once: a
// hit takes only read locks and sets the clock bit only when it is clear.
func BenchmarkWarmEvalParallel(b *testing.B) {
	h := New(WithTracing(false))
	p := h.ProcessHook(nopNext)
	ctx := context.Background()
	cmd := redis.NewCmd(ctx, "eval", benchBody(32<<10), 1, "key", "arg")
	warmCall(b, h, p, cmd)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = p(ctx, cmd)
		}
	})
}

// BenchmarkPipeline1000 is a warm 1000-call pipeline of one 4 KB script:
// the hook's own cost per batch (strict: one SCRIPT LOAD and 1000 EVALSHA;
// optimistic: 1000 EVALSHA).
func BenchmarkPipeline1000(b *testing.B) {
	for _, mode := range []PipelineMode{PipelineStrict, PipelineOptimistic} {
		b.Run(mode.String(), func(b *testing.B) {
			h := New(WithTracing(false), WithPipelineMode(mode))
			cmds := evalBatch(benchBody(4<<10), 1000)
			warmBatch(b, h, cmds)
			p := h.ProcessPipelineHook(nopBatchNext)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				_ = p(ctx, cmds)
			}
		})
	}
}
