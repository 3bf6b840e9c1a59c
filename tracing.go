package scripthook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Attribute keys of scripthook's own, under its prefix.
const (
	attrSHA1         = attribute.Key("scripthook.sha1")
	attrKeys         = attribute.Key("scripthook.keys")
	attrRewritten    = attribute.Key("scripthook.rewritten")
	attrReloaded     = attribute.Key("scripthook.reloaded")
	attrBodySent     = attribute.Key("scripthook.body_sent")
	attrReloadReason = attribute.Key("scripthook.reload.reason")
	attrReloadHow    = attribute.Key("scripthook.reload.how")
	attrBatchScripts = attribute.Key("scripthook.batch.scripts")
	attrBatchBodies  = attribute.Key("scripthook.batch.bodies_sent")
	attrBatchReloads = attribute.Key("scripthook.batch.reloads")
	attrBatchRewrite = attribute.Key("scripthook.batch.rewritten")
	attrBatchNoSpan  = attribute.Key("scripthook.batch.scripts_without_span")
)

// How a call that found its script missing got it back, for the reload
// event.
const (
	howSent            = "EVAL"          // this call sent the body
	howWaited          = "waited"        // another call sent it; this one waited, then ran by SHA1
	howLoadedMeanwhile = "loaded-before" // another call had already reloaded it
)

// result is what happened to one script command, for traces and metrics.
type result struct {
	script *script
	node   *nodeState // the node that ran it (set by the node hook)
	// sent is the command that went out last (EVALSHA after a rewrite).
	sent      scriptKind
	rewritten bool
	reloaded  bool
	how       string
	bodies    int
}

// resultKey carries the *result of a traced call from a Cluster or Ring's
// top hook down to the node hook that does the work.
type resultKey struct{}

// batchKey carries the recording batch span of a Cluster or Ring pipeline
// down to the node hooks, whose sub-batch spans go beneath it.
type batchKey struct{}

// telemetry holds a Hook's tracer and instruments, built once.
type telemetry struct {
	tracer trace.Tracer // nil: tracing off
	// globalDefault is the global provider as it was when the hook was made,
	// when that was OpenTelemetry's own default, which records nothing until
	// an SDK is installed. While it is still in place no span is started,
	// so the script path allocates nothing for tracing.
	globalDefault trace.TracerProvider
	scriptOpts    []trace.SpanStartOption
	metrics       *metrics
}

func newTelemetry(cfg *config, sh *shared) *telemetry {
	t := &telemetry{}
	if cfg.tracing {
		if _, isNoop := cfg.tp.(noop.TracerProvider); !isNoop {
			t.tracer = cfg.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version))
			if !cfg.tpGiven && isGlobalDefault(cfg.tp) {
				t.globalDefault = cfg.tp
			}
		}
	}
	t.scriptOpts = []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(semconv.DBSystemNameRedis),
	}
	t.metrics = newMetrics(cfg, sh)
	return t
}

// isGlobalDefault reports whether tp is OpenTelemetry's default global
// provider, which delegates to nothing until otel.SetTracerProvider.
func isGlobalDefault(tp trace.TracerProvider) bool {
	return strings.HasSuffix(typeName(tp), "global.tracerProvider")
}

// tracing reports whether spans may be recorded now.
func (t *telemetry) tracing() bool {
	if t.tracer == nil {
		return false
	}
	// Once an SDK is installed globally, GetTracerProvider returns it, and
	// our tracer (made from the default) forwards to it.
	return t.globalDefault == nil || otel.GetTracerProvider() != t.globalDefault
}

// processScript runs one script command, inside a span when tracing is on.
func (h *Hook) processScript(ctx context.Context, cmd redis.Cmder, sc *scriptCall, next redis.ProcessHook) error {
	if h.role == roleNode {
		// Under a Cluster or Ring the top hook owns the span; report to it.
		if res, ok := ctx.Value(resultKey{}).(*result); ok {
			res.node = h.node
			return h.runScript(ctx, cmd, sc, h.resolveScript(sc), next, res)
		}
		var res result
		return h.runScript(ctx, cmd, sc, h.resolveScript(sc), next, &res)
	}
	tel := h.sh.tel
	timed := tel.metrics.enabled(ctx)
	if !timed && !tel.tracing() {
		var res result
		return h.runScript(ctx, cmd, sc, h.resolveScript(sc), next, &res)
	}
	return h.traceScript(ctx, cmd, sc, next, timed)
}

// traceScript is processScript with a span and, when timed, the duration
// metric. Only a recording span pays for attributes and a result on the
// heap; a span the sampler dropped costs what the tracer's Start costs.
func (h *Hook) traceScript(ctx context.Context, cmd redis.Cmder, sc *scriptCall, next redis.ProcessHook, timed bool) error {
	tel := h.sh.tel
	start := time.Now()
	s := h.resolveScript(sc)
	if tel.tracing() {
		sctx, span := tel.tracer.Start(ctx, h.scriptSpanName(sc, s), tel.scriptOpts...)
		if span.IsRecording() {
			return h.recordScript(sctx, span, cmd, sc, s, next, timed, start)
		}
		span.End()
		ctx = sctx // a dropped span's context still carries the trace
	}
	var res result
	res.node = h.node
	err := h.runScript(ctx, cmd, sc, s, next, &res)
	if timed {
		tel.metrics.recordScript(ctx, time.Since(start), h, sc, s, &res, err)
	}
	return err
}

// recordScript runs a script command inside a recording span.
func (h *Hook) recordScript(ctx context.Context, span trace.Span, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, timed bool, start time.Time) error {
	res := &result{node: h.node}
	if h.role == roleTop {
		ctx = context.WithValue(ctx, resultKey{}, res)
	}
	err := h.runScript(ctx, cmd, sc, s, next, res)
	h.endScriptSpan(span, sc, s, res, err)
	span.End()
	if timed {
		h.sh.tel.metrics.recordScript(ctx, time.Since(start), h, sc, s, res, err)
	}
	return err
}

// scriptSpanName is "EVALSHA <name or SHA1>" ("EVALSHA_RO …", or "EVAL …"
// when rewriting is off), built once per script and kind.
func (h *Hook) scriptSpanName(sc *scriptCall, s *script) string {
	op := sc.kind
	if h.sh.cfg.rewrite && op.hasBody() {
		op = kindEvalSha
		if sc.kind.readOnly() {
			op = kindEvalShaRO
		}
	}
	if s == nil {
		return op.String() + " " + displaySHA(sc.sha)
	}
	return s.spanName(op)
}

// displaySHA is how traces show a caller's EVALSHA argument whose body the
// hook does not know: as given when it is a SHA1, else "?". Whatever else a
// caller puts there (a script body passed by mistake, say) is not recorded.
// (Found by TestSecuritySecretsNotExported: the argument went verbatim into
// the span name, db.stored_procedure.name and scripthook.sha1.)
func displaySHA(arg string) string {
	if _, ok := normalizeSHA(arg); ok {
		return arg
	}
	return "?"
}

// spanName returns the cached span name of the script for one command kind.
func (s *script) spanName(op scriptKind) string {
	names := s.names.Load()
	if names == nil {
		display := s.displayName()
		n := &[5]string{}
		for k := kindEval; k <= kindEvalShaRO; k++ {
			n[k] = k.String() + " " + display
		}
		s.names.CompareAndSwap(nil, n)
		names = s.names.Load()
	}
	return names[op]
}

// endScriptSpan sets what is known once the call is over, in one slice of
// the exact size, only for a recording span.
func (h *Hook) endScriptSpan(span trace.Span, sc *scriptCall, s *script, res *result, err error) {
	attrs := make([]attribute.KeyValue, 0, 14)
	attrs = append(attrs, semconv.DBOperationName(res.sent.String()))
	attrs = append(attrs, h.nodeAttrs(res.node)...)
	sha := displaySHA(sc.sha)
	display := sha
	if s != nil {
		sha, display = s.sha, s.displayName()
	}
	attrs = append(attrs,
		semconv.DBStoredProcedureName(display),
		attrSHA1.String(sha),
		attrKeys.Int(sc.numKeys),
		attrRewritten.Bool(res.rewritten),
		attrReloaded.Bool(res.reloaded),
		attrBodySent.Bool(res.bodies > 0),
	)
	if h.sh.cfg.queryText {
		attrs = append(attrs, semconv.DBQueryText(queryText(res.sent, display, sc.numKeys, sc.nargs)))
	}
	attrs = appendErrAttrs(attrs, err)
	span.SetAttributes(attrs...)
	if res.reloaded {
		span.AddEvent("scripthook.reload", trace.WithAttributes(
			attrReloadReason.String("NOSCRIPT"),
			attrReloadHow.String(res.how),
		))
	}
	setStatus(span, err)
}

// nodeAttrs are db.namespace, server.address and server.port, when known.
func (h *Hook) nodeAttrs(n *nodeState) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	if h.db != "" {
		attrs = append(attrs, semconv.DBNamespace(h.db))
	}
	if n == nil {
		return attrs
	}
	if addr := n.addr.Load(); addr != nil {
		host, port, err := net.SplitHostPort(*addr)
		if err == nil {
			attrs = append(attrs, semconv.ServerAddress(host))
			if p, err := strconv.Atoi(port); err == nil {
				attrs = append(attrs, semconv.ServerPort(p))
			}
		}
	}
	return attrs
}

// queryText is the sanitized form of a script command: its name, the
// script's name or SHA1, numkeys, and "?" for every key and argument.
func queryText(op scriptKind, display string, numKeys, nargs int) string {
	var b strings.Builder
	b.WriteString(op.String())
	b.WriteByte(' ')
	b.WriteString(display)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(numKeys))
	for i := 0; i < nargs; i++ {
		b.WriteString(" ?")
	}
	return b.String()
}

// appendErrAttrs adds error.type and db.response.status_code for a failed
// operation. redis.Nil is a reply, not a failure.
func appendErrAttrs(attrs []attribute.KeyValue, err error) []attribute.KeyValue {
	if err == nil || err == redis.Nil {
		return attrs
	}
	if prefix := errorPrefix(err); prefix != "" {
		return append(attrs, semconv.DBResponseStatusCode(prefix), semconv.ErrorTypeKey.String(prefix))
	}
	return append(attrs, semconv.ErrorType(err))
}

// setStatus marks a failed operation. The contrib rule: no RecordError.
func setStatus(span trace.Span, err error) {
	if err != nil && err != redis.Nil {
		span.SetStatus(codes.Error, statusDescription(err))
	}
}

// statusDescription describes a failure without user data: for an error
// reply only its prefix (ERR, WRONGTYPE, ...), because the rest of a
// server's message can echo a script's arguments or pieces of its body
// (redis.error_reply(ARGV[1]), "nonexistent global variable 'x'", "near
// 'x'"); other errors (network, context) as they are. (Found by
// TestSecuritySecretsNotExported: the whole message was the description.)
func statusDescription(err error) string {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return err.Error()
	}
	if prefix := errorPrefix(err); prefix != "" {
		return prefix
	}
	return "error reply"
}

// errorPrefix is the Redis error prefix (ERR, WRONGTYPE, ...) of a server
// error reply, or "".
func errorPrefix(err error) string {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return ""
	}
	msg := rerr.Error()
	end := strings.IndexByte(msg, ' ')
	if end < 0 {
		end = len(msg)
	}
	prefix := msg[:end]
	for i := 0; i < len(prefix); i++ {
		if c := prefix[i]; (c < 'A' || c > 'Z') && c != '_' {
			return ""
		}
	}
	return prefix
}

// typeName is the dynamic type's name, as %T prints it.
func typeName(v any) string { return fmt.Sprintf("%T", v) }

// noopSpan stands in for a span when tracing is off; boxed once.
var noopSpan trace.Span = noop.Span{}
