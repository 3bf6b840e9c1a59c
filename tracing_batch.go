package scripthook

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// batchResult is what happened in one batch, for traces and metrics.
type batchResult struct {
	scripts   int
	bodies    int
	rewritten int
	reloads   int
	// trace is set when the batch span is recording: it collects the script
	// commands that get a child span.
	trace *batchTrace
}

// batchTrace collects, for a recording batch span, one record per script
// command, up to the configured limit; under a Cluster or Ring the node
// hooks add theirs concurrently, hence the lock.
type batchTrace struct {
	mu      sync.Mutex
	limit   int
	items   []traceItem
	dropped int
}

// traceItem is one script command of a batch, as its child span shows it.
type traceItem struct {
	sent      scriptKind
	script    *script
	sc        callInfo
	rewritten bool
	bodySent  bool
	err       error
}

// collect records the script commands of a planned batch once it is done.
func (bt *batchTrace) collect(items []planned) {
	bt.mu.Lock()
	defer bt.mu.Unlock()
	for i := range items {
		it := &items[i]
		if it.sc.kind == 0 {
			continue
		}
		if len(bt.items) >= bt.limit {
			bt.dropped++
			continue
		}
		ti := traceItem{sent: it.sc.kind, sc: it.sc, err: it.cmd.Err()}
		if it.bs != nil {
			ti.script = it.bs.s
		}
		switch it.how {
		case sentRewrite:
			ti.rewritten = true
			ti.sent = kindEvalSha
			if it.sc.kind.readOnly() {
				ti.sent = kindEvalShaRO
			}
		case sentBody:
			ti.bodySent = true
		case sentSHAAsBody:
			ti.bodySent = true
			ti.sent = kindEval
			if it.sc.kind.readOnly() {
				ti.sent = kindEvalRO
			}
		}
		bt.items = append(bt.items, ti)
	}
}

// processBatch runs one batch, inside a span when tracing is on. Batches
// without a script command are not traced: scripthook traces scripts.
func (h *Hook) processBatch(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook) error {
	if !hasScript(cmds) {
		return next(ctx, cmds)
	}
	tel := h.sh.tel
	var parent *batchResult
	if h.role == roleNode {
		parent, _ = ctx.Value(batchKey{}).(*batchResult)
	}
	timed := h.role != roleNode && tel.metrics.enabled(ctx)
	if !timed && (!tel.tracing() || (h.role == roleNode && parent == nil)) {
		var bres batchResult
		return h.runBatch(ctx, cmds, next, &bres)
	}
	return h.traceBatch(ctx, cmds, next, timed, parent)
}

// traceBatch is processBatch with a batch span and child spans.
func (h *Hook) traceBatch(ctx context.Context, cmds []redis.Cmder, next redis.ProcessPipelineHook, timed bool, parent *batchResult) error {
	tel := h.sh.tel
	start := time.Now()
	user, tx := txBody(cmds)
	if !tx {
		user = cmds
	}
	op := h.batchOpName(tx, user)
	bres := &batchResult{}
	var span trace.Span = noopSpan
	if tel.tracing() {
		ctx, span = tel.tracer.Start(ctx, op, tel.scriptOpts...)
		if span.IsRecording() {
			bres.trace = &batchTrace{limit: h.sh.cfg.maxChildSpans}
			if h.role == roleTop {
				ctx = context.WithValue(ctx, batchKey{}, bres)
			}
		}
	}
	err := h.runBatch(ctx, cmds, next, bres)
	end := time.Now()
	if bt := bres.trace; bt != nil {
		h.childSpans(ctx, bt, start, end)
		bt.mu.Lock()
		attrs := make([]attribute.KeyValue, 0, 12)
		attrs = append(attrs, semconv.DBOperationName(op))
		if len(user) >= 2 {
			attrs = append(attrs, semconv.DBOperationBatchSize(len(user)))
		}
		if h.role != roleTop {
			attrs = append(attrs, h.nodeAttrs(h.node)...)
		}
		attrs = append(attrs,
			attrBatchScripts.Int(bres.scripts),
			attrBatchBodies.Int(bres.bodies),
			attrBatchReloads.Int(bres.reloads),
			attrBatchRewrite.Int(bres.rewritten),
			attrBatchNoSpan.Int(bt.dropped),
		)
		bt.mu.Unlock()
		attrs = appendErrAttrs(attrs, err)
		span.SetAttributes(attrs...)
		setStatus(span, err)
		if parent != nil {
			parent.add(bres)
		}
	}
	span.End(trace.WithTimestamp(end))
	if timed {
		tel.metrics.recordBatch(ctx, end.Sub(start), h, op, h.node, err)
	}
	return err
}

// add merges a node's sub-batch counts into the cluster batch.
func (b *batchResult) add(o *batchResult) {
	b.trace.mu.Lock()
	defer b.trace.mu.Unlock()
	b.scripts += o.scripts
	b.bodies += o.bodies
	b.reloads += o.reloads
	b.rewritten += o.rewritten
}

// childSpans gives each collected script command a span under the batch
// span. A pipeline's commands run inside its one round trip, so each child
// covers the batch's time.
func (h *Hook) childSpans(ctx context.Context, bt *batchTrace, start, end time.Time) {
	bt.mu.Lock()
	items := bt.items
	bt.mu.Unlock()
	tel := h.sh.tel
	for i := range items {
		it := &items[i]
		sha := displaySHA(it.sc.sha) // never a caller's non-SHA1 argument
		display := sha
		if it.script != nil {
			display, sha = it.script.displayName(), it.script.sha
		}
		name := it.sent.String() + " " + display
		_, span := tel.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindClient), trace.WithTimestamp(start))
		attrs := make([]attribute.KeyValue, 0, 12)
		attrs = append(attrs,
			semconv.DBSystemNameRedis,
			semconv.DBOperationName(it.sent.String()),
			semconv.DBStoredProcedureName(display),
			attrSHA1.String(sha),
			attrKeys.Int(int(it.sc.numKeys)),
			attrRewritten.Bool(it.rewritten),
			attrBodySent.Bool(it.bodySent),
		)
		if h.sh.cfg.queryText {
			attrs = append(attrs, semconv.DBQueryText(queryText(it.sent, display, int(it.sc.numKeys), int(it.sc.nargs))))
		}
		attrs = appendErrAttrs(attrs, it.err)
		span.SetAttributes(attrs...)
		setStatus(span, it.err)
		span.End(trace.WithTimestamp(end))
	}
}

// batchOpName is PIPELINE or MULTI, followed by the command when every
// command of the batch is the same (as scripthook sends it), as the
// conventions ask.
func (h *Hook) batchOpName(tx bool, user []redis.Cmder) string {
	base := "PIPELINE"
	if tx {
		base = "MULTI"
	}
	if len(user) == 0 {
		return base
	}
	same := ""
	for i, c := range user {
		name := upperName(c, h.sh.cfg.rewrite)
		if i == 0 {
			same = name
		} else if name != same {
			return base
		}
	}
	return base + " " + same
}

// upperName is a command's name in upper case, script commands as
// scripthook sends them.
func upperName(c redis.Cmder, rewrite bool) string {
	if sc, ok := parseScript(c.Args()); ok {
		k := sc.kind
		if rewrite && k.hasBody() {
			k = kindEvalSha
			if sc.kind.readOnly() {
				k = kindEvalShaRO
			}
		}
		return k.String()
	}
	return toUpper(c.Name())
}

func toUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - 'a' + 'A'
		}
	}
	return string(b)
}
