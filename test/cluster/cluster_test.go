package cluster_test

import (
	"testing"

	"github.com/scripthook/scripthook/internal/testkit"
)

// clusterTests flush scripts, move slots, fail over primaries and count
// commands on every node, so they run one at a time on a cluster no other
// test uses.
var clusterTests = []struct {
	name string
	fn   func(*testing.T, *testkit.ClusterRig)
}{
	{"NodeHooks", testNodeHooks},
	{"InstrumentUnreachable", testInstrumentUnreachable},
	{"Spans", testSpans},
	{"ReadOnlyRouting", testReadOnlyRouting},
	{"KeylessScripts", testKeylessScripts},
	{"SameResultsAsPlain", testSameResultsAsPlain},
	{"PipelineBodies", testPipelineBodies},
	{"AutoPipeline", testAutoPipeline},
	{"TxPipeline", testTxPipeline},
	{"Redirects", testRedirects},
	{"ReshardUnderLoad", testReshardUnderLoad},
	{"FailoverUnderLoad", testFailoverUnderLoad},
	{"FunctionsEveryPrimary", testFunctionsEveryPrimary},
	{"FunctionsReadOnlyRouting", testFunctionsReadOnlyRouting},
	{"FunctionReshardUnderLoad", testFunctionReshardUnderLoad},
	{"FunctionFailoverUnderLoad", testFunctionFailoverUnderLoad},
	{"WarmScriptsSlotMove", testWarmScriptsSlotMove},
	{"WarmScriptsFailover", testWarmScriptsFailover},
}

// TestCluster runs clusterTests in turn on a cluster of its own, in
// parallel with the package's other tests, which have servers of their own.
// (One cluster for all: go test runs GOMAXPROCS parallel tests at a time,
// and a second cluster would cost more than the tests it would overlap.)
func TestCluster(t *testing.T) {
	t.Parallel()
	r := testkit.NewClusterRig(t, testkit.StartCluster(t))
	for _, tc := range clusterTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, r) })
	}
}
