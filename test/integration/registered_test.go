package integration_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A registered script is on a server before or with its first call there,
// whatever the batch and whatever the hook knows of the server: the
// caller's EVALSHA of it gives what plain EVAL of its body gives, in a
// Hook's very first pipeline or transaction (when it does not yet know
// what the user may run), after SCRIPT FLUSH by another client, singly.
func TestRegisteredWarmEverywhere(t *testing.T) {
	t.Parallel()
	ops := []batchOp{regOp([]string{"r"}, 2), plainOp("set", "x", "1"), regOp([]string{"r"}, 3)}
	for _, tx := range []bool{false, true} {
		r, h := rig(t)
		h.Register("incrby", regScript)
		ctx := t.Context()
		want := runBatch(ctx, r.Plain, tx, false, ops)
		require.NoError(t, r.Plain.FlushDB(ctx).Err())
		for round := 0; round < 3; round++ {
			r.FlushScripts(t) // by another client: the hook still believes
			got := runBatch(ctx, r.Hooked, tx, true, ops)
			assert.Equal(t, want, got, "tx=%v round %d", tx, round)
			require.NoError(t, r.Plain.FlushDB(ctx).Err())
			if round == 0 {
				want = runBatch(ctx, r.Plain, tx, false, ops)
				require.NoError(t, r.Plain.FlushDB(ctx).Err())
			}
		}
		r.FlushScripts(t)
		n, err := r.Hooked.EvalSha(ctx, testkit.SHA1(regScript), []string{"s"}, 5).Result()
		require.NoError(t, err, "tx=%v", tx)
		assert.Equal(t, int64(5), n)
	}
}

// A registered body that does not compile: Register promises its calls
// behave as if the server had it, so a caller's EVALSHA of it gets the
// compile error plain EVAL gives (where plain EVALSHA would get NOSCRIPT),
// singly and as a transaction's first use; in a pipeline it gets one or the
// other, never anything else, and nothing runs twice.
func TestRegisteredCompileError(t *testing.T) {
	t.Parallel()
	const bad = "return +"
	r, h := rig(t)
	sha := h.Register("bad", bad)
	ctx := t.Context()
	compileErr := testkit.ErrText(r.Plain.Eval(ctx, bad, nil).Err())
	require.Contains(t, compileErr, "Error compiling script")

	assert.Equal(t, compileErr, testkit.ErrText(r.Hooked.EvalSha(ctx, sha, nil).Err()), "single")

	r2, h2 := rig(t)
	h2.Register("bad", bad)
	cmds, err := r2.Hooked.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.EvalSha(ctx, sha, nil)
		p.Incr(ctx, "n")
		return nil
	})
	require.Len(t, cmds, 2)
	assert.Equal(t, compileErr, testkit.ErrText(cmds[0].Err()), "transaction")
	assert.Equal(t, compileErr, testkit.ErrText(err))
	assert.Equal(t, "1", r2.Plain.Get(ctx, "n").Val(), "the rest of the transaction ran once")

	for i := 0; i < 2; i++ {
		cmds, _ = r.Hooked.Pipelined(context.Background(), func(p redis.Pipeliner) error {
			p.EvalSha(ctx, sha, nil)
			return nil
		})
		got := testkit.ErrText(cmds[0].Err())
		if got != compileErr {
			assert.True(t, redis.HasErrorPrefix(cmds[0].Err(), "NOSCRIPT"), "pipeline %d: %s", i, got)
		}
	}
}
