package scripthook

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"go.opentelemetry.io/otel/trace/noop"
)

// Tracing that cannot record costs no allocation on the script path: with
// tracing off, with a no-op provider, and with OpenTelemetry's default
// global provider while no SDK is installed.
func TestTracingThatCannotRecordAllocatesNothing(t *testing.T) {
	allocs := func(opts ...Option) float64 {
		h := New(opts...)
		p := h.ProcessHook(nopNext)
		ctx := context.Background()
		cmd := redis.NewCmd(ctx, "eval", benchBody(32<<10), 1, "key", "arg")
		sc, _ := parseScript(cmd.Args())
		h.node.markLoaded(h.sh.cache.forCall(&sc))
		return testing.AllocsPerRun(200, func() { _ = p(ctx, cmd) })
	}
	off := allocs(WithTracing(false))
	assert.Equal(t, 1.0, off, "the rewritten command is the one allocation")
	assert.Equal(t, off, allocs(), "global default provider, no SDK")
	assert.Equal(t, off, allocs(WithTracerProvider(noop.NewTracerProvider())))

	// A non-script command allocates nothing at all.
	p := New().ProcessHook(nopNext)
	cmd := redis.NewStringCmd(context.Background(), "get", "k")
	assert.Zero(t, testing.AllocsPerRun(200, func() { _ = p(context.Background(), cmd) }))
}
