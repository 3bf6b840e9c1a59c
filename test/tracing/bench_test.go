package tracing_test

// The hook's own cost per warm call under each sampling regime, over a next
// that does nothing (the root package's bench_test.go has the rest of the
// micro benchmarks; this one is here because it needs the SDK).
//
//	cd test && go test -run XXX -bench Tracing -benchmem ./tracing

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// BenchmarkTracing is the warm script path under each sampling regime.
func BenchmarkTracing(b *testing.B) {
	sdk := func(s sdktrace.Sampler) scripthook.Option {
		return scripthook.WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(s)))
	}
	for _, r := range []struct {
		name string
		opts []scripthook.Option
	}{
		{"off", []scripthook.Option{scripthook.WithTracing(false)}},
		{"noop-provider", []scripthook.Option{scripthook.WithTracerProvider(noop.NewTracerProvider())}},
		{"never-sample", []scripthook.Option{sdk(sdktrace.NeverSample())}},
		{"always-sample", []scripthook.Option{sdk(sdktrace.AlwaysSample())}},
		{"always-sample-query-text", []scripthook.Option{scripthook.WithQueryText(true), sdk(sdktrace.AlwaysSample())}},
	} {
		b.Run(r.name, func(b *testing.B) {
			h := scripthook.New(r.opts...)
			p := h.ProcessHook(func(context.Context, redis.Cmder) error { return nil })
			ctx := context.Background()
			const tail = "return redis.call('INCR', KEYS[1])"
			cmd := redis.NewCmd(ctx, "eval", strings.Repeat("-", 4<<10-len(tail)-1)+"\n"+tail, 1, "key", "arg")
			_ = p(ctx, cmd) // the first call goes as written; the rest by SHA1
			before := h.Stats().Rewritten
			_ = p(ctx, cmd)
			if h.Stats().Rewritten != before+1 {
				b.Fatalf("the warm call was not sent by SHA1: %+v", h.Stats())
			}
			b.ReportAllocs()
			for b.Loop() {
				_ = p(ctx, cmd)
			}
		})
	}
}
