// Package fuzz_test is scripthook's differential fuzzer: the same program of
// script and plain commands runs through a plain go-redis client and a
// hooked one, against twin real redis-server processes, and every reply,
// every error and the final server state must be the same.
package fuzz_test

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
