// Package security_test checks, against real redis-server processes, that
// nothing scripthook exports (spans, metrics, Stats, the OpenTelemetry error
// log) carries a key, an argument, a script body or a password, and that the
// hook never runs a body under a SHA1 it did not take from that very body.
package security_test

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.uber.org/goleak"
)

// secToken marks every secret; it must appear nowhere the hook exports.
const secToken = "s3cr3t"

// logged collects what OpenTelemetry's global error handler is given, the
// only log scripthook writes to, for the whole test binary.
var logged errorLog

type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Handle(err error) {
	l.mu.Lock()
	l.msgs = append(l.msgs, err.Error())
	l.mu.Unlock()
}

func (l *errorLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.msgs, "\n")
}

func TestMain(m *testing.M) {
	otel.SetErrorHandler(&logged)
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
