package scripthook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry observes the engine: the role hooks call its start and end
// helpers around the engine's work, and it reads what the engine recorded
// (a run, a batchRun). It never calls back into the engine.
//
// One naming rule holds for every span and for the metric: names say what
// the caller asked for (EVAL stays EVAL when it went out as EVALSHA), so a
// name never changes with the state of a server's script cache; what went
// out is the attribute scripthook.sent.

// Attribute keys of scripthook's own, under its prefix.
const (
	attrSHA1          = attribute.Key("scripthook.sha1")
	attrKeys          = attribute.Key("scripthook.keys")
	attrSent          = attribute.Key("scripthook.sent")
	attrBodySent      = attribute.Key("scripthook.body_sent")
	attrRepaired      = attribute.Key("scripthook.repaired")
	attrRepairCause   = attribute.Key("scripthook.repair.cause")
	attrRepairHow     = attribute.Key("scripthook.repair.how")
	attrBatchScripts  = attribute.Key("scripthook.batch.scripts")
	attrBatchBodies   = attribute.Key("scripthook.batch.bodies_sent")
	attrBatchRepaired = attribute.Key("scripthook.batch.repaired")
	attrBatchRewrite  = attribute.Key("scripthook.batch.rewritten")
	attrBatchNoSpan   = attribute.Key("scripthook.batch.scripts_without_span")
)

// OtherName is the db.stored_procedure.name of every script (and function)
// beyond the bound of WithMaxScriptNames, on spans and on the metric: one
// value for all of them, so that a program that builds scripts by the
// million still makes a bounded number of metric series and span names.
const OtherName = "_OTHER"

// telemetry holds a Hook's tracer, instruments and naming bound, built once.
type telemetry struct {
	cfg    *config
	tracer trace.Tracer // nil: tracing off
	// globalDefault is the global provider as it was when the hook was
	// made, when that was OpenTelemetry's own default, which records
	// nothing until an SDK is installed. While it is still in place no span
	// is started, so the script path allocates nothing for tracing.
	globalDefault trace.TracerProvider
	spanOpts      []trace.SpanStartOption
	metrics       *metrics
	names         nameBound
}

func newTelemetry(cfg *config, sh *shared) *telemetry {
	t := &telemetry{cfg: cfg, names: nameBound{max: cfg.maxScriptNames}}
	if cfg.tracing() {
		t.tracer = cfg.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version))
		if !cfg.tpGiven && isGlobalDefault(cfg.tp) {
			t.globalDefault = cfg.tp
		}
	}
	t.spanOpts = []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindClient)}
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

// on reports whether anything is observed now: spans or the duration.
func (t *telemetry) on(ctx context.Context) bool {
	return t.tracing() || t.metrics.enabled(ctx)
}

// nameBound admits script SHA1s (and function names) as names, up to max,
// once they proved hot; everything else is OtherName.
type nameBound struct {
	mu       sync.RWMutex
	admitted map[string]struct{}
	max      int
	// once holds SHA1s without a known body sighted once, to tell their
	// second sighting; at most onceCap, emptied when full (a flood of
	// one-off SHA1s costs a bounded map and, at worst, a late name).
	once map[string]struct{}
}

// onceCap bounds nameBound.once.
const onceCap = 4096

// name returns the bounded name of a script: its registered name, its SHA1
// once the script proved hot (its second call) while the bound has room,
// else OtherName. A name once admitted stays.
func (n *nameBound) name(s *script) string {
	if s == nil {
		return OtherName
	}
	if name := s.name.Load(); name != nil {
		return *name
	}
	sha := s.hex()
	if sha == "" || !s.seen.Load() {
		return OtherName
	}
	return n.admit(sha)
}

// admit returns v if it is admitted or can be, else OtherName.
func (n *nameBound) admit(v string) string {
	return n.admitAt(v, false)
}

// sighted is admit for a SHA1 the hook knows no body for: it is admitted
// on its second sighting.
func (n *nameBound) sighted(sha string) string {
	return n.admitAt(sha, true)
}

func (n *nameBound) admitAt(v string, second bool) string {
	n.mu.RLock()
	_, ok := n.admitted[v]
	full := len(n.admitted) >= n.max
	n.mu.RUnlock()
	if ok {
		return v
	}
	if full {
		return OtherName
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if second {
		if _, seen := n.once[v]; !seen {
			if n.once == nil || len(n.once) >= onceCap {
				n.once = make(map[string]struct{})
			}
			n.once[v] = struct{}{}
			return OtherName
		}
		delete(n.once, v)
	}
	if n.admitted == nil {
		n.admitted = make(map[string]struct{})
	}
	if len(n.admitted) >= n.max {
		return OtherName
	}
	n.admitted[v] = struct{}{}
	return v
}

// spanName is "<command> <name>", or "<command>" when the name is folded
// (the conventions' rule for a span with no low-cardinality target).
func spanName(k kind, name string) string {
	if name == OtherName {
		return k.String()
	}
	return k.String() + " " + name
}

// serverAttrs appends db.namespace, server.address and server.port, when
// known.
func serverAttrs(attrs []attribute.KeyValue, db string, srv *server) []attribute.KeyValue {
	if db != "" {
		attrs = append(attrs, semconv.DBNamespace(db))
	}
	if srv == nil {
		return attrs
	}
	if addr := srv.addr.Load(); addr != nil {
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

// hasAddr reports whether the server's address is known.
func hasAddr(srv *server) bool { return srv != nil && srv.addr.Load() != nil }

// errAttrs appends error.type and db.response.status_code for a failed
// operation. redis.Nil is a reply, not a failure.
func errAttrs(attrs []attribute.KeyValue, err error) []attribute.KeyValue {
	if err == nil || err == redis.Nil {
		return attrs
	}
	if prefix := errorPrefix(err); prefix != "" {
		return append(attrs, semconv.DBResponseStatusCode(prefix), semconv.ErrorTypeKey.String(prefix))
	}
	return append(attrs, semconv.ErrorType(err))
}

// setStatus marks a failed operation (the contrib rule: no RecordError).
// The description is left empty for a server's error reply: error.type
// already holds its prefix, and the rest of a server's message can echo a
// script's arguments or pieces of its body (redis.error_reply(ARGV[1]),
// "near 'x'"). Other errors (network, context) keep their Go message, which
// names no user data.
func setStatus(span trace.Span, err error) {
	if err == nil || err == redis.Nil {
		return
	}
	if isRedisError(err) {
		span.SetStatus(codes.Error, "")
		return
	}
	span.SetStatus(codes.Error, err.Error())
}

// errorPrefix is the Redis error prefix (ERR, WRONGTYPE, ...) of a server
// error reply, or "" when it has none (then error.type is the Go type).
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

// displaySHA is how traces show a caller's EVALSHA argument whose body the
// hook does not know: as given when it is a SHA1, else "?". Whatever else a
// caller puts there (a script body passed by mistake, say) is not recorded.
func displaySHA(arg string) string {
	if _, ok := normalizeSHA(arg); ok {
		return arg
	}
	return "?"
}

// queryText is the sanitized form of a script command: its name, the
// script's name, numkeys, and "?" for every key and argument.
func queryText(k kind, name string, numKeys, nargs int) string {
	var b strings.Builder
	b.WriteString(k.String())
	b.WriteByte(' ')
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(numKeys))
	for i := 0; i < nargs; i++ {
		b.WriteString(" ?")
	}
	return b.String()
}

// typeName is the dynamic type's name, as %T prints it.
func typeName(v any) string { return fmt.Sprintf("%T", v) }
