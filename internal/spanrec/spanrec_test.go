package spanrec

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func TestRecorder(t *testing.T) {
	r := New()
	tr := r.Tracer("t")
	t0 := time.Unix(100, 0)
	ctx, parent := tr.Start(context.Background(), "parent",
		trace.WithTimestamp(t0), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("a", "1"), attribute.Int("b", 2)))
	require.True(t, parent.IsRecording())
	require.True(t, parent.SpanContext().IsValid())
	require.True(t, parent.SpanContext().IsSampled())
	_, child := tr.Start(ctx, "child")
	child.AddEvent("ev", trace.WithAttributes(attribute.Bool("x", true)))
	child.RecordError(errors.New("boom"))
	child.SetStatus(codes.Error, "failed")
	child.End()
	parent.SetAttributes(attribute.String("a", "one"), attribute.String("c", "3"))
	parent.SetName("renamed")
	parent.End(trace.WithTimestamp(t0.Add(time.Second)))
	parent.End() // a second End records nothing
	assert.False(t, parent.IsRecording())

	spans := r.Ended()
	require.Len(t, spans, 2)
	c, p := spans[0], spans[1]
	assert.Equal(t, "child", c.Name)
	assert.Equal(t, p.SpanContext, c.Parent)
	assert.Equal(t, p.SpanContext.TraceID(), c.SpanContext.TraceID())
	assert.NotEqual(t, p.SpanContext.SpanID(), c.SpanContext.SpanID())
	assert.Equal(t, codes.Error, c.Status)
	assert.Equal(t, "failed", c.Description)
	require.Len(t, c.Events, 2)
	assert.Equal(t, "ev", c.Events[0].Name)
	assert.Equal(t, []attribute.KeyValue{attribute.Bool("x", true)}, c.Events[0].Attributes)
	assert.Equal(t, "exception", c.Events[1].Name)

	assert.Equal(t, "renamed", p.Name)
	assert.False(t, p.Parent.IsValid())
	assert.Equal(t, trace.SpanKindClient, p.Kind)
	assert.Equal(t, t0, p.StartTime)
	assert.Equal(t, t0.Add(time.Second), p.EndTime)
	assert.Equal(t, []attribute.KeyValue{attribute.String("a", "one"), attribute.Int("b", 2), attribute.String("c", "3")}, p.Attributes)

	_, root := tr.Start(ctx, "root", trace.WithNewRoot())
	root.End()
	assert.False(t, r.Ended()[2].Parent.IsValid())
	r.Reset()
	assert.Empty(t, r.Ended())
}
