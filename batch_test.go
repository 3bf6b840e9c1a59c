package scripthook

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipe sends ops as one pipeline and returns the names the server saw.
func pipe(t *testing.T, rdb *redis.Client, spy *testkit.Spy, fn func(p redis.Pipeliner)) []string {
	t.Helper()
	spy.Reset()
	_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error { fn(p); return nil })
	require.NoError(t, err)
	return spy.Names()
}

// The first batch of a Hook that does not know what the server lets it run
// goes as written, with probes that run nothing; from then on a script used
// more than once carries its body in one SCRIPT LOAD and runs by SHA1, and
// one used once goes as written.
func TestBatchProbeThenLoad(t *testing.T) {
	f, spy := &testkit.Fake{}, &testkit.Spy{}
	rdb := fakeClient(f, quiet(), spy)
	a, b := body("a"), body("b")
	batch := func(p redis.Pipeliner) {
		p.Eval(t.Context(), a, []string{"k"})
		p.Set(t.Context(), "x", 1, 0)
		p.Eval(t.Context(), a, []string{"k"})
		p.Eval(t.Context(), b, []string{"k"})
	}
	assert.Equal(t, []string{"eval", "set", "eval", "eval", "evalsha", "script|load"}, pipe(t, rdb, spy, batch), "probes for what the batch needs only")
	assert.Equal(t, []string{"script|load", "evalsha", "set", "evalsha", "eval"}, pipe(t, rdb, spy, batch))
	assert.Equal(t, 4, f.Stats().Runs[a])
	assert.Equal(t, 2, f.Stats().Runs[b])
}

// learned returns a client whose Hook already knows the server's answers.
func learned(t *testing.T, f *testkit.Fake, h *Hook, hooks ...redis.Hook) *redis.Client {
	t.Helper()
	rdb := fakeClient(f, append([]redis.Hook{h}, hooks...)...)
	_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
		// Twice: a script used once is not worth asking about.
		p.Eval(t.Context(), body("probe"), []string{"k"})
		p.Eval(t.Context(), body("probe"), []string{"k"})
		return nil
	})
	require.NoError(t, err)
	f.Reset()
	return rdb
}

// A MULTI the caller writes inside a pipeline is a transaction: the body
// goes before it (never inside, where EXEC's reply would grow), and a
// DISCARD that drops a use leaves the later one working.
func TestBatchHandWrittenMulti(t *testing.T) {
	f, spy := &testkit.Fake{}, &testkit.Spy{}
	rdb := learned(t, f, quiet(), spy)
	a := body("multi")
	names := pipe(t, rdb, spy, func(p redis.Pipeliner) {
		p.Do(t.Context(), "multi")
		p.Eval(t.Context(), a, []string{"k"})
		p.Do(t.Context(), "discard")
		p.Eval(t.Context(), a, []string{"k"})
	})
	// Inside the MULTI the first use goes as written: were the body not to
	// compile, the SCRIPT LOAD before the MULTI would fail and leave a
	// NOSCRIPT in EXEC's reply where plain EVAL gives the compile error.
	assert.Equal(t, []string{"script|load", "multi", "eval", "discard", "evalsha"}, names)
	assert.Equal(t, 1, f.Stats().Runs[a], "the discarded use did not run")
	assert.Zero(t, f.Stats().NoScript)
}

// The batch's own SCRIPT FLUSH: uses after it carry the body again.
func TestBatchOwnFlush(t *testing.T) {
	f, spy := &testkit.Fake{}, &testkit.Spy{}
	rdb := learned(t, f, quiet(), spy)
	a := body("flush")
	names := pipe(t, rdb, spy, func(p redis.Pipeliner) {
		p.Eval(t.Context(), a, []string{"k"})
		p.Eval(t.Context(), a, []string{"k"})
		p.Do(t.Context(), []byte("SCRIPT"), []byte("flush"))
		p.Eval(t.Context(), a, []string{"k"})
		p.Eval(t.Context(), a, []string{"k"})
	})
	assert.Equal(t, []string{"script|load", "evalsha", "evalsha", "script|flush", "script|load", "evalsha", "evalsha"}, names)
	assert.Zero(t, f.Stats().NoScript)
}

// Optimistic mode: a warm batch carries no body; after a flush its failed
// uses are re-sent in one round trip when nothing that succeeded follows
// them, and otherwise keep NOSCRIPT (nothing runs out of order).
func TestBatchOptimisticRetry(t *testing.T) {
	f := &testkit.Fake{}
	h := quiet(WithPipelineMode(PipelineOptimistic))
	rdb := learned(t, f, h)
	a := body("opt")
	scripts := func(p redis.Pipeliner) error {
		p.Eval(t.Context(), a, []string{"k"})
		p.Eval(t.Context(), a, []string{"k"})
		return nil
	}
	_, err := rdb.Pipelined(t.Context(), scripts)
	require.NoError(t, err)
	f.Reset()
	_, err = rdb.Pipelined(t.Context(), scripts)
	require.NoError(t, err)
	assert.Equal(t, map[string]int{"evalsha": 2}, f.Stats().Calls, "warm: no body")

	f.Flush()
	f.Reset()
	_, err = rdb.Pipelined(t.Context(), scripts)
	require.NoError(t, err)
	st := f.Stats()
	assert.Equal(t, 2, st.RoundTrips, "one retry")
	assert.Equal(t, 2, st.Runs[a])

	f.Flush()
	cmds, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
		p.Eval(t.Context(), a, []string{"k"})
		p.Set(t.Context(), "after", 1, 0)
		return nil
	})
	require.Error(t, err)
	assert.True(t, redis.HasErrorPrefix(cmds[0].Err(), "NOSCRIPT"), "kept: the SET after it ran")
	assert.Equal(t, int64(1), h.Stats().NoScriptPassed)
}

// A ClusterClient re-sends redirected commands, the hook's own among them,
// to another node after the hook has returned: what they need travels with
// them, so the new node gets the bodies even after the cache forgot them.
func TestBatchResentCommandsCarryTheirScript(t *testing.T) {
	h := quiet(WithCacheSize(4))
	a, spy := &testkit.Fake{}, &testkit.Spy{Keep: true}
	rdb := learned(t, a, h, spy)
	spy.Reset()
	_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
		for use := 0; use < 2; use++ {
			for i := 0; i < 12; i++ {
				p.Eval(t.Context(), body(fmt.Sprint("resend", i)), []string{"k"})
			}
		}
		return nil
	})
	require.NoError(t, err)
	// What go-redis re-sends after MOVED: every keyed command it gave the
	// node (the hook's keyless SCRIPT LOADs are not redirected).
	var resent []redis.Cmder
	rewrites := 0
	for _, c := range spy.Kept()[0] {
		switch c.(type) {
		case *loadCmd:
		case *rewritten:
			rewrites++
			resent = append(resent, c)
		default:
			resent = append(resent, c)
		}
	}
	require.Len(t, resent, 24)
	require.Positive(t, rewrites)
	require.LessOrEqual(t, h.Stats().Scripts, 4, "the cache forgot most of them")

	// The other node: a node hook of the same Hook, with its own state.
	b := &testkit.Fake{}
	n := &nodeHook{engine: engine{sh: h.sh, srv: h.sh.newServerState(), cluster: true}}
	require.NoError(t, n.ProcessPipelineHook(b.ProcessPipeline)(context.Background(), resent))
	st := b.Stats()
	assert.Zero(t, st.NoScript)
	assert.Equal(t, 4, st.Calls["script|load"], "as many as the pin budget")
	for i := 0; i < 12; i++ {
		assert.Equal(t, 2, st.Runs[body(fmt.Sprint("resend", i))])
	}
}

// Only an EVALSHA that went out teaches that the user may run EVALSHA: a
// caller's EVALSHA the hook sent as EVAL (a registered script's first use
// in a transaction) proves nothing about it.
func TestBatchLearnsFromWhatWentOut(t *testing.T) {
	f, spy := &testkit.Fake{}, &testkit.Spy{}
	h := quiet()
	sha := h.Register("reg", body("reg"))
	rdb := fakeClient(f, h, spy)
	_, err := rdb.TxPipelined(t.Context(), func(p redis.Pipeliner) error {
		p.EvalSha(t.Context(), sha, []string{"k"})
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"multi", "eval", "exec"}, spy.Names(), "the first use carries the body")
	assert.Equal(t, capUnknown, h.own.srv.can(capEvalSha), "an EVAL proves nothing about EVALSHA")

	_, err = rdb.TxPipelined(t.Context(), func(p redis.Pipeliner) error {
		p.EvalSha(t.Context(), sha, []string{"k"})
		p.EvalSha(t.Context(), sha, []string{"k"})
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, capYes, h.own.srv.can(capEvalSha), "the second use went as EVALSHA and ran")
}
