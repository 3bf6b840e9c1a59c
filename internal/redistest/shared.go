package redistest

import (
	"sync"
	"testing"
)

// shared is the per-test-binary cluster behind SharedCluster.
var shared struct {
	mu     sync.Mutex
	c      *Cluster
	err    error // a failed start is remembered, so later tests fail fast
	closed bool
}

// SharedCluster returns one 3-primary/3-replica cluster per test binary,
// started on the first call; later calls, also from parallel tests, get the
// same cluster. Starting a cluster takes seconds, so tests that only need
// "a cluster" should share it, use their own keys, and not restart or fail
// over its nodes (use NewCluster for that). It skips like Require when Redis
// is not installed. Call CloseShared from TestMain after m.Run; on Linux the
// nodes die with the test binary even if that is forgotten.
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	Require(t)
	requireBinary(t, cliBin(), "redis-cli (or valkey-cli)")
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.closed {
		t.Fatal("redistest: SharedCluster called after CloseShared")
	}
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = NewCluster(3, 1)
	}
	if shared.err != nil {
		t.Fatalf("redistest: starting shared cluster: %v", shared.err)
	}
	return shared.c
}

// CloseShared stops the cluster started by SharedCluster, if any. It is
// meant for TestMain after m.Run and is a no-op when no test used the
// shared cluster.
func CloseShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.closed = true
	if shared.c != nil {
		shared.c.Close()
	}
}
