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

// batchSpan observes one batch. The zero value observes nothing.
type batchSpan struct {
	t     *telemetry
	span  trace.Span
	ctx   context.Context
	start time.Time
	op    string
	size  int
	db    string
	srv   *server
	late  bool // the server's address was not known at the start
	timed bool // the duration metric is recorded
	// parent is the batch of a ClusterClient or Ring this one is a node's
	// part of (it records no metric: the logical batch does).
	parent *batchRun
}

// batchKey carries the recording batch of a Cluster or Ring down to the
// node hooks, whose sub-batch spans go beneath it.
type batchKey struct{}

// startBatch starts observing a batch of a client, or the logical batch of
// a ClusterClient or Ring (srv nil).
func (t *telemetry) startBatch(ctx context.Context, cmds []redis.Cmder, db string, srv *server, br *batchRun) (context.Context, batchSpan) {
	timed := t.metrics.enabled(ctx)
	if !timed && !t.tracing() {
		return ctx, batchSpan{}
	}
	// The start is taken for the metric and for the span alike: a batch's
	// children cover its time.
	bs := batchSpan{t: t, ctx: ctx, db: db, srv: srv, timed: timed, start: time.Now()}
	return bs.open(ctx, cmds, br)
}

// startNodeBatch starts observing a node's part of a traced ClusterClient
// or Ring batch; a node's batch outside one is not observed (the logical
// batch is what the metric and the trace describe).
func (t *telemetry) startNodeBatch(ctx context.Context, cmds []redis.Cmder, db string, srv *server, br *batchRun) (context.Context, batchSpan) {
	parent, _ := ctx.Value(batchKey{}).(*batchRun)
	if parent == nil || !t.tracing() {
		return ctx, batchSpan{}
	}
	return batchSpan{t: t, ctx: ctx, db: db, srv: srv, parent: parent, start: time.Now()}.open(ctx, cmds, br)
}

func (bs batchSpan) open(ctx context.Context, cmds []redis.Cmder, br *batchRun) (context.Context, batchSpan) {
	var user []redis.Cmder
	bs.op, user = batchName(cmds)
	bs.size = len(user)
	if bs.t.tracing() {
		attrs := make([]attribute.KeyValue, 0, 7)
		attrs = append(attrs, semconv.DBSystemNameRedis, semconv.DBOperationName(bs.op))
		if bs.size >= 2 {
			attrs = append(attrs, semconv.DBOperationBatchSize(bs.size))
		}
		attrs = serverAttrs(attrs, bs.db, bs.srv)
		bs.late = bs.srv != nil && !hasAddr(bs.srv)
		var span trace.Span
		ctx, span = bs.t.tracer.Start(ctx, bs.op, bs.t.spanOpts[0], trace.WithAttributes(attrs...))
		if span.IsRecording() {
			bs.span = span
			br.children = &children{limit: bs.t.cfg.maxChildSpans}
		} else {
			span.End()
		}
		bs.ctx = ctx
	}
	return ctx, bs
}

// carry puts a recording logical batch in the context for the node hooks.
func (bs batchSpan) carry(ctx context.Context, br *batchRun) context.Context {
	if bs.span == nil {
		return ctx
	}
	return context.WithValue(ctx, batchKey{}, br)
}

// end finishes observing the batch: its children, its counts, its error.
func (bs batchSpan) end(br *batchRun, err error) {
	if bs.t == nil {
		return
	}
	now := time.Now()
	if bs.span != nil {
		start := bs.start
		if start.IsZero() {
			start = now
		}
		dropped := bs.children(br, start, now)
		attrs := make([]attribute.KeyValue, 0, 8)
		attrs = append(attrs,
			attrBatchScripts.Int(br.scripts),
			attrBatchBodies.Int(br.bodies),
			attrBatchRepaired.Int(br.repaired),
			attrBatchRewrite.Int(br.rewritten),
			attrBatchNoSpan.Int(dropped),
		)
		if bs.late {
			attrs = serverAttrs(attrs, "", bs.srv)
		}
		attrs = errAttrs(attrs, err)
		bs.span.SetAttributes(attrs...)
		setStatus(bs.span, err)
		bs.span.End(trace.WithTimestamp(now))
		if bs.parent != nil {
			bs.parent.merge(br)
		}
	}
	if bs.parent == nil && bs.timed {
		bs.t.metrics.record(bs.ctx, now.Sub(bs.start), bs.op, "", bs.db, bs.srv, err)
	}
}

// children gives each recorded script command a span under the batch span,
// built like a single call's. A pipeline's commands run inside its one round
// trip, so each child covers the batch's time. It returns how many script
// commands got none.
func (bs batchSpan) children(br *batchRun, start, end time.Time) int {
	c := br.children
	if c == nil {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.runs {
		cr := &c.runs[i]
		sp := scriptSpan{t: bs.t, k: cr.k, call: cr.call, s: cr.s, db: bs.db, srv: bs.srv}
		sc := scriptCall{kind: cr.k, sha: cr.call.arg, function: cr.call.arg}
		sp.name = bs.t.procName(&sc, cr.s)
		attrs := sp.startAttrs(make([]attribute.KeyValue, 0, 16))
		_, span := bs.t.tracer.Start(bs.ctx, spanName(cr.k, sp.name), bs.t.spanOpts[0],
			trace.WithTimestamp(start), trace.WithAttributes(attrs...))
		err := cr.cmd.Err()
		span.SetAttributes(sp.endAttrs(make([]attribute.KeyValue, 0, 8), &cr.run, err)...)
		repairEvent(span, &cr.run)
		setStatus(span, err)
		span.End(trace.WithTimestamp(end))
	}
	return c.dropped
}

// children collects a recording batch's script commands, up to its limit;
// a ClusterClient's node hooks add theirs to their own node batch.
type children struct {
	mu      sync.Mutex
	limit   int
	runs    []childRun
	dropped int
}

// record keeps one script command of a batch for a child span.
func (br *batchRun) record(it *item) {
	c := br.children
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.runs) >= c.limit {
		c.dropped++
		return
	}
	r := run{s: it.s, srv: br.srv, sent: it.form}
	if it.k.hasBody() && it.form == sentAsWritten || it.form == sentByBody || it.loaded {
		r.bodies = 1 // as a single call counts it: the hook's SCRIPT LOAD included
	}
	if it.repaired {
		r.repair, r.cause = repairLoad, it.cause
	}
	c.runs = append(c.runs, childRun{k: it.k, call: it.call, s: it.s, run: r, cmd: it.orig})
}

// merge adds a node's counts to the logical batch.
func (br *batchRun) merge(o *batchRun) {
	c := br.children
	c.mu.Lock()
	defer c.mu.Unlock()
	br.scripts += o.scripts
	br.bodies += o.bodies
	br.repaired += o.repaired
	br.rewritten += o.rewritten
}

// batchName is PIPELINE or MULTI, followed by the command when every one of
// the caller's commands is the same, as the caller wrote it (the naming
// rule); it also returns the caller's commands (those inside MULTI ... EXEC
// for a transaction).
func batchName(cmds []redis.Cmder) (string, []redis.Cmder) {
	base, user := "PIPELINE", cmds
	if first, last := txBounds(cmds); first >= 0 {
		base, user = "MULTI", cmds[first+1:last]
	}
	if len(user) == 0 {
		return base, user
	}
	same := ""
	for i, c := range user {
		name := upperName(c)
		if i == 0 {
			same = name
		} else if name != same {
			return base, user
		}
	}
	return base + " " + same, user
}

// upperName is a command's name in upper case, a script command's as the
// caller wrote it.
func upperName(c redis.Cmder) string {
	if w, ok := c.(*rewritten); ok {
		return w.from.String() // a ClusterClient re-sends the hook's own
	}
	if k := classify(c.Args()); k.isScript() || k.isFCall() {
		return k.String()
	}
	b := []byte(c.Name())
	for i, ch := range b {
		if 'a' <= ch && ch <= 'z' {
			b[i] = ch - 'a' + 'A'
		}
	}
	return string(b)
}
