// Package faults_test puts scripthook under faults on real redis-server
// processes: server errors produced at the exact moment the hook repairs a
// NOSCRIPT (faults_test.go), callers whose context ends while their repair
// is in flight (cancel_test.go), a storm of callers meeting lasting errors
// on the fake server (storm_test.go), and soaks that flush the script
// cache, kill connections and restart the server under 16 workers
// (soak_test.go). What a hooked caller gets is compared with what a plain
// go-redis client gets in the same situation, and every counting call is
// filed in an exactly-once ledger (testkit.Ledger).
//
//	go test -race ./test/faults/
//	SCRIPTHOOK_REQUIRE_REDIS=1 go test -race -run TestSoak -soak 60s -v -timeout 900s ./test/faults/
package faults_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/scripthook/scripthook/internal/redistest"
	"go.uber.org/goleak"
)

// TestMain fails the package when a goroutine outlives its tests: the
// servers are stopped and the clients closed in the tests' cleanups, so
// whatever is left belongs to the hook or a client it failed to release.
func TestMain(m *testing.M) {
	code := m.Run()
	redistest.CloseShared()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}
