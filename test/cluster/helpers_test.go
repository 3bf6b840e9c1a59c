package cluster_test

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

const (
	// counterScript reads what the commands before it wrote: order matters.
	counterScript = "redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[1])"
	echoScript    = "return {ARGV[1], #KEYS}"
	brokenScript  = "return +"
	// regScript is the script tests register.
	regScript = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
	// incrScript increments a counter and returns it with the argument:
	// enough to see that a call ran, once, with the right arguments.
	incrScript = "local n = redis.call('INCR', KEYS[1]) return {n, ARGV[1]}"
	// roScript reads only: it runs on replicas under read-only routing.
	roScript = "return {ARGV[1], redis.call('EXISTS', KEYS[1])}"
	// replicaScript is a keyless read-only script long enough that EVALSHA_RO
	// is shorter than EVAL_RO with it.
	replicaScript = "return 'a read-only script that runs on a replica'"
	// capsScript is what learnCaps runs.
	capsScript = "return redis.call('EXISTS', KEYS[1]) -- capabilities"
)

// bigIncr is incrScript with enough padding that a batch using it twice on
// one node is shorter with the hook's SCRIPT LOAD and SHA1s than with the
// bodies.
var bigIncr = incrScript + " -- " + strings.Repeat("p", 200)

// hooked returns a new ClusterClient with a new Hook installed before its
// first use, so that every node it ever creates gets its node hook, and a
// NodeSpy after each node hook.
func hooked(t *testing.T, r *testkit.ClusterRig, tweak func(*redis.ClusterOptions), opts ...scripthook.Option) (*redis.ClusterClient, *scripthook.Hook, *testkit.NodeSpy) {
	t.Helper()
	cc := r.Client(t, tweak)
	h := scripthook.New(append([]scripthook.Option{scripthook.WithTracing(false)}, opts...)...)
	require.NoError(t, h.Install(cc))
	return cc, h, testkit.WatchNodes(t, cc)
}

// learnCaps lets a fresh Hook learn what the user may run: its first
// pipeline with script commands ends with the hook's probes, and what one
// node answered holds for the Hook's other nodes. Until then pipelines go
// as written and transactions, which never probe, too.
func learnCaps(t *testing.T, c redis.UniversalClient) {
	t.Helper()
	ctx := t.Context()
	_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, capsScript, []string{"{caps}:k"})
		p.EvalRO(ctx, capsScript, []string{"{caps}:k"})
		return nil
	})
	require.NoError(t, err)
}

// ledgerCall runs (or, on a pipeline, queues) one call of the ledger's
// script for tag with call id id.
func ledgerCall(ctx context.Context, c redis.Cmdable, tag, id string) *redis.Cmd {
	return c.Eval(ctx, testkit.LedgerScript, []string{testkit.LedgerKey(tag)}, id)
}

// runBatch runs one pipeline or transaction and renders every reply and
// the Exec error.
func runBatch(ctx context.Context, rdb redis.UniversalClient, tx bool, fn func(p redis.Pipeliner)) []string {
	var cmds []redis.Cmder
	var err error
	f := func(p redis.Pipeliner) error { fn(p); return nil }
	if tx {
		cmds, err = rdb.TxPipelined(ctx, f)
	} else {
		cmds, err = rdb.Pipelined(ctx, f)
	}
	return testkit.RenderAll(cmds, err)
}

// doer is what clients and pipelines have in common.
type doer interface {
	redis.Cmdable
	Do(ctx context.Context, args ...interface{}) *redis.Cmd
}

// clusterOp queues (or, for single commands, runs) one command on tag's
// keys; sha says whether the registered script goes by SHA1 (the reference
// client always sends its body). script marks a script command.
type clusterOp struct {
	script bool
	do     func(ctx context.Context, c doer, tag string, sha bool) redis.Cmder
}

func cEval(body string, nkeys int, args ...interface{}) clusterOp {
	return clusterOp{true, func(ctx context.Context, c doer, tag string, _ bool) redis.Cmder {
		keys := []string{"{" + tag + "}:a", "{" + tag + "}:b"}[:nkeys]
		return c.Eval(ctx, body, keys, args...)
	}}
}

func cReg(arg int) clusterOp {
	return clusterOp{true, func(ctx context.Context, c doer, tag string, sha bool) redis.Cmder {
		keys := []string{"{" + tag + "}:r"}
		if sha {
			return c.EvalSha(ctx, testkit.SHA1(regScript), keys, arg)
		}
		return c.Eval(ctx, regScript, keys, arg)
	}}
}

func cSet(v string) clusterOp {
	return clusterOp{false, func(ctx context.Context, c doer, tag string, _ bool) redis.Cmder {
		return c.Do(ctx, "set", "{"+tag+"}:a", v)
	}}
}

// clusterShape is a mix of script commands for tags on every primary.
var clusterShape = []struct {
	tag int // index into the tags, one per primary and a fourth
	op  clusterOp
}{
	{0, cSet("1")},
	{0, cEval(counterScript, 1)},
	{1, cEval(counterScript, 1)},
	{2, cEval(counterScript, 1)},
	{0, cEval(echoScript, 0, "keyless")},
	{1, cReg(2)},
	{2, cEval(brokenScript, 1)},
	{2, cEval("return redis.error_reply('MYERR custom')", 1)},
	{0, cEval(counterScript, 1)},
	{1, cSet("str")},
	{1, cEval(counterScript, 1)}, // a runtime error: INCR on "str"
	{3, cEval(counterScript, 2)},
	{2, cReg(3)},
	{0, cEval("return nil", 1)},
	{3, cEval(echoScript, 2, "two keys")},
}

// shapeBodies is how many script bodies the reference client sends for one
// run of clusterShape: one per script command.
func shapeBodies() int {
	n := 0
	for _, s := range clusterShape {
		if s.op.script {
			n++
		}
	}
	return n
}

func attrsOf(s sdktrace.ReadOnlySpan) map[string]attribute.Value {
	m := map[string]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value
	}
	return m
}
