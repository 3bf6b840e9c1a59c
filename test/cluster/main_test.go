// Package cluster_test checks scripthook on the clients that spread
// commands over several servers: a ClusterClient on a real 3-primary/
// 3-replica Redis Cluster (node hooks, routing, redirects, resharding and
// failover under load), a Ring, and a Sentinel FailoverClient. Every result
// is compared with a client without the hook; every counting script call
// is filed in an exactly-once ledger (testkit.Ledger).
//
// The tests that flush, reshard or fail over cluster nodes run one after
// the other as subtests of TestCluster, on a cluster of their own, while
// the tests with servers of their own run in parallel with them.
package cluster_test

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
