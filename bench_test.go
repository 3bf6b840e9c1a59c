package scripthook

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// nopNext is the rest of the chain doing nothing: what remains is the hook's
// own cost.
func nopNext(context.Context, redis.Cmder) error { return nil }

// BenchmarkNonScript is a command that is not a script, through the hook:
// GET stops at the argument count, SET at the name, EXPIRE (a name starting
// with 'e') at the full name comparison.
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

func benchBody(size int) string {
	const tail = "return redis.call('INCR', KEYS[1])"
	return strings.Repeat("-", size-len(tail)-1) + "\n" + tail
}

// BenchmarkWarmEval is an EVAL of a script the node has, rewritten to
// EVALSHA: the cost must not grow with the body's length.
func BenchmarkWarmEval(b *testing.B) {
	for _, size := range []struct {
		name string
		n    int
	}{{"200B", 200}, {"32KB", 32 << 10}} {
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
					body := benchBody(size.n)
					cmd := redis.NewCmd(ctx, "eval", body, 1, "key", "arg")
					sc, _ := parseScript(cmd.Args())
					h.node.markLoaded(h.sh.cache.forCall(&sc))
					b.ReportAllocs()
					for b.Loop() {
						_ = p(ctx, cmd)
					}
				})
			}
		})
	}
}

// BenchmarkWarmEvalParallel is the same from many goroutines at once.
func BenchmarkWarmEvalParallel(b *testing.B) {
	h := New(WithTracing(false))
	p := h.ProcessHook(nopNext)
	ctx := context.Background()
	body := benchBody(32 << 10)
	cmd := redis.NewCmd(ctx, "eval", body, 1, "key", "arg")
	sc, _ := parseScript(cmd.Args())
	h.node.markLoaded(h.sh.cache.forCall(&sc))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_ = p(ctx, cmd)
		}
	})
}

// BenchmarkTracing is the warm script path under each sampling regime.
func BenchmarkTracing(b *testing.B) {
	regimes := []struct {
		name string
		opts []Option
	}{
		{"off", []Option{WithTracing(false)}},
		{"noop-provider", []Option{WithTracerProvider(noop.NewTracerProvider())}},
		{"never-sample", []Option{WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.NeverSample())))}},
		{"always-sample", []Option{WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())))}},
		{"always-sample-query-text", []Option{WithQueryText(true), WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample())))}},
	}
	for _, r := range regimes {
		b.Run(r.name, func(b *testing.B) {
			h := New(r.opts...)
			p := h.ProcessHook(nopNext)
			ctx := context.Background()
			cmd := redis.NewCmd(ctx, "eval", benchBody(4<<10), 1, "key", "arg")
			sc, _ := parseScript(cmd.Args())
			h.node.markLoaded(h.sh.cache.forCall(&sc))
			b.ReportAllocs()
			for b.Loop() {
				_ = p(ctx, cmd)
			}
		})
	}
}

// BenchmarkPipeline1000 is a warm 1000-call pipeline of one script through
// the hook over a do-nothing next: the hook's own cost per batch.
func BenchmarkPipeline1000(b *testing.B) {
	for _, mode := range []PipelineMode{PipelineStrict, PipelineOptimistic} {
		b.Run(mode.String(), func(b *testing.B) {
			h := New(WithTracing(false), WithPipelineMode(mode))
			p := h.ProcessPipelineHook(func(context.Context, []redis.Cmder) error { return nil })
			ctx := context.Background()
			body := benchBody(4 << 10)
			cmds := make([]redis.Cmder, 1000)
			for i := range cmds {
				cmds[i] = redis.NewCmd(ctx, "eval", body, 1, "key", i)
			}
			sc, _ := parseScript(cmds[0].Args())
			h.node.markLoaded(h.sh.cache.forCall(&sc))
			b.ReportAllocs()
			for b.Loop() {
				_ = p(ctx, cmds)
			}
		})
	}
}
