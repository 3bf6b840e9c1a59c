package scripthook

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// scriptSpan observes one script or function call. The zero value observes
// nothing: that is what a call costs while no span can record and no
// duration is collected.
type scriptSpan struct {
	t     *telemetry
	span  trace.Span // nil: no span recording
	ctx   context.Context
	start time.Time // zero: the duration is not recorded
	k     kind
	call  callInfo
	s     *script
	name  string
	db    string
	srv   *server // nil under a top hook: the node that ran it reports it
	// late: the server's address was not known at the start (a client's
	// first call dials, a top hook learns the node only from the run), so
	// the end adds it.
	late bool
}

// startScript starts observing a script (or function) call. The span's
// name and the attributes the conventions ask for at creation (operation,
// procedure, namespace, server, query text) are set before the sampler
// decides, so a sampler sees them.
func (t *telemetry) startScript(ctx context.Context, sc *scriptCall, s *script, db string, srv *server) (context.Context, scriptSpan) {
	timed := t.metrics.enabled(ctx)
	tracing := t.tracing()
	if !timed && !tracing {
		return ctx, scriptSpan{}
	}
	sp := scriptSpan{t: t, ctx: ctx, k: sc.kind, call: sc.info(), s: s, db: db, srv: srv}
	sp.name = t.procName(sc, s)
	if timed {
		sp.start = time.Now()
	}
	if tracing {
		attrs := sp.startAttrs(make([]attribute.KeyValue, 0, 8))
		var span trace.Span
		ctx, span = t.tracer.Start(ctx, spanName(sc.kind, sp.name), t.spanOpts[0], trace.WithAttributes(attrs...))
		if span.IsRecording() {
			sp.span = span
		} else {
			span.End() // a dropped span's context still carries the trace
		}
		sp.ctx = ctx
	}
	return ctx, sp
}

// traceFCall observes a function call, which e runs (the engine of a
// client hook), or, under a top hook (e nil), the chain down to the node
// hook, which reports the node through the context.
func (t *telemetry) traceFCall(ctx context.Context, cmd redis.Cmder, k kind, db string, srv *server, next redis.ProcessHook, e *engine) error {
	sc, ok := parseFCall(k, cmd.Args())
	if !ok {
		return next(ctx, cmd)
	}
	ctx, sp := t.startScript(ctx, &sc, nil, db, srv)
	if e == nil {
		if sp.t == nil {
			return next(ctx, cmd)
		}
		r := &run{}
		err := next(context.WithValue(ctx, runKey{}, r), cmd)
		sp.end(r, err)
		return err
	}
	var r run
	err := e.runFCall(ctx, cmd, &sc, next, &r)
	sp.end(&r, err)
	return err
}

// procName is db.stored_procedure.name, bounded (see nameBound): for a
// script its registered name or SHA1, for a function its name.
func (t *telemetry) procName(sc *scriptCall, s *script) string {
	switch {
	case sc.kind.isFCall():
		return t.names.admit(sc.function)
	case s == nil:
		// A SHA1 the hook knows no body for (your EVALSHA of a script
		// loaded by another client) proves hot like any script: on its
		// second sighting.
		if sha, ok := normalizeSHA(sc.sha); ok {
			return t.names.sighted(sha)
		}
		return OtherName
	}
	return t.names.name(s)
}

// startAttrs are the attributes known before the call.
func (sp *scriptSpan) startAttrs(attrs []attribute.KeyValue) []attribute.KeyValue {
	attrs = append(attrs,
		semconv.DBSystemNameRedis,
		semconv.DBOperationName(sp.k.String()),
		semconv.DBStoredProcedureName(sp.name),
	)
	attrs = serverAttrs(attrs, sp.db, sp.srv)
	sp.late = !hasAddr(sp.srv)
	if sp.t.cfg.queryText {
		attrs = append(attrs, semconv.DBQueryText(queryText(sp.k, sp.display(), int(sp.call.numKeys), int(sp.call.nargs))))
	}
	return attrs
}

// display is the script's name or SHA1 for the query text and
// scripthook.sha1: a caller's argument that is no SHA1 shows as "?".
func (sp *scriptSpan) display() string {
	switch {
	case sp.k.isFCall():
		return sp.name
	case sp.s != nil && sp.s.displayName() != "":
		return sp.s.displayName()
	}
	return displaySHA(sp.call.arg)
}

// endAttrs are the attributes known once the call is over.
func (sp *scriptSpan) endAttrs(attrs []attribute.KeyValue, r *run, err error) []attribute.KeyValue {
	if sp.late {
		srv := sp.srv
		if srv == nil {
			srv = r.srv
		}
		attrs = serverAttrs(attrs, "", srv)
	}
	if !sp.k.isFCall() {
		sha := displaySHA(sp.call.arg)
		s := sp.s
		if s == nil {
			s = r.s // under a top hook, the node hook learned the body
		}
		if s != nil && s.hex() != "" {
			sha = s.hex()
		}
		attrs = append(attrs, attrSHA1.String(sha))
	}
	attrs = append(attrs,
		attrKeys.Int(int(sp.call.numKeys)),
		attrSent.String(r.sent.wire(sp.k).String()),
		attrBodySent.Bool(r.bodies > 0),
		attrRepaired.Bool(r.repair != repairNone),
	)
	return errAttrs(attrs, err)
}

// end finishes observing the call; r is what the engine recorded.
func (sp scriptSpan) end(r *run, err error) {
	if sp.t == nil {
		return
	}
	if sp.span != nil {
		sp.span.SetAttributes(sp.endAttrs(make([]attribute.KeyValue, 0, 10), r, err)...)
		repairEvent(sp.span, r)
		setStatus(sp.span, err)
		sp.span.End()
	}
	if !sp.start.IsZero() {
		srv := sp.srv
		if srv == nil {
			srv = r.srv
		}
		sp.t.metrics.record(sp.ctx, time.Since(sp.start), sp.k.String(), sp.name, sp.db, srv, err)
	}
}

// repairEvent records how a repaired call was repaired, on its span.
func repairEvent(span trace.Span, r *run) {
	if r.repair == repairNone {
		return
	}
	span.AddEvent("scripthook.repair", trace.WithAttributes(
		attrRepairCause.String(r.cause.String()),
		attrRepairHow.String(r.repair.String()),
	))
}
