package scripthook

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Unit tests of the engine on testkit.Fake, a Redis stand-in at the hook
// level with the script-cache rules of real servers (eviction included),
// exact accounting of what crosses the wire, and the runs of every body.
// Results themselves are compared with plain clients on real servers in
// test/integration; here the fake proves what went out.

// body is a script long enough to be worth sending by SHA1.
func body(tag string) string {
	return fmt.Sprintf("-- %s %s\nreturn redis.call('INCR', KEYS[1])", tag, strings.Repeat("x", 300))
}

// fakeClient is a client whose commands the fake answers; h (if not nil)
// comes first.
func fakeClient(f *testkit.Fake, hooks ...redis.Hook) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	for _, h := range hooks {
		c.AddHook(h)
	}
	c.AddHook(f)
	return c
}

func quiet(opts ...Option) *Hook { return New(append([]Option{WithTracing(false)}, opts...)...) }

func TestEngineFirstCallBodyThenSHA(t *testing.T) {
	f := &testkit.Fake{}
	h := quiet()
	rdb := fakeClient(f, h)
	b := body("first")
	for i := 0; i < 3; i++ {
		require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	}
	st := f.Stats()
	assert.Equal(t, 1, st.Calls["eval"], "no doomed EVALSHA first")
	assert.Equal(t, 2, st.Calls["evalsha"])
	assert.Equal(t, 3, st.Runs[b])
	assert.Equal(t, int64(2), h.Stats().Rewritten)
}

// A script EVALSHA would not shorten goes as written.
func TestEngineShortScriptAsWritten(t *testing.T) {
	f := &testkit.Fake{}
	rdb := fakeClient(f, quiet())
	for i := 0; i < 3; i++ {
		require.NoError(t, rdb.Eval(t.Context(), "return 1", nil).Err())
	}
	assert.Equal(t, 3, f.Stats().Calls["eval"])
}

// NOSCRIPT is repaired once with the hook's SCRIPT LOAD, which makes the
// script permanent; then by SHA1 again.
func TestEngineRepairLoadsOnce(t *testing.T) {
	f := &testkit.Fake{}
	h := quiet()
	rdb := fakeClient(f, h)
	b := body("repair")
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	f.Flush()
	f.Reset()
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	st := f.Stats()
	assert.Equal(t, map[string]int{"evalsha": 3, "script|load": 1}, st.Calls)
	assert.Equal(t, 2, st.Runs[b], "each call ran once")
	hs := h.Stats()
	assert.Equal(t, int64(1), hs.NoScriptRepaired)
	assert.Equal(t, int64(1), hs.Loads)
	// It had run by EVAL and the hook saw no flush: to the hook this looks
	// like an eviction (another client's flush does).
	assert.Equal(t, int64(1), hs.Evicted)
}

// Callers that meet NOSCRIPT together never wait for each other: one loads,
// the others send the body, as plain EVAL would; every call runs once.
func TestEngineStormNoWaiting(t *testing.T) {
	f := &testkit.Fake{}
	h := quiet()
	rdb := fakeClient(f, h)
	b := body("storm")
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	f.Flush()
	f.Reset()
	const n = 64
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Go(func() { assert.NoError(t, rdb.Eval(context.Background(), b, []string{"k"}).Err()) })
	}
	wg.Wait()
	st := f.Stats()
	assert.Equal(t, n, st.Runs[b], "every call ran exactly once")
	assert.LessOrEqual(t, st.Calls["script|load"], 1)
	assert.LessOrEqual(t, st.Calls["eval"]+st.Calls["script|load"], n, "never more bodies than plain EVAL")
	assert.Zero(t, h.Stats().NoScriptPassed)
}

// A script whose own error reply reads like NOSCRIPT is never re-run: the
// hook sends it as written, so the server's refusal cannot be mistaken.
func TestEngineForgedNoScriptRunsOnce(t *testing.T) {
	for _, tc := range []struct{ name, body string }{
		{"prefix", "redis.call('incr',KEYS[1]) return redis.error_reply('NOSCRIPT pretend') -- " + strings.Repeat("x", 40)},
		{"exact text", "redis.call('incr',KEYS[1]) return redis.error_reply('NOSCRIPT No matching script. Please use EVAL.')"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &testkit.Fake{}
			rdb := fakeClient(f, quiet())
			for i := 0; i < 4; i++ {
				err := rdb.Eval(t.Context(), tc.body, []string{"k"}).Err()
				require.Error(t, err)
			}
			_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
				for i := 0; i < 4; i++ {
					p.Eval(t.Context(), tc.body, []string{"k"})
				}
				return nil
			})
			require.Error(t, err)
			assert.Equal(t, 8, f.Stats().Runs[tc.body], "8 calls, 8 runs")
		})
	}
	// A script that echoes its argument into the error: the call whose
	// argument spells the refusal goes as written.
	f := &testkit.Fake{}
	h := quiet()
	rdb := fakeClient(f, h)
	echo := "return redis.error_reply(ARGV[1]) -- " + strings.Repeat("x", 40)
	require.Error(t, rdb.Eval(t.Context(), echo, nil, "ERR first").Err())
	f.Reset()
	require.Error(t, rdb.Eval(t.Context(), echo, nil, "NOSCRIPT No matching script. Please use EVAL.").Err())
	assert.Equal(t, map[string]int{"eval": 1}, f.Stats().Calls)
}

// A user who may run EVAL but not EVALSHA gets every call run, as plain:
// the hook learns the refusal once (nothing ran) and sends as written.
func TestEngineEvalShaDenied(t *testing.T) {
	f := &testkit.Fake{Denied: map[string]bool{"evalsha": true}}
	rdb := fakeClient(f, quiet())
	b := body("denied")
	for i := 0; i < 4; i++ {
		require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	}
	st := f.Stats()
	assert.Equal(t, 4, st.Runs[b])
	assert.Equal(t, 1, st.Calls["evalsha"], "refused once, then never tried again")
}

// A user who may not run SCRIPT LOAD: repairs send the body instead.
func TestEngineLoadDenied(t *testing.T) {
	f := &testkit.Fake{Denied: map[string]bool{"script|load": true}}
	h := quiet()
	rdb := fakeClient(f, h)
	b := body("noload")
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	for i := 0; i < 3; i++ {
		f.Flush()
		require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
		require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	}
	st := f.Stats()
	assert.Equal(t, 7, st.Runs[b])
	assert.Equal(t, 1, st.Calls["script|load"], "refused once")
	assert.LessOrEqual(t, st.Calls["eval"]+st.Calls["script|load"], 7, "never more bodies than plain EVAL")
	// The first loss teaches that SCRIPT LOAD is refused; the second,
	// known not to be pinnable, makes the script go as written from then
	// on (by SHA1, every loss would cost a round trip more than plain
	// EVAL): two repairs, and the third round sends the body as written.
	assert.Equal(t, int64(2), h.Stats().NoScriptRepaired)
	assert.Zero(t, h.Stats().NoScriptPassed)
	f.Flush()
	f.Reset()
	require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	assert.Equal(t, map[string]int{"eval": 1}, f.Stats().Calls)
}

// The same Hook twice in one chain (AddHook twice, or AddHook and Install)
// neither hangs nor runs anything twice: the inner copy lets the outer's
// commands through.
func TestEngineSameHookTwice(t *testing.T) {
	f := &testkit.Fake{}
	h := quiet()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	rdb.AddHook(h)
	require.NoError(t, h.Install(rdb))
	rdb.AddHook(h)
	rdb.AddHook(f)
	b := body("twice")
	for i := 0; i < 3; i++ {
		require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
		f.Flush()
	}
	_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
		p.Eval(t.Context(), b, []string{"k"})
		p.Eval(t.Context(), b, []string{"k"})
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, 5, f.Stats().Runs[b])
}

// Where SHA-1 may not be used (FIPS 140-only mode) the hook never hashes:
// a script that proved hot is loaded and the server's reply tells its SHA1;
// from then on it goes by SHA1.
func TestEngineWithoutSHA1(t *testing.T) {
	f := &testkit.Fake{}
	h := quiet()
	h.sh.cache.hash = func(string) (string, bool) { return "", false }
	assert.Empty(t, h.Register("reg", body("reg")))
	rdb := fakeClient(f, h)
	b := body("fips")
	for i := 0; i < 4; i++ {
		require.NoError(t, rdb.Eval(t.Context(), b, []string{"k"}).Err())
	}
	st := f.Stats()
	assert.Equal(t, map[string]int{"eval": 1, "script|load": 1, "evalsha": 3}, st.Calls)
	assert.Equal(t, 4, st.Runs[b])
	assert.Equal(t, testkit.SHA1(b), h.sh.cache.forBody(b).hex(), "learned from the server")
	require.NoError(t, rdb.EvalSha(t.Context(), testkit.SHA1(b), []string{"k"}).Err())
}

// A hook after scripthook may keep the commands it was given and read them
// whenever it likes: nothing handed to next is reused.
func TestEngineCommandsStayValid(t *testing.T) {
	f := &testkit.Fake{}
	spy := &testkit.Spy{Keep: true}
	rdb := fakeClient(f, quiet(), spy)
	b := body("keep")
	for n := 0; n < 3; n++ {
		_, err := rdb.Pipelined(t.Context(), func(p redis.Pipeliner) error {
			for i := 0; i < 50; i++ {
				p.Eval(t.Context(), fmt.Sprint(b, i%3), []string{"k"})
			}
			return nil
		})
		require.NoError(t, err)
	}
	var names []string
	for _, batch := range spy.Kept() {
		for _, c := range batch {
			names = append(names, c.Name(), fmt.Sprint(c.Args()[0]))
		}
	}
	assert.NotContains(t, names, "")
	assert.Contains(t, names, "evalsha")
}
