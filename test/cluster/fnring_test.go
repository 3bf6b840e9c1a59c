package cluster_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Ring of two shards with the hook: FCALL and FCALL_RO give the results
// of a Ring without the hook whose shards had the library loaded by hand;
// each shard gets the library from the hook once; after another client's
// FUNCTION FLUSH on one shard, the next calls there are repaired (no error
// reaches the caller, each call runs once) with one load on that shard
// only, single and pipelined.
func TestRingFunctions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srvs := []*redistest.Server{redistest.Start(t), redistest.Start(t)}
	admin := map[string]*redis.Client{}
	for _, s := range srvs {
		admin[s.Addr] = testkit.Client(t, s, &redis.Options{Protocol: 2, DisableIdentity: true})
	}
	calls := func(name string, s *redistest.Server) int64 {
		n, err := s.CommandCalls(ctx, name)
		require.NoError(t, err)
		return n
	}
	reset := func() {
		for _, s := range srvs {
			require.NoError(t, s.ResetStats(ctx))
		}
	}
	addrs := map[string]string{"a": srvs[0].Addr, "b": srvs[1].Addr}
	newRing := func() *redis.Ring {
		rg := redis.NewRing(&redis.RingOptions{Addrs: addrs, MaxRetries: -1})
		t.Cleanup(func() { _ = rg.Close() })
		return rg
	}
	rdb, plain := newRing(), newRing()
	h := scripthook.New(scripthook.WithTracing(false))
	_, err := h.RegisterLibrary(fnLib)
	require.NoError(t, err)
	require.NoError(t, h.Install(rdb))
	sp := watchSends(t, rdb)

	// Tags on each shard, as the Ring places them.
	onShard := func(prefix string, s *redistest.Server, n int) []string {
		var tags []string
		for i := 0; len(tags) < n; i++ {
			tag := fmt.Sprint(prefix, "-", i)
			shard, err := plain.GetShardClientForKey(testkit.LedgerKey(tag))
			require.NoError(t, err)
			if shard.Options().Addr == s.Addr {
				tags = append(tags, tag)
			}
		}
		return tags
	}
	var hookTags, plainTags []string
	for _, s := range srvs {
		hookTags = append(hookTags, onShard("ringfn-h", s, 3)...)
		plainTags = append(plainTags, onShard("ringfn-p", s, 3)...)
	}
	l := testkit.NewLedger()
	run := func(c *redis.Ring, tags []string, pre string, file bool) []string {
		var out []string
		rec := func(tag, id string, cmd *redis.Cmd) {
			if file {
				l.RecordCmd(t, tag, id, cmd)
			}
		}
		for _, tag := range tags {
			cmd := fnCall(ctx, c, tag, pre+"s")
			rec(tag, pre+"s", cmd)
			out = append(out, testkit.Render(cmd), testkit.Render(fnPeek(ctx, c, tag, pre+"s")))
		}
		var cmds []*redis.Cmd
		out = append(out, runBatch(ctx, c, false, func(p redis.Pipeliner) {
			for _, tag := range tags {
				cmds = append(cmds, fnCall(ctx, p, tag, pre+"p"))
				fnPeek(ctx, p, tag, pre+"p")
			}
		})...)
		for i, cmd := range cmds {
			rec(tags[i], pre+"p", cmd)
		}
		// Every phase has ids of its own; the results are compared
		// without them.
		for i := range out {
			out[i] = strings.ReplaceAll(out[i], pre, "")
		}
		return out
	}
	for _, s := range srvs {
		require.NoError(t, admin[s.Addr].FunctionLoad(ctx, fnLib).Err())
	}
	want := run(plain, plainTags, "", false)
	for _, s := range srvs {
		require.NoError(t, admin[s.Addr].FunctionFlush(ctx).Err())
	}
	reset()
	assert.Equal(t, want, run(rdb, hookTags, "cold-", true))
	for _, s := range srvs {
		assert.Equal(t, int64(1), calls("function|load", s), "%s: the library once", s.Addr)
	}

	// Another client flushes shard b's libraries: the hook repairs.
	require.NoError(t, admin[srvs[1].Addr].FunctionFlush(ctx).Err())
	reset()
	before := h.Stats()
	assert.Equal(t, want, run(rdb, hookTags, "flushed-", true))
	after := h.Stats()
	assert.Zero(t, calls("function|load", srvs[0]), "shard a still has it")
	assert.Equal(t, int64(1), calls("function|load", srvs[1]), "shard b: one load")
	assert.Positive(t, after.FunctionRepaired-before.FunctionRepaired, "the first call on b was repaired")
	assert.Zero(t, after.FunctionNotFoundPassed)
	t.Logf("after the flush: %d repaired, %d loads; sends %s", after.FunctionRepaired-before.FunctionRepaired,
		after.FunctionLoads-before.FunctionLoads, sp)

	// A flush again, then a pipeline first: the not-found calls are
	// retried with the load.
	require.NoError(t, admin[srvs[1].Addr].FunctionFlush(ctx).Err())
	reset()
	var cmds []*redis.Cmd
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, tag := range hookTags {
			cmds = append(cmds, fnCall(ctx, p, tag, "pipe-first"))
		}
		return nil
	})
	require.NoError(t, err)
	for i, cmd := range cmds {
		assert.Equal(t, testkit.Ran, l.RecordCmd(t, hookTags[i], "pipe-first", cmd))
	}
	assert.Equal(t, int64(1), calls("function|load", srvs[1]))
	assert.Zero(t, h.Stats().FunctionNotFoundPassed)
	l.Verify(t, plain)
}
