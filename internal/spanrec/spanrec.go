// Package spanrec records spans in memory on the OpenTelemetry API alone,
// for the demo, the examples and the root package's tests: it keeps the
// SDK (go.opentelemetry.io/otel/sdk) out of the library module's
// requirements, so that the library does not raise its users' SDK version.
// Tests that want the real SDK live in the test module (test/go.mod).
//
// It records what scripthook uses of a span: name, parent, start and end
// times, attributes, events and status. Every span is sampled. It is not a
// general-purpose tracer.
package spanrec

import (
	"context"
	"crypto/rand"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Span is an ended span, as recorded.
type Span struct {
	Name        string
	SpanContext trace.SpanContext
	Parent      trace.SpanContext // invalid for a root span
	Kind        trace.SpanKind
	StartTime   time.Time
	EndTime     time.Time
	Attributes  []attribute.KeyValue // in the order first set; a key set again keeps its place, takes the new value
	Events      []Event
	Status      codes.Code
	Description string // the status description
}

// Event is a span event.
type Event struct {
	Name       string
	Time       time.Time
	Attributes []attribute.KeyValue
}

// Recorder is a trace.TracerProvider that keeps every ended span.
type Recorder struct {
	noop.TracerProvider

	mu    sync.Mutex
	ended []*Span // guarded by mu
}

var _ trace.TracerProvider = (*Recorder)(nil)

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{} }

// Tracer returns a tracer whose spans r records; name and options are
// ignored.
func (r *Recorder) Tracer(string, ...trace.TracerOption) trace.Tracer { return tracer{r: r} }

// Ended returns the spans ended so far, in the order they ended.
func (r *Recorder) Ended() []*Span {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*Span(nil), r.ended...)
}

// Reset forgets the spans ended so far.
func (r *Recorder) Reset() {
	r.mu.Lock()
	r.ended = nil
	r.mu.Unlock()
}

type tracer struct {
	noop.Tracer
	r *Recorder
}

func (t tracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	parent := trace.SpanContextFromContext(ctx)
	if cfg.NewRoot() {
		parent = trace.SpanContext{}
	}
	var sc trace.SpanContextConfig
	if parent.IsValid() {
		sc.TraceID = parent.TraceID()
	} else {
		_, _ = rand.Read(sc.TraceID[:])
	}
	_, _ = rand.Read(sc.SpanID[:])
	sc.TraceFlags = trace.FlagsSampled
	start := cfg.Timestamp()
	if start.IsZero() {
		start = time.Now()
	}
	s := &span{r: t.r, data: Span{
		Name: name, SpanContext: trace.NewSpanContext(sc), Parent: parent,
		Kind: cfg.SpanKind(), StartTime: start,
	}}
	s.setAttributes(cfg.Attributes())
	return trace.ContextWithSpan(ctx, s), s
}

type span struct {
	noop.Span
	r *Recorder

	mu    sync.Mutex
	data  Span // guarded by mu
	ended bool // guarded by mu
}

func (s *span) SpanContext() trace.SpanContext { return s.data.SpanContext }

func (s *span) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

func (s *span) SetName(name string) {
	s.mu.Lock()
	s.data.Name = name
	s.mu.Unlock()
}

func (s *span) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	s.data.Status, s.data.Description = code, description
	s.mu.Unlock()
}

func (s *span) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	s.setAttributes(kv)
	s.mu.Unlock()
}

// setAttributes adds kv; s.mu is held or s is not yet shared.
func (s *span) setAttributes(kv []attribute.KeyValue) {
next:
	for _, a := range kv {
		for i := range s.data.Attributes {
			if s.data.Attributes[i].Key == a.Key {
				s.data.Attributes[i] = a
				continue next
			}
		}
		s.data.Attributes = append(s.data.Attributes, a)
	}
}

func (s *span) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	ts := cfg.Timestamp()
	if ts.IsZero() {
		ts = time.Now()
	}
	s.mu.Lock()
	s.data.Events = append(s.data.Events, Event{Name: name, Time: ts, Attributes: cfg.Attributes()})
	s.mu.Unlock()
}

func (s *span) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	s.AddEvent("exception", append(opts, trace.WithAttributes(attribute.String("exception.message", err.Error())))...)
}

func (s *span) End(opts ...trace.SpanEndOption) {
	cfg := trace.NewSpanEndConfig(opts...)
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.data.EndTime = cfg.Timestamp()
	if s.data.EndTime.IsZero() {
		s.data.EndTime = time.Now()
	}
	d := s.data
	s.mu.Unlock()
	s.r.mu.Lock()
	s.r.ended = append(s.r.ended, &d)
	s.r.mu.Unlock()
}

func (s *span) TracerProvider() trace.TracerProvider { return s.r }
