package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/require"
)

// Scripts the tests share. Each is longer than a SHA1, so that the hook
// sends it by SHA1 (a shorter one goes as written: EVALSHA would be longer).
const (
	// incrScript increments a counter and returns it with the argument:
	// enough to see that a call ran, once, with the right arguments.
	incrScript = "local n = redis.call('INCR', KEYS[1]) return {n, ARGV[1]}"
	// counterScript reads what the commands before it wrote: order matters.
	counterScript = "redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[1])"
	echoScript    = "return {ARGV[1], #KEYS} -- echo: the arguments and the key count"
	brokenScript  = "return + -- this script does not compile, whatever follows"
	regScript     = "return redis.call('INCRBY', KEYS[1], ARGV[1])"
)

// pad makes a script of about n bytes that returns its arguments' count.
func pad(n int) string {
	return "-- " + strings.Repeat("x", n) + "\nreturn #ARGV"
}

// quiet is a Hook with tracing off and opts.
func quiet(opts ...scripthook.Option) *scripthook.Hook {
	return scripthook.New(append([]scripthook.Option{scripthook.WithTracing(false)}, opts...)...)
}

// rig is a server of the test's own with a plain, an admin and a hooked
// client; h is the hook.
func rig(t *testing.T, opts ...scripthook.Option) (*testkit.Rig, *scripthook.Hook) {
	t.Helper()
	h := quiet(opts...)
	return testkit.NewRig(t, h), h
}

// rigWith is rig on srv with clients made from base.
func rigWith(t *testing.T, srv *redistest.Server, base *redis.Options, opts ...scripthook.Option) (*testkit.Rig, *scripthook.Hook) {
	t.Helper()
	h := quiet(opts...)
	return testkit.RigOn(t, srv, base, h), h
}

// learn makes the hook learn what the server lets it run, as any first
// pipeline with a script worth it does (it goes as written with probes), so that tests of later
// batches start from the steady state.
func learn(t *testing.T, rdb *redis.Client) {
	t.Helper()
	_, err := rdb.Pipelined(context.Background(), func(p redis.Pipeliner) error {
		// Twice: a script used once is not worth asking about.
		p.Eval(context.Background(), "return 'learn' -- "+strings.Repeat("l", 40), nil)
		p.Eval(context.Background(), "return 'learn' -- "+strings.Repeat("l", 40), nil)
		return nil
	})
	require.NoError(t, err)
}

// batchOp queues one command; sha says whether to send the registered
// script by SHA1 (the reference client always sends its body).
type batchOp func(p redis.Pipeliner, ctx context.Context, sha bool)

func evalOp(body string, keys []string, args ...interface{}) batchOp {
	return func(p redis.Pipeliner, ctx context.Context, _ bool) { p.Eval(ctx, body, keys, args...) }
}

func regOp(keys []string, args ...interface{}) batchOp {
	return func(p redis.Pipeliner, ctx context.Context, sha bool) {
		if sha {
			p.EvalSha(ctx, testkit.SHA1(regScript), keys, args...)
		} else {
			p.Eval(ctx, regScript, keys, args...)
		}
	}
}

func plainOp(args ...interface{}) batchOp {
	return func(p redis.Pipeliner, ctx context.Context, _ bool) { p.Do(ctx, args...) }
}

// runBatch sends ops as one pipeline or transaction and renders every reply
// and the Exec error.
func runBatch(ctx context.Context, rdb *redis.Client, tx, sha bool, ops []batchOp) []string {
	fn := func(p redis.Pipeliner) error {
		for _, op := range ops {
			op(p, ctx, sha)
		}
		return nil
	}
	var cmds []redis.Cmder
	var err error
	if tx {
		cmds, err = rdb.TxPipelined(ctx, fn)
	} else {
		cmds, err = rdb.Pipelined(ctx, fn)
	}
	return testkit.RenderAll(cmds, err)
}

// bodies is how many script bodies the server received.
func bodies(t *testing.T, r *testkit.Rig) int64 {
	t.Helper()
	return r.Calls(t, "eval") + r.Calls(t, "eval_ro") + r.Calls(t, "script|load")
}

var _ = fmt.Sprint
