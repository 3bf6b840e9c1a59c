package scripthook

import (
	"context"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"
)

// telemetry holds the tracer and instruments of one Hook, built once.
type telemetry struct {
	cfg    *config
	tracer trace.Tracer
}

func newTelemetry(cfg *config) *telemetry {
	t := &telemetry{cfg: cfg}
	if cfg.tracing {
		t.tracer = cfg.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version))
	}
	return t
}

// processScript runs one script command, inside a span when tracing is on.
func (h *Hook) processScript(ctx context.Context, cmd redis.Cmder, sc *scriptCall, next redis.ProcessHook) error {
	var res result
	return h.runScript(ctx, cmd, sc, next, &res)
}

// batchResult is what happened in one batch, for traces and metrics.
type batchResult struct {
	scripts   int
	bodies    int
	rewritten int
	reloads   int
}

// processBatch runs one batch, inside a span when tracing is on.
func (h *Hook) processBatch(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
	var res batchResult
	return h.runBatch(ctx, cmds, next, &res)
}
