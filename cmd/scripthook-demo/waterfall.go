package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// tracing records the hook run's spans in memory. The SDK is the demo's
// business only: the library depends on the OpenTelemetry API alone.
type tracing struct {
	rec *tracetest.SpanRecorder
	tp  *sdktrace.TracerProvider
}

func newTracing() *tracing {
	rec := tracetest.NewSpanRecorder()
	return &tracing{rec: rec, tp: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))}
}

// childrenShown bounds the child spans printed under one batch span.
const childrenShown = 2

// printWaterfall prints a sample of the run's span trees as a text
// waterfall: the first script calls, the call that repaired a NOSCRIPT, the
// first pipeline and the first transaction, each with its children.
func printWaterfall(w io.Writer, t *tracing) {
	spans := t.rec.Ended()
	if len(spans) == 0 {
		return
	}
	sort.SliceStable(spans, func(i, j int) bool { return spans[i].StartTime().Before(spans[j].StartTime()) })
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Parent().IsValid() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		} else {
			roots = append(roots, s)
		}
	}
	var picked []sdktrace.ReadOnlySpan
	var reload, pipeline, multi bool
	for i, r := range roots {
		name := r.Name()
		switch {
		case i < 2:
		case !reload && boolAttr(r, "scripthook.reloaded"):
			reload = true
		case !pipeline && strings.HasPrefix(name, "PIPELINE"):
			pipeline = true
		case !multi && strings.HasPrefix(name, "MULTI"):
			multi = true
		default:
			continue
		}
		picked = append(picked, r)
	}
	origin := spans[0].StartTime()
	fmt.Fprintf(w, "\nspans of the hook run: %d recorded (in-memory OpenTelemetry SDK); a sample:\n", len(spans))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "START\tDURATION\t\tSPAN\tATTRIBUTES")
	for _, r := range picked {
		line(tw, origin, r, "")
		kids := children[r.SpanContext().SpanID()]
		for i, k := range kids {
			if i == childrenShown {
				fmt.Fprintf(tw, "\t\t\t└─ … %d more\t\n", len(kids)-childrenShown)
				break
			}
			line(tw, origin, k, "├─ ")
		}
	}
	_ = tw.Flush()
}

// line prints one span: where it starts in the run, how long it took, a bar
// for the eye, its name and the attributes that say what scripthook did.
func line(w io.Writer, origin time.Time, s sdktrace.ReadOnlySpan, indent string) {
	d := s.EndTime().Sub(s.StartTime())
	bar := strings.Repeat("█", max(1, min(12, int(d/(100*time.Microsecond)))))
	fmt.Fprintf(w, "%s\t%s\t%s\t%s%s\t%s\n",
		ms(s.StartTime().Sub(origin)), ms(d), bar, indent, s.Name(), describe(s))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

// describe summarizes a span's scripthook attributes.
func describe(s sdktrace.ReadOnlySpan) string {
	var parts []string
	a := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		a[kv.Key] = kv.Value
	}
	if v, ok := a["db.operation.name"]; ok {
		parts = append(parts, "sent="+v.AsString())
	}
	if v, ok := a["db.operation.batch.size"]; ok {
		parts = append(parts, fmt.Sprintf("batch=%d", v.AsInt64()))
	}
	if v, ok := a["scripthook.batch.bodies_sent"]; ok {
		parts = append(parts, fmt.Sprintf("bodies=%d", v.AsInt64()))
	}
	for _, k := range []attribute.Key{"scripthook.body_sent", "scripthook.rewritten", "scripthook.reloaded"} {
		if v, ok := a[k]; ok && v.AsBool() {
			parts = append(parts, strings.TrimPrefix(string(k), "scripthook."))
		}
	}
	for _, ev := range s.Events() {
		for _, kv := range ev.Attributes {
			if kv.Key == "scripthook.reload.reason" {
				parts = append(parts, "("+kv.Value.AsString()+")")
			}
		}
	}
	return strings.Join(parts, " ")
}

func boolAttr(s sdktrace.ReadOnlySpan, key attribute.Key) bool {
	for _, kv := range s.Attributes() {
		if kv.Key == key {
			return kv.Value.AsBool()
		}
	}
	return false
}
