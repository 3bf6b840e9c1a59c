package scripthook

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Servers that evict the scripts EVAL creates (Redis 7.4+, Valkey 8), on
// testkit.Fake with the same rule (an LRU of 500; SCRIPT LOAD exempt; every
// use moves a script to the tail), so that CI, which has only Redis 7.0,
// runs these cases too. test/integration runs them on real servers.

// kb is a distinct 1 KB script.
func kb(i int) string {
	return fmt.Sprintf("-- %d %s\nreturn redis.call('INCR', KEYS[1])", i, strings.Repeat("x", 1000))
}

// twin returns a hooked client and a plain one, each on a fake that evicts.
func twin(opts ...Option) (*Hook, *redis.Client, *testkit.Fake, *redis.Client, *testkit.Fake) {
	hf, pf := &testkit.Fake{EvictAt: 500}, &testkit.Fake{EvictAt: 500}
	h := quiet(opts...)
	return h, fakeClient(hf, h), hf, fakeClient(pf), pf
}

// Round robin over N scripts: every script is repaired at most once (the
// hook's SCRIPT LOAD pins it), then never again; each round then costs the
// same round trips as plain EVAL and far fewer bytes.
func TestEvictionRoundRobin(t *testing.T) {
	for _, n := range []int{100, 501, 512, 600, 1000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h, hc, hf, pc, pf := twin()
			ctx := t.Context()
			const rounds = 6
			var repairsLate int64
			for r := 0; r < rounds; r++ {
				before := h.Stats().NoScriptRepaired
				hf.Reset()
				pf.Reset()
				for i := 0; i < n; i++ {
					require.NoError(t, hc.Eval(ctx, kb(i), []string{"k"}).Err())
					require.NoError(t, pc.Eval(ctx, kb(i), []string{"k"}).Err())
				}
				hs, ps := hf.Stats(), pf.Stats()
				for i := 0; i < n; i++ {
					require.Equal(t, 1, hs.Runs[kb(i)], "round %d: script %d ran once", r, i)
				}
				assert.LessOrEqual(t, hs.Bytes, ps.Bytes, "round %d: never more bytes than plain", r)
				if r >= 2 {
					repairsLate += h.Stats().NoScriptRepaired - before
					assert.Equal(t, ps.RoundTrips, hs.RoundTrips, "round %d: plain's round trips", r)
					if n <= DefaultCacheSize {
						assert.Less(t, hs.Bytes*5, ps.Bytes, "round %d: by SHA1", r)
					}
				}
			}
			st := h.Stats()
			assert.Zero(t, repairsLate, "no repair after the first two rounds")
			assert.LessOrEqual(t, st.NoScriptRepaired, int64(n), "at most one repair per script")
			assert.Equal(t, st.NoScriptRepaired, st.Evicted)
			assert.Zero(t, st.NoScriptPassed)
			t.Logf("n=%d: %d repairs, %d loads, server holds %d scripts (plain client: %d)",
				n, st.NoScriptRepaired, st.Loads, hf.Cached(), pf.Cached())
		})
	}
}

// Ten hot scripts and a neighbour that sends 60 one-off EVALs between every
// two hot calls (600 between two uses of the same script): each hot script
// is repaired once, then never.
func TestEvictionNoisyNeighbour(t *testing.T) {
	h, hc, hf, _, _ := twin()
	ctx := t.Context()
	perRound := func() int64 {
		before := h.Stats().NoScriptRepaired
		for i := 0; i < 10; i++ {
			require.NoError(t, hc.Eval(ctx, kb(i), []string{"k"}).Err())
			hf.Neighbour(60)
		}
		return h.Stats().NoScriptRepaired - before
	}
	perRound()
	assert.Equal(t, int64(10), perRound(), "each hot script evicted and repaired once")
	for r := 0; r < 5; r++ {
		assert.Zero(t, perRound(), "pinned: never evicted again")
	}
}

// A flood of one-off scripts pins nothing: the server keeps what it keeps
// for plain EVAL.
func TestEvictionFloodPinsNothing(t *testing.T) {
	for _, evict := range []int{0, 500} {
		hf, pf := &testkit.Fake{EvictAt: evict}, &testkit.Fake{EvictAt: evict}
		hc, pc := fakeClient(hf, quiet()), fakeClient(pf)
		for i := 0; i < 20_000; i++ {
			b := "return " + fmt.Sprint(i) + " -- " + strings.Repeat("y", 50)
			require.NoError(t, hc.Eval(t.Context(), b, nil).Err())
			require.NoError(t, pc.Eval(t.Context(), b, nil).Err())
		}
		assert.Equal(t, pf.Cached(), hf.Cached(), "evict=%d", evict)
		assert.Zero(t, hf.Stats().Calls["script|load"])
	}
}

// The hook never pins more than its budget (WithCacheSize) on one server,
// however many scripts get evicted; the rest go as written, without a
// NOSCRIPT each first.
func TestEvictionPinBudget(t *testing.T) {
	h, hc, hf, pc, pf := twin(WithCacheSize(50))
	ctx := t.Context()
	for r := 0; r < 6; r++ {
		hf.Reset()
		pf.Reset()
		for i := 0; i < 600; i++ {
			require.NoError(t, hc.Eval(ctx, kb(i), []string{"k"}).Err())
			require.NoError(t, pc.Eval(ctx, kb(i), []string{"k"}).Err())
		}
		if r >= 3 {
			assert.Equal(t, pf.Stats().RoundTrips, hf.Stats().RoundTrips)
			assert.LessOrEqual(t, hf.Stats().Bytes, pf.Stats().Bytes)
		}
	}
	assert.LessOrEqual(t, h.Stats().Loads, int64(50))
	assert.LessOrEqual(t, hf.Cached(), 500+50)
	// Once the server has evicted and the budget is spent, the scripts the
	// hook did not pin go as written: the pinning repairs, and no other.
	assert.LessOrEqual(t, h.Stats().NoScriptRepaired, int64(50+1))
}

// A strict pipeline or transaction with more distinct scripts than the
// server keeps never meets NOSCRIPT: bodies go as SCRIPT LOAD (never
// evicted) within the pin budget, and as written beyond it.
func TestEvictionLargeBatches(t *testing.T) {
	for _, tx := range []bool{false, true} {
		t.Run(fmt.Sprintf("tx=%v", tx), func(t *testing.T) {
			h, hc, hf, _, _ := twin()
			ctx := t.Context()
			run := func() {
				fn := func(p redis.Pipeliner) error {
					for use := 0; use < 2; use++ {
						for i := 0; i < 700; i++ {
							p.Eval(ctx, kb(i), []string{"k"})
						}
					}
					return nil
				}
				var err error
				if tx {
					_, err = hc.TxPipelined(ctx, fn)
				} else {
					_, err = hc.Pipelined(ctx, fn)
				}
				require.NoError(t, err)
			}
			// A single call first, so that the hook knows what the server
			// lets it run (otherwise the first batch goes as written).
			require.NoError(t, hc.Eval(ctx, kb(9999), []string{"k"}).Err())
			require.NoError(t, hc.Eval(ctx, kb(9999), []string{"k"}).Err())
			for r := 0; r < 3; r++ {
				run()
			}
			assert.Zero(t, hf.Stats().NoScript, "no NOSCRIPT anywhere")
			assert.Zero(t, h.Stats().NoScriptPassed)
			assert.Equal(t, 6, hf.Stats().Runs[kb(0)])
		})
	}
}

// Once a server has evicted and the pin budget is spent, a script the hook
// did not pin goes as written, as plain EVAL sends it: by SHA1 it would
// meet NOSCRIPT whenever other clients' EVALs pushed it out, one round trip
// more than plain EVAL each time.
func TestEvictionBudgetSpentGoesAsWritten(t *testing.T) {
	h, hc, hf, _, _ := twin(WithCacheSize(50))
	hf.EvictAt = 20
	ctx := t.Context()
	call := func(i int) {
		t.Helper()
		require.NoError(t, hc.Eval(ctx, kb(i), []string{"k"}).Err())
	}
	// The budget: 50 scripts, each evicted by a neighbour between its two
	// calls, so that its repair pins it.
	for i := 0; i < 50; i++ {
		call(i)
		hf.Neighbour(30)
		call(i)
	}
	require.Equal(t, int64(50), h.Stats().Loads, "the budget is spent")
	before := h.Stats()
	hf.Reset()
	for i := 100; i < 110; i++ {
		call(i)
		hf.Neighbour(30)
		call(i)
	}
	assert.Equal(t, before.NoScriptRepaired, h.Stats().NoScriptRepaired, "no repair")
	assert.Zero(t, hf.Stats().NoScript, "no NOSCRIPT")
	assert.Equal(t, 20, hf.Stats().Calls["eval"], "as written, both calls")
	assert.Equal(t, 20, hf.Stats().RoundTrips, "plain EVAL's round trips")
}
