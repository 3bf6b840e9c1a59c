package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// After RegisterLibrary, FCALL and FCALL_RO on keys of every primary's
// slots, single and pipelined: every primary gets the library from the
// hook once, before its first call; replicas get none from the hook (they
// have it by replication); the results are those of a client without the
// hook on a cluster where the library was loaded by hand on every primary.
func testFunctionsEveryPrimary(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps, reps := r.Primaries(t), r.Replicas(t)
	var hookTags, plainTags []string
	for _, p := range ps {
		hookTags = append(hookTags, r.TagsOn(t, "fnall-h", p, 2)...)
		plainTags = append(plainTags, r.TagsOn(t, "fnall-p", p, 2)...)
	}
	run := func(c *redis.ClusterClient, tags []string) []string {
		var out []string
		for round := 0; round < 2; round++ {
			for _, tag := range tags {
				out = append(out, testkit.Render(fnCall(ctx, c, tag, fmt.Sprint("s", round))))
				out = append(out, testkit.Render(fnPeek(ctx, c, tag, fmt.Sprint("s", round))))
			}
		}
		out = append(out, runBatch(ctx, c, false, func(p redis.Pipeliner) {
			for _, tag := range tags {
				fnCall(ctx, p, tag, "p0")
				fnPeek(ctx, p, tag, "p0")
				fnCall(ctx, p, tag, "p1")
			}
		})...)
		return out
	}
	clean := func(tags []string) {
		for _, tag := range tags {
			require.NoError(t, r.Plain.Del(ctx, testkit.LedgerKey(tag)).Err())
		}
	}

	flushFunctions(t, r)
	rdb, h, _ := fnHooked(t, r)
	sp := watchSends(t, rdb)
	r.ResetStats(t)
	got := run(rdb, hookTags)
	for _, p := range ps {
		assert.Equal(t, int64(1), r.Calls(t, "function|load", p), "%s: the library once", p.Addr)
		assert.Equal(t, 1, sp.Sent("function|load", p), "%s: from the hook", p.Addr)
		assert.True(t, hasLib(t, r.Admin[p.Addr]), p.Addr)
	}
	assert.Zero(t, sp.Sent("function|load", reps...), "nothing from the hook to replicas")
	for _, p := range ps {
		require.NoError(t, r.Admin[p.Addr].Do(ctx, "WAIT", 1, 5000).Err())
	}
	for _, s := range reps {
		assert.True(t, hasLib(t, r.Admin[s.Addr]), "%s has the library by replication", s.Addr)
	}
	t.Logf("function|load per node (INFO commandstats): primaries %v, replicas %v (replicated loads count there)",
		perNode(t, r, "function|load", ps), perNode(t, r, "function|load", reps))
	t.Logf("sends: %s", sp)
	st := h.Stats()
	assert.Equal(t, int64(len(ps)), st.FunctionLoads)
	assert.Zero(t, st.FunctionRepaired)
	assert.Zero(t, st.FunctionNotFoundPassed)
	clean(hookTags)

	// The reference: the library loaded by hand on every primary.
	flushFunctions(t, r)
	for _, p := range ps {
		require.NoError(t, r.Admin[p.Addr].FunctionLoad(ctx, fnLib).Err())
	}
	want := run(r.Plain, plainTags)
	assert.Equal(t, want, got)
	clean(plainTags)

	// The hook's belief matches: a second hooked run loads nowhere.
	r.ResetStats(t)
	assert.Equal(t, want, run(rdb, hookTags))
	assert.Zero(t, r.Calls(t, "function|load"), "held everywhere already")
	clean(hookTags)
}

// perNode lists a command's calls on each server, for logs.
func perNode(t *testing.T, r *testkit.ClusterRig, name string, servers []*redistest.Server) []int64 {
	var out []int64
	for _, s := range servers {
		out = append(out, r.Calls(t, name, s))
	}
	return out
}

// A slot moves to a primary that never had the library (FUNCTION FLUSH
// there, and a fresh Hook that never loaded it there) and back, while
// workers run FCALL on keys of the slot, single and in pipelines: no call
// fails with "Function not found", every call that succeeded ran exactly
// once, and the only errors are those a client without the hook gets
// running EVAL on the same slot at the same time. The new owner gets the
// library from the hook once.
func testFunctionReshardUnderLoad(t *testing.T, r *testkit.ClusterRig) {
	ps := r.Primaries(t)
	a, b := ps[0], ps[1]
	slot := testkit.KeySlot(r.TagOn(t, "fnreshard", a))
	moving := testkit.TagsInSlot("fnreshard", slot, 6)
	hookTags := append(moving[:4:4], r.TagOn(t, "fnreshard-h", ps[2]))
	plainTags := moving[4:6]
	flushFunctions(t, r)
	require.False(t, hasLib(t, r.Admin[b.Addr]))
	rdb, h, w := fnHooked(t, r)
	sp := watchSends(t, rdb)
	r.ResetStats(t)

	start := time.Now()
	hooked := startFnLoad(t, rdb, hookTags, 3, "h", false)
	plain := testkit.StartLedgerLoad(t, r.Plain, plainTags, 1, "p")
	rounds := 0
	for moved, ask := 0, 0; rounds < 5 && (moved == 0 || ask == 0); rounds++ {
		time.Sleep(200 * time.Millisecond)
		r.Reshard(t, slot, b)
		time.Sleep(200 * time.Millisecond)
		r.Reshard(t, slot, a)
		moved, ask = w.Redirects()
	}
	time.Sleep(200 * time.Millisecond)
	hooked.Stop()
	plain.Stop()
	t.Logf("%d round(s) of two reshards under load took %v", rounds, time.Since(start))
	require.Equal(t, a, r.Owner(t, slot), "the slot is back where it was")
	moved, ask := w.Redirects()
	t.Logf("the hooked client met %d MOVED and %d ASK", moved, ask)
	assert.Positive(t, moved)
	assert.Positive(t, ask)

	logVerdict(t, "hooked", hooked.L, r.Plain)
	logVerdict(t, "plain", plain.L, r.Plain)
	ran, _, _ := hooked.L.Counts()
	assert.Positive(t, ran)
	assert.Zero(t, notFoundSeen(hooked.L))
	testkit.TransientOnly(t, hooked.L)
	testkit.TransientOnly(t, plain.L)
	st := h.Stats()
	assert.Zero(t, st.FunctionNotFoundPassed)
	for _, p := range ps {
		assert.Equal(t, int64(1), r.Calls(t, "function|load", p), "%s: one load, from the hook", p.Addr)
	}
	assert.Equal(t, 3, sp.Sent("function|load"))
	t.Logf("loads per primary %v; hook stats: %d loads, %d repaired", perNode(t, r, "function|load", ps), st.FunctionLoads, st.FunctionRepaired)
}

// CLUSTER FAILOVER under FCALL load, and back: the promoted replica has the
// library by replication; no call fails with "Function not found", every
// successful call ran once, and the only errors are those of a client
// without the hook running EVAL on the same primaries meanwhile.
func testFunctionFailoverUnderLoad(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps := r.Primaries(t)
	// Not ps[0], which testFailoverUnderLoad fails over: Redis 7.0 lets a
	// replica that won an election moments ago "win" its next manual
	// failover with the old votes and epoch, and its primary then takes
	// the slots back (seen with 7.0.15: "Failover election won" with no
	// election, then "Reconfiguring myself as a replica").
	a := ps[1]
	replica := r.ReplicaOf(t, a)
	hookTags := append(r.TagsOn(t, "fnfailover-h", a, 2), r.TagOn(t, "fnfailover-h", ps[0]), r.TagOn(t, "fnfailover-h", ps[2]))
	plainTags := append(r.TagsOn(t, "fnfailover-p", a, 1), r.TagOn(t, "fnfailover-p", ps[0]))
	flushFunctions(t, r)
	rdb, h, w := fnHooked(t, r)
	sp := watchSends(t, rdb)
	r.ResetStats(t)

	start := time.Now()
	hooked := startFnLoad(t, rdb, hookTags, 3, "h", false)
	plain := testkit.StartLedgerLoad(t, r.Plain, plainTags, 1, "p")
	time.Sleep(200 * time.Millisecond)
	require.NoError(t, r.Admin[a.Addr].Do(ctx, "WAIT", 1, 5000).Err())
	require.True(t, hasLib(t, r.Admin[replica.Addr]), "the replica has the library by replication")
	failover(t, r, replica, testkit.KeySlot(hookTags[0]))
	time.Sleep(300 * time.Millisecond)
	served := r.Calls(t, "fcall", replica)
	failover(t, r, a, testkit.KeySlot(hookTags[0]))
	time.Sleep(200 * time.Millisecond)
	hooked.Stop()
	plain.Stop()
	t.Logf("two failovers under load took %v", time.Since(start))

	assert.Positive(t, served, "the promoted replica ran functions")
	moved, _ := w.Redirects()
	assert.Positive(t, moved, "the hooked client was redirected to the new primary")
	logVerdict(t, "hooked", hooked.L, r.Plain)
	logVerdict(t, "plain", plain.L, r.Plain)
	ran, _, _ := hooked.L.Counts()
	assert.Positive(t, ran)
	assert.Zero(t, notFoundSeen(hooked.L))
	testkit.TransientOnly(t, hooked.L)
	testkit.TransientOnly(t, plain.L)
	assert.Zero(t, h.Stats().FunctionNotFoundPassed)
	t.Logf("hook's loads: %s; stats %+v", sp, h.Stats())
	// Every node got the library from the hook at most once: the promoted
	// replica may get one (the hook has no belief about it), nobody more.
	for _, s := range r.C.Servers {
		assert.LessOrEqual(t, sp.Sent("function|load", s), 1, s.Addr)
	}
}

// Read-only routing (ReadOnly: FCALL_RO goes to replicas): the results are
// those of a ReadOnly client without the hook on a cluster where the
// library was loaded by hand on every primary; the primaries get the
// library from the hook once, the replicas never (a replica refuses
// FUNCTION LOAD with READONLY, on which go-redis closes the connection or,
// in a pipeline, marks the replica failing and re-sends the caller's
// commands to the primary). A replica that served the hook's FCALL_RO and
// is then promoted is a primary like any other: after another client's
// FUNCTION FLUSH there, the hook repairs FCALL on it, single and
// pipelined.
func testFunctionsReadOnlyRouting(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps, reps := r.Primaries(t), r.Replicas(t)
	var hookTags, plainTags []string
	for _, p := range ps {
		hookTags = append(hookTags, r.TagOn(t, "fnro-h", p))
		plainTags = append(plainTags, r.TagOn(t, "fnro-p", p))
	}
	ro := func(o *redis.ClusterOptions) { o.ReadOnly = true }
	rdb, h, _ := hooked(t, r, ro)
	_, err := h.RegisterLibrary(fnLib)
	require.NoError(t, err)
	sp := watchSends(t, rdb)
	plain := r.Client(t, ro)
	run := func(c *redis.ClusterClient, tags []string, pre string) []string {
		var out []string
		for _, tag := range tags {
			out = append(out, testkit.Render(fnCall(ctx, c, tag, pre+"w")))
		}
		for _, p := range ps {
			require.NoError(t, r.Admin[p.Addr].Do(ctx, "WAIT", 1, 5000).Err())
		}
		for round := 0; round < 2; round++ {
			for _, tag := range tags {
				out = append(out, testkit.Render(fnPeek(ctx, c, tag, pre+"w")))
			}
		}
		out = append(out, runBatch(ctx, c, false, func(p redis.Pipeliner) {
			for _, tag := range tags {
				fnPeek(ctx, p, tag, pre+"w")
				fnPeek(ctx, p, tag, pre+"none")
			}
		})...)
		for i := range out {
			out[i] = strings.ReplaceAll(out[i], pre, "")
		}
		return out
	}
	flushFunctions(t, r)
	for _, p := range ps {
		require.NoError(t, r.Admin[p.Addr].FunctionLoad(ctx, fnLib).Err())
	}
	r.ResetStats(t)
	want := run(plain, plainTags, "")
	assert.Equal(t, int64(2*len(ps)+2*len(ps)), r.Calls(t, "fcall_ro", reps...), "the replicas served FCALL_RO")
	flushFunctions(t, r)
	r.ResetStats(t)
	assert.Equal(t, want, run(rdb, hookTags, "cold-"))
	assert.Equal(t, int64(2*len(ps)+2*len(ps)), r.Calls(t, "fcall_ro", reps...), "the replicas served FCALL_RO")
	t.Logf("FUNCTION LOAD to primaries %d, to replicas %d (refused); sends %s", sp.Sent("function|load", ps...), sp.Sent("function|load", reps...), sp)
	for _, p := range ps {
		assert.Equal(t, 1, sp.Sent("function|load", p), "%s: one load, before the first FCALL", p.Addr)
	}
	assert.Zero(t, sp.Sent("function|load", reps...), "no load to a replica")
	// go-redis may dial a second connection now and then (its replicas'
	// PING); READONLY replies would close one for every call.
	assert.LessOrEqual(t, sp.Redials(), len(reps), "no connection closed and dialled again: %v", sp.dialed)
	assert.Zero(t, h.Stats().FunctionNotFoundPassed)

	// Warm: no load anywhere.
	sp.Reset()
	assert.Equal(t, want, run(rdb, hookTags, "warm-"))
	assert.Zero(t, sp.Sent("function|load"), "warm: no load anywhere")

	// Another client flushes a primary's libraries, and its replica's by
	// replication: FCALL_RO there gets what it gets without the hook,
	// "Function not found", single and pipelined (the replica refuses the
	// hook's load with READONLY: no error of the hook's, and no re-send
	// by go-redis, which would take READONLY for a write to a replica).
	require.NoError(t, r.Admin[ps[0].Addr].FunctionFlush(ctx).Err())
	require.NoError(t, r.Admin[ps[0].Addr].Do(ctx, "WAIT", 1, 5000).Err())
	missing := func(c *redis.ClusterClient, tag string) []string {
		out := []string{testkit.Render(fnPeek(ctx, c, tag, "m"))}
		return append(out, runBatch(ctx, c, false, func(p redis.Pipeliner) {
			fnPeek(ctx, p, tag, "m0")
			fnPeek(ctx, p, tag, "m1")
		})...)
	}
	sp.Reset()
	r.ResetStats(t)
	want = missing(plain, plainTags[0])
	assert.Equal(t, want, missing(rdb, hookTags[0]))
	assert.Equal(t, fnNotFound, testkit.ErrText(fnPeek(ctx, rdb, hookTags[0], "m2").Err()))
	assert.Equal(t, int64(3+4), r.Calls(t, "fcall_ro", reps...), "every call once, on the replica")
	t.Logf("FCALL_RO of a library the replica lacks: %d refused loads for 2 single calls and a pipeline; %s", sp.Sent("function|load"), sp)
	assert.LessOrEqual(t, sp.Sent("function|load"), 2, "at most one refused load per single call")
	require.NoError(t, r.Admin[ps[0].Addr].FunctionLoad(ctx, fnLib).Err())

	// A replica that got the hook's FCALL_RO is promoted, and another
	// client flushes its libraries: FCALL there is repaired. (Not ps[0],
	// which testFailoverUnderLoad failed over just before; see failover.)
	a := ps[2]
	replica := r.ReplicaOf(t, a)
	slot := testkit.KeySlot(hookTags[2])
	failover(t, r, replica, slot)
	require.NoError(t, r.Admin[replica.Addr].FunctionFlush(ctx).Err())
	require.NoError(t, r.Admin[replica.Addr].Do(ctx, "WAIT", 1, 5000).Err())
	assert.EqualError(t, plain.FCall(ctx, "fledger", []string{testkit.LedgerKey(plainTags[2])}, "x").Err(), fnNotFound, "what a plain client gets")
	l := testkit.NewLedger()
	before := h.Stats()
	tag := testkit.TagsInSlot("fnro-promoted", slot, 1)[0] // on the promoted replica
	assert.Equal(t, testkit.Ran, l.RecordCmd(t, tag, "promoted-s", fnCall(ctx, rdb, tag, "promoted-s")))
	require.NoError(t, r.Admin[replica.Addr].FunctionFlush(ctx).Err())
	require.NoError(t, r.Admin[replica.Addr].Do(ctx, "WAIT", 1, 5000).Err())
	var cmds []*redis.Cmd
	_, err = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < 3; i++ {
			cmds = append(cmds, fnCall(ctx, p, tag, fmt.Sprint("promoted-p", i)))
		}
		return nil
	})
	assert.NoError(t, err)
	for i, c := range cmds {
		assert.Equal(t, testkit.Ran, l.RecordCmd(t, tag, fmt.Sprint("promoted-p", i), c))
	}
	// And FCALL_RO on the new replica, which has the library again by
	// replication.
	require.NoError(t, r.Admin[replica.Addr].Do(ctx, "WAIT", 1, 5000).Err())
	assert.Equal(t, "[]interface {}{\"promoted-s\", 1} | <nil>", testkit.Render(fnPeek(ctx, rdb, tag, "promoted-s")))
	after := h.Stats()
	t.Logf("after the promotion and flushes: %d loads, %d repaired, %d not-found passed",
		after.FunctionLoads-before.FunctionLoads, after.FunctionRepaired-before.FunctionRepaired, after.FunctionNotFoundPassed-before.FunctionNotFoundPassed)
	assert.Equal(t, before.FunctionNotFoundPassed, after.FunctionNotFoundPassed)
	failover(t, r, a, slot)
	l.Verify(t, r.Plain)
	for _, tag := range append(hookTags, plainTags...) {
		require.NoError(t, r.Plain.Del(ctx, testkit.LedgerKey(tag)).Err())
	}
}
