package scripthook

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/semconv/v1.43.0/dbconv"
)

// durationBuckets are the bucket boundaries the database conventions advise
// for db.client.operation.duration, in seconds.
var durationBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10}

// metrics are a Hook's instruments: the semconv duration histogram, recorded
// per script run and per batch, and counters read from Stats when the SDK
// collects (so they cost nothing on the call path).
type metrics struct {
	duration dbconv.ClientOperationDuration
}

func newMetrics(cfg *config, sh *shared) *metrics {
	meter := cfg.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version))
	m := &metrics{}
	var err error
	m.duration, err = dbconv.NewClientOperationDuration(meter,
		metric.WithExplicitBucketBoundaries(durationBuckets...))
	if err != nil {
		otel.Handle(err)
	}
	counter := func(name, unit, desc string) metric.Int64ObservableCounter {
		c, err := meter.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		if err != nil {
			otel.Handle(err)
		}
		return c
	}
	repaired := counter("scripthook.noscript.repaired", "{reply}", "NOSCRIPT replies scripthook repaired.")
	evicted := counter("scripthook.noscript.evicted", "{reply}", "NOSCRIPT replies for scripts the server had run and was not seen to flush: evictions.")
	passed := counter("scripthook.noscript.passed", "{reply}", "NOSCRIPT replies that reached the caller.")
	bodies := counter("scripthook.bodies.sent", "{body}", "Script bodies sent to a server.")
	loads := counter("scripthook.loads", "{command}", "SCRIPT LOAD commands scripthook sent.")
	rewritten := counter("scripthook.commands.rewritten", "{command}", "EVAL commands sent as EVALSHA.")
	saved := counter("scripthook.request.bytes_saved", "By", "Request bytes not sent thanks to EVALSHA.")
	fnLoads := counter("scripthook.function.loads", "{command}", "FUNCTION LOAD commands scripthook sent for registered libraries.")
	fnRepaired := counter("scripthook.function.repaired", "{reply}", "\"Function not found\" replies scripthook repaired.")
	fnPassed := counter("scripthook.function.passed", "{reply}", "\"Function not found\" replies for registered libraries that reached the caller.")
	system := metric.WithAttributes(semconv.DBSystemNameRedis)
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := &sh.stats
		o.ObserveInt64(repaired, st.repaired.Load(), system)
		o.ObserveInt64(evicted, st.evicted.Load(), system)
		o.ObserveInt64(passed, st.noScriptPassed.Load(), system)
		o.ObserveInt64(bodies, st.bodiesSent.Load(), system)
		o.ObserveInt64(loads, st.loads.Load(), system)
		o.ObserveInt64(rewritten, st.rewritten.Load(), system)
		o.ObserveInt64(saved, st.bytesSaved.Load(), system)
		o.ObserveInt64(fnLoads, sh.fns.loads.Load(), system)
		o.ObserveInt64(fnRepaired, sh.fns.repaired.Load(), system)
		o.ObserveInt64(fnPassed, sh.fns.passed.Load(), system)
		return nil
	}, repaired, evicted, passed, bodies, loads, rewritten, saved, fnLoads, fnRepaired, fnPassed)
	if err != nil {
		otel.Handle(err)
	}
	return m
}

// enabled reports whether the duration is recorded at all, so that the call
// path reads no clock without an SDK.
func (m *metrics) enabled(ctx context.Context) bool {
	return m.duration.Inst().Enabled(ctx)
}

// record records one operation: a script or function call (proc is its
// bounded name) or a batch (proc ""). Every attribute is bounded: operation
// names are the commands', proc is bounded by nameBound, and the rest by the
// program's own clients and servers.
func (m *metrics) record(ctx context.Context, d time.Duration, op, proc, db string, srv *server, err error) {
	attrs := make([]attribute.KeyValue, 0, 7)
	attrs = append(attrs, semconv.DBOperationName(op))
	if proc != "" {
		attrs = append(attrs, semconv.DBStoredProcedureName(proc))
	}
	attrs = serverAttrs(attrs, db, srv)
	attrs = errAttrs(attrs, err)
	m.duration.Record(ctx, d.Seconds(), dbconv.SystemNameAttr(semconv.DBSystemNameRedis.Value.AsString()), attrs...)
}
