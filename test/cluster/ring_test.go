package cluster_test

import (
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Ring gets a node hook on the shards it has when Instrument runs and on
// shards added later with SetAddrs; keys go to the shard they go to without
// the hook; pipelines and transactions (split per shard by the Ring) give
// the results of plain EVAL; every call runs once.
func TestRingShards(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srvs := []*redistest.Server{redistest.Start(t), redistest.Start(t), redistest.Start(t)}
	admin := map[string]*redis.Client{}
	for _, s := range srvs {
		admin[s.Addr] = testkit.Client(t, s, &redis.Options{Protocol: 2, DisableIdentity: true})
	}
	calls := func(name string, s *redistest.Server) int64 {
		n, err := s.CommandCalls(ctx, name)
		require.NoError(t, err)
		return n
	}
	newRing := func(addrs map[string]string) *redis.Ring {
		rg := redis.NewRing(&redis.RingOptions{Addrs: addrs, MaxRetries: -1})
		t.Cleanup(func() { _ = rg.Close() })
		return rg
	}
	two := map[string]string{"a": srvs[0].Addr, "b": srvs[1].Addr}
	rdb, plain := newRing(two), newRing(two)
	h := scripthook.New(scripthook.WithTracing(false))
	h.Register("incrby", regScript)
	require.NoError(t, h.Install(rdb))

	// Keys land where they land without the hook; each shard got the body
	// once, then EVALSHA.
	l := testkit.NewLedger()
	var tags []string
	for i := 0; i < 12; i++ {
		tags = append(tags, fmt.Sprint("ring-", i))
	}
	landsAsPlain := func(tags []string) map[string]int {
		perShard := map[string]int{}
		for _, tag := range tags {
			key := testkit.LedgerKey(tag)
			shard, err := plain.GetShardClientForKey(key)
			require.NoError(t, err)
			addr := shard.Options().Addr
			assert.Equal(t, int64(1), admin[addr].Exists(ctx, key).Val(), "%s is on %s, as without the hook", key, addr)
			perShard[addr]++
		}
		return perShard
	}
	for round := 0; round < 3; round++ {
		for _, tag := range tags {
			id := fmt.Sprint(round)
			l.RecordCmd(t, tag, id, ledgerCall(ctx, rdb, tag, id))
		}
	}
	perShard := landsAsPlain(tags)
	for _, s := range srvs[:2] {
		require.Positive(t, perShard[s.Addr], "both shards got keys")
		assert.Equal(t, int64(1), calls("eval", s), s.Addr)
		assert.Equal(t, int64(3*perShard[s.Addr]-1), calls("evalsha", s), s.Addr)
	}
	l.Verify(t, plain)

	// Pipelines and transactions, cold: the results of plain EVAL.
	hookTags, plainTags := []string{"rh-0", "rh-1", "rh-2", "rh-3"}, []string{"rp-0", "rp-1", "rp-2", "rp-3"}
	for _, tx := range []bool{false, true} {
		for _, s := range srvs {
			require.NoError(t, admin[s.Addr].ScriptFlush(ctx).Err())
		}
		run := func(rg *redis.Ring, tags []string, sha bool) []string {
			return runBatch(ctx, rg, tx, func(p redis.Pipeliner) {
				for _, s := range clusterShape {
					s.op.do(ctx, p, tags[s.tag], sha)
				}
			})
		}
		want := run(plain, plainTags, false)
		got := run(rdb, hookTags, true)
		// The Ring returns the error of whichever shard finished first, with
		// or without the hook: compare the commands' own results.
		assert.Equal(t, want[:len(want)-1], got[:len(got)-1], "tx=%v", tx)
	}

	// A shard added later gets its own hook: its first call carries the
	// body, the next go by SHA1.
	three := map[string]string{"a": srvs[0].Addr, "b": srvs[1].Addr, "c": srvs[2].Addr}
	rdb.SetAddrs(three)
	plain.SetAddrs(three)
	var later []string
	for i := 0; len(later) < 4; i++ {
		tag := fmt.Sprint("ring-later-", i)
		if shard, err := plain.GetShardClientForKey(testkit.LedgerKey(tag)); err == nil && shard.Options().Addr == srvs[2].Addr {
			later = append(later, tag)
		}
	}
	l = testkit.NewLedger()
	for round := 0; round < 2; round++ {
		for _, tag := range later {
			id := fmt.Sprint(round)
			l.RecordCmd(t, tag, id, ledgerCall(ctx, rdb, tag, id))
		}
	}
	assert.Equal(t, map[string]int{srvs[2].Addr: len(later)}, landsAsPlain(later))
	assert.Equal(t, int64(1), calls("eval", srvs[2]))
	assert.Equal(t, int64(2*len(later)-1), calls("evalsha", srvs[2]))
	l.Verify(t, plain)
	assert.Zero(t, h.Stats().NoScriptPassed)
	assert.Zero(t, h.Stats().NoScriptRepaired)
}
