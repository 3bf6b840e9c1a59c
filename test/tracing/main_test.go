// Package tracing_test checks every claim of README's "OpenTelemetry"
// section with the real OpenTelemetry SDK (sdktrace with a SpanRecorder and
// a sampler that records what it is shown at span creation, sdkmetric with
// a ManualReader) against real redis-server processes: span names,
// attributes at creation and at the end, events, status and error
// attributes, the duration metric, the bound on names, function calls, and
// the spans of a Cluster and a Ring.
package tracing_test

import (
	"os"
	"testing"

	"github.com/scripthook/scripthook/internal/redistest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	redistest.CloseShared()
	os.Exit(code)
}
