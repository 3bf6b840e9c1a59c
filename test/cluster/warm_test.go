package cluster_test

import (
	"context"
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

// warmOps runs one round of calls of the registered ledger script on tags:
// two single calls (one EVALSHA, one EVAL of the body), a pipeline of four
// over the tags, and a transaction of two on the first tag, filing every
// call in l. bySHA false sends every call as EVAL (the reference client,
// for which EVALSHA on a server without the script is NOSCRIPT). It returns
// the round's results without the call ids, and how many round trips the
// caller asked for (one per single call, pipeline and transaction).
func warmOps(ctx context.Context, t *testing.T, c redis.Cmdable, l *testkit.Ledger, tags []string, pre string, bySHA bool) ([]string, int) {
	call := func(c redis.Cmdable, tag, id string, sha bool) *redis.Cmd {
		if sha && bySHA {
			return c.EvalSha(ctx, testkit.SHA1(testkit.LedgerScript), []string{testkit.LedgerKey(tag)}, id)
		}
		return c.Eval(ctx, testkit.LedgerScript, []string{testkit.LedgerKey(tag)}, id)
	}
	var out []string
	for i, sha := range []bool{true, false} {
		id := fmt.Sprint(pre, "s", i)
		cmd := call(c, tags[0], id, sha)
		l.RecordCmd(t, tags[0], id, cmd)
		out = append(out, testkit.Render(cmd))
	}
	for _, tx := range []bool{false, true} {
		var cmds []*redis.Cmd
		var ids, ctags []string
		f := func(p redis.Pipeliner) error {
			n := 4
			if tx {
				n = 2
			}
			for i := 0; i < n; i++ {
				tag := tags[i%len(tags)]
				if tx {
					tag = tags[0]
				}
				id := fmt.Sprint(pre, tx, i)
				cmds = append(cmds, call(p, tag, id, i%2 == 0))
				ids, ctags = append(ids, id), append(ctags, tag)
			}
			return nil
		}
		var err error
		if tx {
			_, err = c.TxPipelined(ctx, f)
		} else {
			_, err = c.Pipelined(ctx, f)
		}
		for i, cmd := range cmds {
			l.RecordCmd(t, ctags[i], ids[i], cmd)
			out = append(out, testkit.Render(cmd))
		}
		out = append(out, "exec: "+testkit.ErrText(err))
	}
	for i := range out {
		out[i] = strings.ReplaceAll(out[i], pre, "")
	}
	return out, 4
}

// In PipelineOptimistic mode a registered script never yields NOSCRIPT to
// a caller (EVALSHA or EVAL, single, pipelined or in a transaction) when
// its slot moves to a primary that never saw it (SCRIPT FLUSH there first;
// a Hook that never sent the script there), after MOVED and after ASK; the
// results are those of a client without the hook running EVAL; the cost
// is at most one SCRIPT LOAD per server per registered script, and the
// extra round trips are counted against the reference client's.
func testWarmScriptsSlotMove(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps := r.Primaries(t)
	a, b, c := ps[0], ps[1], ps[2]
	slot := testkit.KeySlot(r.TagOn(t, "warm", a))
	require.NotEqual(t, slot, testkit.KeySlot("{caps}"))
	tags := testkit.TagsInSlot("warm", slot, 4)
	hookTags, plainTags := tags[:2], tags[2:]
	rdb, h, w := hooked(t, r, nil, scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
	h.Register("ledger", testkit.LedgerScript)
	sp := watchSends(t, rdb)
	plain := r.Client(t, nil)
	psp := watchSends(t, plain)
	l, pl := testkit.NewLedger(), testkit.NewLedger()
	r.FlushScripts(t)

	// Warm: the Hook has the script on a, the slot's owner, and nowhere
	// else.
	learnCaps(t, rdb)
	want, _ := warmOps(ctx, t, plain, pl, plainTags, "warm-", false)
	got, _ := warmOps(ctx, t, rdb, l, hookTags, "warm-", true)
	assert.Equal(t, want, got, "warm")

	phase := func(name string, fresh *redistest.Server) {
		t.Helper()
		sp.Reset()
		psp.Reset()
		w.Reset()
		r.ResetStats(t)
		want, asked := warmOps(ctx, t, plain, pl, plainTags, name+"-", false)
		got, _ := warmOps(ctx, t, rdb, l, hookTags, name+"-", true)
		assert.Equal(t, want, got, name)
		loads, txLoads := sp.Sent("script|load", fresh)-sp.InTx("script|load", fresh), sp.InTx("script|load", fresh)
		txBodies := txLoads + sp.InTx("eval", fresh) // the caller's transaction has one EVAL
		extra := sp.Rounds() - psp.Rounds()
		moved, ask := w.Redirects()
		t.Logf("%s: the new owner %s got %d SCRIPT LOAD outside transactions (%d alone: an extra round trip), %d bodies inside the transaction; hooked %d round trips, plain %d, for %d asked: %d extra; the hooked client met %d MOVED, %d ASK, %d NOSCRIPT",
			name, fresh.Addr, loads, sp.Singles("script|load", fresh), txBodies,
			sp.Rounds(), psp.Rounds(), asked, extra, moved, ask, w.NoScripts())
		t.Logf("%s: hooked batches %v", name, sp.Log())
		assert.LessOrEqual(t, loads, 1, "%s: at most one SCRIPT LOAD per server for the registered script", name)
		assert.LessOrEqual(t, txBodies, 1, "%s: no more bodies in the transaction than the caller's one EVAL", name)
		// The round trips the hook adds are its SCRIPT LOADs sent alone
		// (the totals differ by redirects too, as the clients' slot maps
		// catch up at their own pace).
		assert.LessOrEqual(t, sp.Singles("script|load"), 1, "%s: at most one extra round trip", name)
		assert.Zero(t, sp.Sent("script|load")-sp.Sent("script|load", fresh), "%s: no SCRIPT LOAD elsewhere", name)
	}

	// MOVED: the slot moves to b, which never had it.
	require.NoError(t, r.Admin[b.Addr].ScriptFlush(ctx).Err())
	r.MoveSlot(t, slot, b)
	phase("MOVED", b)

	// ASK: the slot moves on to c, half way: hookTags[0]'s and
	// plainTags[0]'s keys are on c already, the others still on b.
	require.NoError(t, r.Admin[c.Addr].ScriptFlush(ctx).Err())
	m := r.NewSlotMove(t, slot, c)
	m.Begin(t)
	m.Migrate(t, []string{testkit.LedgerKey(hookTags[0]), testkit.LedgerKey(plainTags[0])})
	phase("ASK", c)
	for m.Migrate(t, nil) > 0 {
	}
	m.Finish(t)
	r.MoveSlot(t, slot, a)

	assert.Zero(t, testkit.NoScriptSeen(l))
	assert.Zero(t, h.Stats().NoScriptPassed)
	l.Verify(t, r.Plain)
	pl.Verify(t, r.Plain)
}

// The same after CLUSTER FAILOVER to a replica whose script cache is empty
// (SCRIPT FLUSH on it before the promotion): the promoted replica is a
// server the Hook never sent the script to.
func testWarmScriptsFailover(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps := r.Primaries(t)
	a := ps[2] // one no other test fails over (see testFunctionFailoverUnderLoad)
	replica := r.ReplicaOf(t, a)
	tags := r.TagsOn(t, "warmfo", a, 4)
	hookTags, plainTags := tags[:2], tags[2:]
	rdb, h, w := hooked(t, r, nil, scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
	h.Register("ledger", testkit.LedgerScript)
	sp := watchSends(t, rdb)
	plain := r.Client(t, nil)
	psp := watchSends(t, plain)
	l, pl := testkit.NewLedger(), testkit.NewLedger()
	learnCaps(t, rdb)
	warmOps(ctx, t, plain, pl, plainTags, "warm-", false)
	warmOps(ctx, t, rdb, l, hookTags, "warm-", true)

	require.NoError(t, r.Admin[replica.Addr].ScriptFlush(ctx).Err(), "SCRIPT FLUSH on a replica is allowed")
	failover(t, r, replica, testkit.KeySlot(tags[0]))
	sp.Reset()
	psp.Reset()
	w.Reset()
	r.ResetStats(t)
	want, asked := warmOps(ctx, t, plain, pl, plainTags, "promoted-", false)
	got, _ := warmOps(ctx, t, rdb, l, hookTags, "promoted-", true)
	assert.Equal(t, want, got)
	loads, txBodies := sp.Sent("script|load", replica)-sp.InTx("script|load", replica), sp.InTx("script|load", replica)+sp.InTx("eval", replica)
	extra := sp.Rounds() - psp.Rounds()
	moved, _ := w.Redirects()
	t.Logf("promoted replica %s: %d SCRIPT LOAD outside transactions (%d alone: an extra round trip), %d bodies inside the transaction; hooked %d round trips, plain %d, for %d asked: %d extra; %d MOVED, %d NOSCRIPT met",
		replica.Addr, loads, sp.Singles("script|load", replica), txBodies, sp.Rounds(), psp.Rounds(), asked, extra, moved, w.NoScripts())
	t.Logf("hooked batches %v", sp.Log())
	assert.LessOrEqual(t, loads, 1)
	assert.LessOrEqual(t, txBodies, 1)
	assert.LessOrEqual(t, sp.Singles("script|load"), 1, "at most one extra round trip")
	failover(t, r, a, testkit.KeySlot(tags[0])) // back as it was

	assert.Zero(t, testkit.NoScriptSeen(l))
	assert.Zero(t, h.Stats().NoScriptPassed)
	l.Verify(t, r.Plain)
	pl.Verify(t, r.Plain)
}

// The same on a standalone server restarted without persistence, several
// times: after each restart the registered script costs at most one SCRIPT
// LOAD and one extra round trip, and no caller sees NOSCRIPT. The first
// command after a restart may meet the closed connection, with or without
// the hook (MaxRetries -1); such calls are filed as unknown.
func TestWarmScriptsRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t)
	h := scripthook.New(scripthook.WithTracing(false), scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
	h.Register("ledger", testkit.LedgerScript)
	base := &redis.Options{MaxRetries: -1}
	rdb, plain := testkit.Client(t, srv, base), testkit.Client(t, srv, base)
	require.NoError(t, h.Install(rdb))
	sp, psp := newSendSpy(), newSendSpy()
	rdb.AddHook(sp.hookFor(srv.Addr))
	plain.AddHook(psp.hookFor(srv.Addr))
	// Standalone, a fresh Hook learns what the user may run from its first
	// pipeline, as on a cluster.
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, capsScript, []string{"caps"})
		p.EvalRO(ctx, capsScript, []string{"caps"})
		return nil
	})
	require.NoError(t, err)
	for round := 0; round < 3; round++ {
		l, pl := testkit.NewLedger(), testkit.NewLedger()
		if round > 0 {
			require.NoError(t, srv.Restart())
			// Let both clients meet the closed connections, as a caller
			// would, on a command that is no script.
			for _, c := range []*redis.Client{rdb, plain} {
				for i := 0; i < 3 && c.Ping(ctx).Err() != nil; i++ {
				}
			}
		}
		sp.Reset()
		psp.Reset()
		require.NoError(t, srv.ResetStats(ctx))
		tags := []string{fmt.Sprint("rs-h", round), fmt.Sprint("rs-h2", round)}
		ptags := []string{fmt.Sprint("rs-p", round), fmt.Sprint("rs-p2", round)}
		// Twice in the server's lifetime: the second costs nothing more
		// outside transactions.
		var asked int
		for _, pre := range []string{"a-", "b-"} {
			want, n := warmOps(ctx, t, plain, pl, ptags, pre, false)
			got, _ := warmOps(ctx, t, rdb, l, tags, pre, true)
			assert.Equal(t, want, got, "round %d", round)
			asked += n
		}
		loads, err := srv.CommandCalls(ctx, "script|load")
		require.NoError(t, err)
		require.Equal(t, int64(sp.Sent("script|load")), loads, "the spy saw every SCRIPT LOAD")
		outside, txBodies := sp.Sent("script|load")-sp.InTx("script|load"), sp.InTx("script|load")+sp.InTx("eval")
		extra := sp.Rounds() - psp.Rounds()
		t.Logf("round %d: %d SCRIPT LOAD outside transactions (%d alone: an extra round trip), %d bodies inside the transaction; %d round trips, plain %d, for %d asked: %d extra",
			round, outside, sp.Singles("script|load"), txBodies, sp.Rounds(), psp.Rounds(), asked, extra)
		t.Logf("hooked: %v; plain: %v", sp.Log(), psp.Log())
		assert.LessOrEqual(t, outside, 1, "round %d", round)
		// Transactions trust no belief, in optimistic mode too (a NOSCRIPT
		// inside one cannot be repaired): each carries the body once, as
		// the hook's SCRIPT LOAD inside its MULTI, in no extra round trip.
		assert.LessOrEqual(t, txBodies, 2, "round %d: one body per transaction", round)
		assert.LessOrEqual(t, extra, 1, "round %d", round)
		assert.Zero(t, testkit.NoScriptSeen(l), "round %d", round)
		l.Verify(t, plain)
		pl.Verify(t, plain)
	}
	assert.Zero(t, h.Stats().NoScriptPassed)
}
