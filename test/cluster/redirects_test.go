package cluster_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// redirectKinds run the same calls on a tag whose slot is moving (moving),
// another tag of that slot (other) and a tag of another slot on the node
// that answers the redirects (stay). sha: the registered script goes by
// SHA1. Every ledger call is filed in the ledger.
var redirectKinds = []struct {
	name string
	run  func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *testkit.Ledger, pre, moving, other, stay string, sha bool) []string
}{
	{"single", func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *testkit.Ledger, pre, moving, other, stay string, sha bool) []string {
		e := ledgerCall(ctx, c, moving, pre+"single")
		l.RecordCmd(t, moving, pre+"single", e)
		reg := cReg(4).do(ctx, c, moving, sha)
		return []string{testkit.Render(e), testkit.Render(reg)}
	}},
	{"pipeline", func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *testkit.Ledger, pre, moving, other, stay string, sha bool) []string {
		var calls []*redis.Cmd
		var tags []string
		count := func(p redis.Pipeliner, tag string) {
			calls = append(calls, ledgerCall(ctx, p, tag, fmt.Sprint(pre, "pipe", len(calls))))
			tags = append(tags, tag)
		}
		out := runBatch(ctx, c, false, func(p redis.Pipeliner) {
			count(p, stay) // a command of the same node that is not redirected
			count(p, moving)
			cReg(2).do(ctx, p, moving, sha)
			count(p, moving)
			count(p, other)
			count(p, stay)
		})
		for i, call := range calls {
			l.RecordCmd(t, tags[i], fmt.Sprint(pre, "pipe", i), call)
		}
		return out
	}},
	{"transaction", func(ctx context.Context, t *testing.T, c *redis.ClusterClient, l *testkit.Ledger, pre, moving, other, stay string, sha bool) []string {
		var calls []*redis.Cmd
		out := runBatch(ctx, c, true, func(p redis.Pipeliner) {
			calls = append(calls, ledgerCall(ctx, p, moving, pre+"tx0"))
			cReg(3).do(ctx, p, moving, sha)
			calls = append(calls, ledgerCall(ctx, p, moving, pre+"tx1"))
		})
		for i, call := range calls {
			l.RecordCmd(t, moving, fmt.Sprint(pre, "tx", i), call)
		}
		return out
	}},
}

// While a slot moves, single commands, pipelines and transactions give the
// results of plain EVAL and every call runs once, for MOVED (a client whose
// slot map is stale: go-redis re-sends from inside the node hook's next)
// and ASK (a half-migrated slot: go-redis sends ASKING, then the command).
// The node that receives the slot has never seen the script and gets the
// body; EVALSHA of a registered script is repaired there too.
func testRedirects(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps := r.Primaries(t)
	a, b := ps[0], ps[1]
	slot := testkit.KeySlot(r.TagOn(t, "redirect", a))
	require.NotEqual(t, slot, testkit.KeySlot("{caps}"), "learnCaps stays off the moving slot")
	tags := testkit.TagsInSlot("redirect", slot, 4) // two for the hook, two for the reference
	l := testkit.NewLedger()
	type pair struct {
		hooked, plain *redis.ClusterClient
		w             *testkit.NodeSpy
	}
	// pairs returns a hooked and a plain client for every kind, both with
	// the slot map of now; the hooks know what the user may run, so that
	// batches show the hook's own forms.
	pairs := func() []pair {
		var out []pair
		for range redirectKinds {
			h, hook, w := hooked(t, r, nil)
			hook.Register("incrby", regScript)
			learnCaps(t, h)
			w.Reset()
			p := r.Client(t, nil)
			require.NoError(t, p.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return nil }))
			out = append(out, pair{h, p, w})
		}
		return out
	}
	check := func(phase string, ps []pair, stayH, stayP string) {
		for i, k := range redirectKinds {
			want := k.run(ctx, t, ps[i].plain, l, phase, tags[2], tags[3], stayP, false)
			got := k.run(ctx, t, ps[i].hooked, l, phase, tags[0], tags[1], stayH, true)
			assert.Equal(t, want, got, "%s %s", phase, k.name)
			ps[i].w.CheckBodies(t)
			// Make sure the redirect happened.
			moved, ask := ps[i].w.Redirects()
			switch {
			case k.name == "transaction":
				// go-redis reads a transaction's redirects itself: the
				// evidence is the transaction sent twice, after an ASK with
				// ASKING first, and never a command more or less.
				b := ps[i].w.BatchNames()
				if assert.Len(t, b, 2, phase) {
					tx := []string{"multi", "eval", "eval", "evalsha", "exec"}
					assert.Equal(t, tx, b[0], phase)
					if phase == "ASK" {
						tx = append([]string{"asking"}, tx...)
					}
					assert.Equal(t, tx, b[1], phase)
				}
			case phase == "MOVED":
				assert.Positive(t, moved, "%s %s: the test saw no MOVED", phase, k.name)
			default:
				assert.Positive(t, ask, "%s %s: the test saw no ASK", phase, k.name)
			}
		}
	}

	// MOVED: the clients learn the slot map, then the slot moves to b.
	moved := pairs()
	r.MoveSlot(t, slot, b)
	r.FlushScripts(t)
	check("MOVED", moved, r.TagOn(t, "redirect-stay-h", a), r.TagOn(t, "redirect-stay-p", a))

	// ASK: the slot moves back to a, half way: the keys of tags[0] and
	// tags[2] are on a already, the others still on b, which answers ASK
	// for the migrated ones.
	asked := pairs()
	m := r.NewSlotMove(t, slot, a)
	m.Begin(t)
	m.Migrate(t, []string{testkit.LedgerKey(tags[0]), "{" + tags[0] + "}:r", testkit.LedgerKey(tags[2]), "{" + tags[2] + "}:r"})
	r.FlushScripts(t)
	check("ASK", asked, r.TagOn(t, "redirect-stay-h", b), r.TagOn(t, "redirect-stay-p", b))
	for m.Migrate(t, nil) > 0 {
	}
	m.Finish(t)
	require.Equal(t, a, r.Owner(t, slot), "the slot is back where it was")

	assert.Zero(t, testkit.NoScriptSeen(l))
	l.Verify(t, r.Plain)
	for _, tag := range tags {
		require.NoError(t, r.Plain.Del(ctx, "{"+tag+"}:r").Err())
	}
}

// A slot moves to another primary and back while script commands, pipelines
// and transactions run on it: every call's effect is applied exactly once,
// no NOSCRIPT (nor MOVED or ASK) reaches a caller; a client without the hook
// runs the same workload on the same slot as a reference.
func testReshardUnderLoad(t *testing.T, r *testkit.ClusterRig) {
	ps := r.Primaries(t)
	a, b := ps[0], ps[1]
	slot := testkit.KeySlot(r.TagOn(t, "reshard", a))
	moving := testkit.TagsInSlot("reshard", slot, 7)
	hookTags := append(moving[:4:4], r.TagOn(t, "reshard-h", ps[2]))
	plainTags := append(moving[4:7:7], r.TagOn(t, "reshard-p", ps[2]))
	rdb, h, w := hooked(t, r, nil)
	r.FlushScripts(t)

	start := time.Now()
	hooked := testkit.StartLedgerLoad(t, rdb, hookTags, 3, "h")
	plain := testkit.StartLedgerLoad(t, r.Plain, plainTags, 1, "p")
	// Back and forth until the hooked client met both redirects: on a
	// busy machine a move can finish between two of its calls.
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
	checkLoads(t, h, hooked, plain, r.Plain)
}

// checkLoads verifies both loads' ledgers after a fault under load: every
// call at most once, no NOSCRIPT reached a hooked caller, calls ran, and
// only transient cluster errors were seen.
func checkLoads(t *testing.T, h *scripthook.Hook, hooked, plain *testkit.LedgerLoad, rdb redis.Cmdable) {
	t.Helper()
	logVerdict(t, "hooked", hooked.L, rdb)
	logVerdict(t, "plain", plain.L, rdb)
	assert.Zero(t, testkit.NoScriptSeen(hooked.L))
	assert.Zero(t, h.Stats().NoScriptPassed)
	ran, _, _ := hooked.L.Counts()
	assert.Positive(t, ran)
	testkit.TransientOnly(t, hooked.L)
	testkit.TransientOnly(t, plain.L)
}

// logVerdict verifies a ledger and logs what it found.
func logVerdict(t *testing.T, who string, l *testkit.Ledger, rdb redis.Cmdable) {
	t.Helper()
	ran, unknown, refused := l.Counts()
	v := l.Verify(t, rdb)
	t.Logf("%s: %d calls ran, %d refused, %d network errors (%d of those ran); errors: %v",
		who, ran, refused, unknown, v.UnknownRan, l.Errors())
}

// CLUSTER FAILOVER on a replica under load, and back: the promoted replica
// has an empty script cache (Redis 7 does not replicate scripts), and calls
// go on without a NOSCRIPT reaching a caller; every call's effect is applied
// exactly once. A call may fail while the cluster changes hands
// (CLUSTERDOWN); the ledger checks that such a call did not run.
func testFailoverUnderLoad(t *testing.T, r *testkit.ClusterRig) {
	ctx := t.Context()
	ps := r.Primaries(t)
	a := ps[0]
	replica := r.ReplicaOf(t, a)
	hookTags := append(r.TagsOn(t, "failover-h", a, 2), r.TagOn(t, "failover-h", ps[1]), r.TagOn(t, "failover-h", ps[2]))
	plainTags := append(r.TagsOn(t, "failover-p", a, 1), r.TagOn(t, "failover-p", ps[1]))
	rdb, h, w := hooked(t, r, nil)
	r.FlushScripts(t)

	start := time.Now()
	hooked := testkit.StartLedgerLoad(t, rdb, hookTags, 3, "h")
	plain := testkit.StartLedgerLoad(t, r.Plain, plainTags, 1, "p")
	time.Sleep(200 * time.Millisecond)
	has, err := r.Admin[replica.Addr].ScriptExists(ctx, testkit.SHA1(testkit.LedgerScript)).Result()
	require.NoError(t, err)
	require.Equal(t, []bool{false}, has, "the replica's script cache is empty")
	r.ResetStats(t)
	r.Failover(t, replica)
	time.Sleep(300 * time.Millisecond)
	served := r.Calls(t, "evalsha", replica)
	r.Failover(t, a) // back as it was
	time.Sleep(200 * time.Millisecond)
	hooked.Stop()
	plain.Stop()
	t.Logf("two failovers under load took %v", time.Since(start))

	assert.Positive(t, served, "the promoted replica ran scripts by SHA1")
	moved, _ := w.Redirects()
	assert.Positive(t, moved, "the hooked client was redirected to the new primary")
	checkLoads(t, h, hooked, plain, r.Plain)
}
