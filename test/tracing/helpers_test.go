package tracing_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// Scripts. Every body is longer than a SHA1 by far, so that the hook sends
// it by SHA1 once the server has it; the batch bodies are long enough that
// a SCRIPT LOAD and two EVALSHAs write fewer bytes than two bodies.
const (
	incrBody = "-- tracing: increments its key by its argument\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
	readBody = "-- tracing: reads its key, read-only\nreturn redis.call('GET', KEYS[1])"
	regBody  = "-- tracing: the registered script\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])"
	regRO    = "-- tracing: the registered read-only script\nreturn redis.call('EXISTS', KEYS[1])"
)

var (
	bigIncr = incrBody + "\n-- " + strings.Repeat("padding ", 40)
	bigRead = readBody + "\n-- " + strings.Repeat("padding ", 40)
)

// Attribute keys the tests read.
const (
	kSystem    = "db.system.name"
	kOp        = "db.operation.name"
	kProc      = "db.stored_procedure.name"
	kNS        = "db.namespace"
	kAddr      = "server.address"
	kPort      = "server.port"
	kQuery     = "db.query.text"
	kBatchSize = "db.operation.batch.size"
	kErrType   = "error.type"
	kStatus    = "db.response.status_code"
	kSHA1      = "scripthook.sha1"
	kKeys      = "scripthook.keys"
	kSent      = "scripthook.sent"
	kBodySent  = "scripthook.body_sent"
	kRepaired  = "scripthook.repaired"
	kCause     = "scripthook.repair.cause"
	kHow       = "scripthook.repair.how"
	kBScripts  = "scripthook.batch.scripts"
	kBBodies   = "scripthook.batch.bodies_sent"
	kBRepaired = "scripthook.batch.repaired"
	kBRewrite  = "scripthook.batch.rewritten"
	kBNoSpan   = "scripthook.batch.scripts_without_span"
	durationMx = "db.client.operation.duration"
)

// sampleKey is the attribute the recording sampler adds to every span it
// sees, so that a span can be matched with what the sampler was shown. The
// helpers below leave it out of every attribute map.
const sampleKey = attribute.Key("test.sample")

// sampled is what a sampler is shown when a span is created.
type sampled struct {
	Name   string
	Kind   trace.SpanKind
	Parent trace.SpanContext
	Attrs  map[string]any
}

// recSampler samples everything and records the SamplingParameters of
// every span: the name and the attributes given at creation, which is all
// a sampler can decide on.
type recSampler struct {
	mu   sync.Mutex
	recs []sampled
}

func (s *recSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, sampled{
		Name:   p.Name,
		Kind:   p.Kind,
		Parent: trace.SpanContextFromContext(p.ParentContext),
		Attrs:  kvMap(p.Attributes),
	})
	return sdktrace.SamplingResult{
		Decision:   sdktrace.RecordAndSample,
		Attributes: []attribute.KeyValue{sampleKey.Int(len(s.recs) - 1)},
		Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState(),
	}
}

func (s *recSampler) Description() string { return "tracing_test recording sampler" }

func (s *recSampler) get(i int) sampled {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recs[i]
}

// tel is a real SDK: a tracer provider with the recording sampler and a
// span recorder, and a meter provider with a manual reader of delta
// temporality (each collect returns what was recorded since the last).
type tel struct {
	smp    *recSampler
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	mp     *sdkmetric.MeterProvider
}

func newTel(t testing.TB) *tel {
	tl := &tel{smp: &recSampler{}, spans: tracetest.NewSpanRecorder()}
	tl.reader = sdkmetric.NewManualReader(sdkmetric.WithTemporalitySelector(
		func(sdkmetric.InstrumentKind) metricdata.Temporality { return metricdata.DeltaTemporality }))
	tl.tp = sdktrace.NewTracerProvider(sdktrace.WithSampler(tl.smp), sdktrace.WithSpanProcessor(tl.spans))
	tl.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(tl.reader))
	t.Cleanup(func() {
		_ = tl.tp.Shutdown(context.Background())
		_ = tl.mp.Shutdown(context.Background())
	})
	return tl
}

// opts are the options that send a Hook's telemetry to tl.
func (tl *tel) opts(more ...scripthook.Option) []scripthook.Option {
	return append([]scripthook.Option{scripthook.WithTracerProvider(tl.tp), scripthook.WithMeterProvider(tl.mp)}, more...)
}

// take returns the spans ended since the last take, in the order they
// ended, and forgets them.
func (tl *tel) take() []sdktrace.ReadOnlySpan {
	s := tl.spans.Ended()
	tl.spans.Reset()
	return s
}

// one returns the one span ended since the last take.
func (tl *tel) one(t testing.TB) sdktrace.ReadOnlySpan {
	t.Helper()
	s := tl.take()
	require.Len(t, s, 1, "spans: %v", names(s))
	return s[0]
}

// created returns what the sampler was shown when s was created.
func (tl *tel) created(t testing.TB, s sdktrace.ReadOnlySpan) sampled {
	t.Helper()
	for _, kv := range s.Attributes() {
		if kv.Key == sampleKey {
			return tl.smp.get(int(kv.Value.AsInt64()))
		}
	}
	t.Fatalf("span %q was not seen by the sampler", s.Name())
	return sampled{}
}

// point is one series of the duration histogram.
type point struct {
	Attrs map[string]any
	Count uint64
}

// points collects the duration histogram's series recorded since the last
// collect, sorted by their attributes.
func (tl *tel) points(t testing.TB) []point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, tl.reader.Collect(context.Background(), &rm))
	var out []point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != durationMx {
				continue
			}
			require.Equal(t, "s", m.Unit, "the duration is in seconds")
			h, ok := m.Data.(metricdata.Histogram[float64])
			require.True(t, ok, "%s is a float64 histogram, got %T", durationMx, m.Data)
			for _, dp := range h.DataPoints {
				if dp.Count == 0 {
					continue
				}
				out = append(out, point{Attrs: kvMap(dp.Attributes.ToSlice()), Count: dp.Count})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return attrString(out[i].Attrs) < attrString(out[j].Attrs) })
	return out
}

func attrString(m map[string]any) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v;", k, m[k])
	}
	return b.String()
}

// kvMap turns attributes into a map of plain Go values (string, int64,
// bool, float64), leaving out the sampler's own.
func kvMap(kvs []attribute.KeyValue) map[string]any {
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		if kv.Key == sampleKey {
			continue
		}
		m[string(kv.Key)] = kv.Value.AsInterface()
	}
	return m
}

// attrs is a span's attributes, the sampler's left out.
func attrs(s sdktrace.ReadOnlySpan) map[string]any { return kvMap(s.Attributes()) }

// event is a span event as the tests compare it.
type event struct {
	Name  string
	Attrs map[string]any
}

func events(s sdktrace.ReadOnlySpan) []event {
	var out []event
	for _, e := range s.Events() {
		out = append(out, event{Name: e.Name, Attrs: kvMap(e.Attributes)})
	}
	return out
}

// status is a span's status as the tests compare it.
type status struct {
	Code        codes.Code
	Description string
}

func statusOf(s sdktrace.ReadOnlySpan) status {
	return status{s.Status().Code, s.Status().Description}
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.Name()
	}
	return out
}

// byParent indexes spans by their parent's span ID.
func byParent(spans []sdktrace.ReadOnlySpan) map[trace.SpanID][]sdktrace.ReadOnlySpan {
	m := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		m[s.Parent().SpanID()] = append(m[s.Parent().SpanID()], s)
	}
	return m
}

// merge returns a copy of base with more added.
func merge(base map[string]any, more map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(more))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// without returns a copy of m without keys.
func without(m map[string]any, keys ...string) map[string]any {
	out := merge(m, nil)
	for _, k := range keys {
		delete(out, k)
	}
	return out
}

// rig is a real server with the plain, admin and hooked clients of
// testkit.Rig; the Hook is installed with Install (so it knows the
// database index for db.namespace) and sends its telemetry to tl.
type rig struct {
	*testkit.Rig
	h  *scripthook.Hook
	tl *tel
}

// newRig starts a server of the test's own and a Hook with opts, after
// setup (Register calls) has run on it.
func newRig(t testing.TB, setup func(h *scripthook.Hook), opts ...scripthook.Option) *rig {
	t.Helper()
	return newRigOn(t, redistest.Start(t), &redis.Options{MaxRetries: -1}, setup, opts...)
}

func newRigOn(t testing.TB, srv *redistest.Server, base *redis.Options, setup func(h *scripthook.Hook), opts ...scripthook.Option) *rig {
	t.Helper()
	tl := newTel(t)
	h := scripthook.New(tl.opts(opts...)...)
	if setup != nil {
		setup(h)
	}
	r := testkit.RigOn(t, srv, base, nil)
	require.NoError(t, h.Install(r.Hooked))
	return &rig{Rig: r, h: h, tl: tl}
}

// base is what every script span of the rig's client carries at creation
// apart from its operation and name.
func (r *rig) base() map[string]any {
	return map[string]any{
		kSystem: "redis",
		kNS:     "0",
		kAddr:   "127.0.0.1",
		kPort:   int64(r.Srv.Port),
	}
}

// created is what a script span of the rig's client carries at creation.
func (r *rig) created(op, proc string) map[string]any {
	return merge(r.base(), map[string]any{kOp: op, kProc: proc})
}

// ended is what a successful script span of the rig's client carries at
// the end.
func (r *rig) ended(op, proc, sha string, keys int, sent string, bodySent, repaired bool) map[string]any {
	return merge(r.created(op, proc), map[string]any{
		kSHA1: sha, kKeys: int64(keys), kSent: sent, kBodySent: bodySent, kRepaired: repaired,
	})
}

// metric is the duration series of a call on the rig's client.
func (r *rig) metric(op, proc string) map[string]any {
	m := merge(r.base(), map[string]any{kOp: op})
	if proc != "" {
		m[kProc] = proc
	}
	return m
}

// calls returns how often the server ran each command since the last
// ResetStats.
func (r *rig) calls(t testing.TB, names ...string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, n := range names {
		out[n] = r.Calls(t, n)
	}
	return out
}

// spanName is the name of a script span: the command and the name, or just
// the command for OtherName.
func spanName(op, proc string) string {
	if proc == scripthook.OtherName {
		return op
	}
	return op + " " + proc
}

// dumpSpan renders everything a span exports: name, attributes, events,
// links and status.
func dumpSpan(t testing.TB, s sdktrace.ReadOnlySpan) string {
	t.Helper()
	b, err := json.Marshal(struct {
		Name   string
		Attrs  any
		Events any
		Links  any
		Status any
	}{s.Name(), s.Attributes(), s.Events(), s.Links(), s.Status()})
	require.NoError(t, err)
	return string(b)
}
