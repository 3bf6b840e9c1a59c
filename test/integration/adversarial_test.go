package integration_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Hostile use, each case compared with a plain client on the same server:
// the hook must give the same replies, errors and side effects.

// The script that runs is always the caller's current bytes, even when they
// change behind the same string (a "zero-copy" view of a reused buffer).
func TestBytesChangedBehindTheString(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	ctx := t.Context()
	run := func(rdb *redis.Client, batch bool) []string {
		buf := []byte("return 'AAAA' -- a script long enough to be sent by SHA1")
		s := unsafe.String(&buf[0], len(buf))
		var out []string
		for i := 0; i < 2; i++ {
			for j := 0; j < 2; j++ {
				if batch {
					cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
						p.Eval(ctx, s, nil)
						p.Eval(ctx, s, nil)
						return nil
					})
					out = append(out, testkit.RenderAll(cmds, err)...)
				} else {
					out = append(out, testkit.Render(rdb.Eval(ctx, s, nil)))
				}
			}
			copy(buf, "return 'BBBB'")
		}
		return out
	}
	for _, batch := range []bool{false, true} {
		want := run(r.Plain, batch)
		assert.Contains(t, strings.Join(want, " "), "BBBB")
		assert.Equal(t, want, run(r.Hooked, batch), "batch=%v", batch)
	}
}

// A script whose own error reply reads like the server's NOSCRIPT is run
// exactly as often as the caller asked, never re-run by a repair.
func TestScriptsThatSayNoScriptRunOnce(t *testing.T) {
	t.Parallel()
	bodies := []string{
		"redis.call('incr',KEYS[1]) return redis.error_reply('NOSCRIPT pretend')",
		"redis.call('incr',KEYS[1]) return redis.error_reply('NOSCRIPT No matching script. Please use EVAL.')",
		"redis.call('incr',KEYS[1]) return {err='NOSCRIPT No matching script.'}",
	}
	echo := "redis.call('incr',KEYS[1]) return redis.error_reply(ARGV[1])"
	for _, mode := range []scripthook.PipelineMode{scripthook.PipelineStrict, scripthook.PipelineOptimistic} {
		r, _ := rig(t, scripthook.WithPipelineMode(mode))
		ctx := t.Context()
		learn(t, r.Hooked)
		calls := func(rdb *redis.Client, key string) []string {
			var out []string
			for _, b := range bodies {
				for i := 0; i < 4; i++ {
					out = append(out, testkit.Render(rdb.Eval(ctx, b, []string{key})))
				}
				cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i := 0; i < 4; i++ {
						p.Eval(ctx, b, []string{key})
					}
					return nil
				})
				out = append(out, testkit.RenderAll(cmds, err)...)
			}
			for i := 0; i < 4; i++ {
				out = append(out, testkit.Render(rdb.Eval(ctx, echo, []string{key}, "NOSCRIPT No matching script. Please use EVAL.")))
			}
			return out
		}
		assert.Equal(t, calls(r.Plain, "p"), calls(r.Hooked, "h"), "mode %v", mode)
		assert.Equal(t, "28", r.Admin.Get(ctx, "h").Val(), "every call ran exactly once")
	}
}

// An OnConnect callback that runs the same script neither hangs nor changes
// a result: the hook never waits for work the connection's own set-up needs.
func TestOnConnectRunsTheSameScript(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	body := pad(100)
	onConnect := func(ctx context.Context, cn *redis.Conn) error {
		return cn.Eval(ctx, body, nil, "onconnect").Err()
	}
	h := quiet()
	rdb := testkit.Client(t, srv, &redis.Options{OnConnect: onConnect, PoolSize: 2})
	rdb.AddHook(h)
	plain := testkit.Client(t, srv, &redis.Options{OnConnect: onConnect, PoolSize: 2})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := 0; i < 5; i++ {
		assert.Equal(t, testkit.Render(plain.Eval(ctx, body, nil, i)), testkit.Render(rdb.Eval(ctx, body, nil, i)))
		require.NoError(t, rdb.ScriptFlush(ctx).Err())
		require.NoError(t, rdb.Do(ctx, "client", "kill", "type", "normal").Err())
	}
	require.NoError(t, ctx.Err(), "no call waited for its own connection")
}

// The same Hook twice in one client's chain (AddHook twice; AddHook, then
// Install) neither hangs nor runs anything twice.
func TestSameHookTwiceInOneChain(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	h := quiet()
	twice := testkit.Client(t, srv, nil)
	twice.AddHook(h)
	twice.AddHook(h)
	both := testkit.Client(t, srv, nil)
	both.AddHook(h)
	require.NoError(t, h.Install(both))
	admin := testkit.Client(t, srv, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, rdb := range []*redis.Client{twice, both} {
		for i := 0; i < 3; i++ {
			require.NoError(t, rdb.Eval(ctx, incrScript, []string{"twice"}, i).Err())
			_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Eval(ctx, incrScript, []string{"twice"}, i)
				p.Eval(ctx, incrScript, []string{"twice"}, i)
				return nil
			})
			require.NoError(t, err)
			require.NoError(t, admin.ScriptFlush(ctx).Err())
		}
	}
	assert.Equal(t, "18", admin.Get(ctx, "twice").Val())
}

// One connection in the pool. Goroutine B's call meets NOSCRIPT and needs
// the pool again to repair it, while A holds the only connection in a
// sticky Conn and runs the same script: nobody waits on another caller's
// repair, so A finishes, lets go, and B succeeds, as without the hook.
func TestTinyPoolStickyConn(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	for _, hooked := range []bool{false, true} {
		rdb := testkit.Client(t, srv, &redis.Options{PoolSize: 1, PoolTimeout: 3 * time.Second})
		body := pad(200)
		held := make(chan *redis.Conn, 1)
		repairing := make(chan struct{})
		var met atomic.Bool
		var once sync.Once
		spy := &testkit.Spy{
			Before: func(ctx context.Context, cmds []redis.Cmder) {
				if met.Load() {
					// B's repair is on its way to the pool, which A holds.
					once.Do(func() { close(repairing) })
				}
			},
			After: func(ctx context.Context, cmds []redis.Cmder, err error) {
				if !redis.HasErrorPrefix(err, "NOSCRIPT") || met.Load() {
					return
				}
				// B just met NOSCRIPT: A takes the only connection first.
				met.Store(true)
				conn := rdb.Conn()
				if conn.Ping(context.Background()).Err() == nil {
					held <- conn
				}
			},
		}
		if hooked {
			rdb.AddHook(quiet())
			rdb.AddHook(spy)
		}
		admin := testkit.Client(t, srv, nil)
		ctx := t.Context()
		require.NoError(t, rdb.Eval(ctx, body, nil).Err())
		require.NoError(t, rdb.Eval(ctx, body, nil).Err())
		require.NoError(t, admin.ScriptFlush(ctx).Err())
		wait := repairing
		if !hooked {
			// The plain client meets no NOSCRIPT: A holds the connection
			// from the start.
			conn := rdb.Conn()
			require.NoError(t, conn.Ping(ctx).Err())
			held <- conn
			wait = nil
		}
		var wg sync.WaitGroup
		var bErr error
		wg.Go(func() { bErr = rdb.Eval(ctx, body, nil).Err() })
		conn := <-held
		if wait != nil {
			<-wait
		}
		// Give B the moment to block on the pool (go-redis counts a wait
		// only once it is over, so nothing can tell it has begun); the
		// outcome asserted below holds whichever way it goes.
		time.Sleep(50 * time.Millisecond)
		for i := 0; i < 3; i++ {
			require.NoError(t, conn.Eval(ctx, body, nil).Err(), "hooked=%v", hooked)
		}
		require.NoError(t, conn.Close())
		wg.Wait()
		assert.NoError(t, bErr, "hooked=%v", hooked)
	}
}

// A hook after scripthook that keeps the commands it saw and reads them
// after the batch returned finds them intact (nothing handed on is reused).
func TestDownstreamHookKeepsCommands(t *testing.T) {
	t.Parallel()
	r, _ := rig(t)
	spy := &testkit.Spy{Keep: true}
	r.Hooked.AddHook(spy)
	ctx := t.Context()
	for n := 0; n < 5; n++ {
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 20; i++ {
				p.Eval(ctx, bigCounter, []string{"k"})
				p.Eval(ctx, pad(300+i%3), nil)
			}
			return nil
		})
		require.NoError(t, err)
	}
	var wg sync.WaitGroup
	for _, batch := range spy.Kept() {
		wg.Go(func() {
			for _, c := range batch {
				assert.NotEmpty(t, c.Name())
				assert.NotEmpty(t, c.FullName())
				assert.NotEmpty(t, c.Args())
			}
		})
	}
	wg.Wait()
}

// acl creates a user and returns a plain and a hooked client logged in as
// it.
func acl(t *testing.T, srv *redistest.Server, user string, rules ...string) (plain, hooked *redis.Client, h *scripthook.Hook) {
	t.Helper()
	admin := testkit.Client(t, srv, nil)
	args := append([]interface{}{"acl", "setuser", user, "reset", "on", "nopass"}, toIfaces(rules)...)
	require.NoError(t, admin.Do(t.Context(), args...).Err())
	o := &redis.Options{Username: user, Password: "x"}
	h = quiet()
	plain = testkit.Client(t, srv, o)
	hooked = testkit.Client(t, srv, o)
	hooked.AddHook(h)
	return plain, hooked, h
}

func toIfaces(ss []string) []interface{} {
	out := make([]interface{}, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// The hook's own commands (EVALSHA, SCRIPT LOAD) may be refused where the
// caller's are not; a refusal of one call spreads to no other. Each case is
// the plain client's replies, exactly.
func TestACLUsers(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := testkit.Client(t, srv, nil)
	s := bigCounter
	pipeline := func(rdb *redis.Client, ops func(p redis.Pipeliner)) []string {
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { ops(p); return nil })
		return testkit.RenderAll(cmds, err)
	}
	t.Run("key pattern", func(t *testing.T) {
		plain, hooked, _ := acl(t, srv, "keys", "~ok:*", "+@all")
		ops := func(p redis.Pipeliner) {
			p.Eval(ctx, s, []string{"denied:1"})
			p.Eval(ctx, s, []string{"ok:1"})
		}
		for _, mode := range []string{"first", "learned", "flushed"} {
			if mode == "flushed" {
				require.NoError(t, admin.ScriptFlush(ctx).Err())
			}
			require.NoError(t, admin.Del(ctx, "ok:1").Err())
			want := pipeline(plain, ops)
			require.NoError(t, admin.Del(ctx, "ok:1").Err())
			assert.Equal(t, want, pipeline(hooked, ops), mode)
		}
	})
	t.Run("no script command", func(t *testing.T) {
		plain, hooked, _ := acl(t, srv, "noscript", "~*", "+@all", "-script")
		body := "return 7 -- " + strings.Repeat("s", 60)
		require.NoError(t, hooked.Eval(ctx, body, nil).Err()) // the hook knows the body
		for i := 0; i < 3; i++ {
			require.NoError(t, admin.ScriptFlush(ctx).Err())
			ops := func(p redis.Pipeliner) {
				p.EvalSha(ctx, testkit.SHA1(body), nil)
				p.Eval(ctx, body, nil)
				p.Eval(ctx, body, nil)
			}
			want := pipeline(plain, ops)
			require.NoError(t, admin.ScriptFlush(ctx).Err())
			assert.Equal(t, want, pipeline(hooked, ops), "round %d", i)
			require.NoError(t, admin.ScriptFlush(ctx).Err())
			assert.Equal(t, testkit.Render(plain.Eval(ctx, body, nil)), testkit.Render(hooked.Eval(ctx, body, nil)))
			require.NoError(t, admin.ScriptFlush(ctx).Err())
			assert.Equal(t, testkit.Render(plain.Eval(ctx, body, nil)), testkit.Render(hooked.Eval(ctx, body, nil)))
		}
	})
	t.Run("registered without script command", func(t *testing.T) {
		// Register promises the script is there before it is needed; for
		// a user who may not SCRIPT LOAD, once the server has shown that,
		// a pipeline's first EVALSHA of it carries the body as EVAL, so a
		// command that took effect after it (which rules out a retry)
		// changes nothing: the replies are plain EVAL's.
		plain, hooked, h := acl(t, srv, "noscriptreg", "~*", "+@all", "-script")
		body := "return redis.call('INCR', KEYS[1]) -- " + strings.Repeat("r", 60)
		sha := h.Register("reg", body)
		learn(t, hooked) // the probes: EVALSHA allowed, SCRIPT LOAD refused
		run := func(rdb *redis.Client, evalsha bool) []string {
			require.NoError(t, admin.ScriptFlush(ctx).Err())
			require.NoError(t, admin.Del(ctx, "reg:k", "reg:n").Err())
			got := pipeline(rdb, func(p redis.Pipeliner) {
				if evalsha {
					p.EvalSha(ctx, sha, []string{"reg:k"})
				} else {
					p.Eval(ctx, body, []string{"reg:k"})
				}
				p.Incr(ctx, "reg:n")
				p.EvalSha(ctx, sha, []string{"reg:k"})
			})
			return append(got, admin.Get(ctx, "reg:k").Val(), admin.Get(ctx, "reg:n").Val())
		}
		want := run(plain, false)
		require.Equal(t, "2", want[len(want)-2], "plain: the script ran twice")
		for i := 0; i < 2; i++ {
			assert.Equal(t, want, run(hooked, true), "round %d", i)
		}
	})
	t.Run("eval without evalsha", func(t *testing.T) {
		plain, hooked, _ := acl(t, srv, "noevalsha", "~*", "+@all", "-evalsha", "-evalsha_ro")
		body := "return 7 -- " + strings.Repeat("e", 60)
		var want, got []string
		for i := 0; i < 3; i++ {
			want = append(want, testkit.Render(plain.Eval(ctx, body, nil)))
			got = append(got, testkit.Render(hooked.Eval(ctx, body, nil)))
		}
		ops := func(p redis.Pipeliner) {
			p.Eval(ctx, body, nil)
			p.Eval(ctx, body, nil)
		}
		want = append(want, pipeline(plain, ops)...)
		got = append(got, pipeline(hooked, ops)...)
		tx := func(rdb *redis.Client) []string {
			cmds, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error { ops(p); return nil })
			return testkit.RenderAll(cmds, err)
		}
		want = append(want, tx(plain)...)
		got = append(got, tx(hooked)...)
		assert.Equal(t, want, got)
	})
	t.Run("evalsha without eval", func(t *testing.T) {
		// The hook must not run by SHA1 what plain EVAL gets NOPERM for,
		// not even a registered script (which it would load first), and a
		// repair it cannot make gives the caller's EVALSHA plain NOSCRIPT,
		// not the NOPERM of an EVAL the caller never wrote.
		plain, hooked, h := acl(t, srv, "noeval", "~*", "+@all", "-eval", "-eval_ro")
		_, _, h2 := acl(t, srv, "noevalnoscript", "~*", "+@all", "-eval", "-eval_ro", "-script")
		body := "return redis.call('INCR', KEYS[1]) -- " + strings.Repeat("r", 60)
		h.Register("counter", body)
		o := &redis.Options{Username: "noevalnoscript", Password: "x"}
		plain2, hooked2 := testkit.Client(t, srv, o), testkit.Client(t, srv, o)
		h2.Register("counter", body)
		hooked2.AddHook(h2)
		require.NoError(t, admin.Set(ctx, "c", 0, 0).Err())
		var want, got []string
		for _, pair := range [][2]*redis.Client{{plain, hooked}, {plain2, hooked2}} {
			for i := 0; i < 2; i++ {
				want = append(want, testkit.Render(pair[0].Eval(ctx, body, []string{"c"})))
				got = append(got, testkit.Render(pair[1].Eval(ctx, body, []string{"c"})))
				ops := func(p redis.Pipeliner) {
					p.Eval(ctx, body, []string{"c"})
					p.Eval(ctx, body, []string{"c"})
					p.EvalRO(ctx, body, []string{"c"})
				}
				want = append(want, pipeline(pair[0], ops)...)
				got = append(got, pipeline(pair[1], ops)...)
			}
			// A registered script's EVALSHA behaves as if the server had
			// the script: for the first user the hook can load it (the
			// reference is loaded by another client just before); the
			// second may neither load it nor run its EVAL, so plain
			// NOSCRIPT.
			require.NoError(t, admin.ScriptFlush(ctx).Err())
			if pair[0] == plain {
				require.NoError(t, admin.ScriptLoad(ctx, body).Err())
			}
			want = append(want, testkit.Render(pair[0].EvalSha(ctx, testkit.SHA1(body), []string{"c"})))
			require.NoError(t, admin.ScriptFlush(ctx).Err())
			require.NoError(t, admin.Set(ctx, "c", 0, 0).Err())
			got = append(got, testkit.Render(pair[1].EvalSha(ctx, testkit.SHA1(body), []string{"c"})))
		}
		assert.Equal(t, want, got)
		// Every EVAL was refused, and so was the repair's: the second
		// user's EVALSHA ran nothing (c is reset before each hooked one).
		assert.Equal(t, "0", admin.Get(ctx, "c").Val())
	})
}

// A MULTI the caller writes by hand is a transaction: QUEUED proves
// nothing was loaded, nothing is added inside it, and the caller's own
// SCRIPT FLUSH resets what the hook believes.
func TestHandWrittenTransactions(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	learn(t, r.Hooked)
	five := "return 5 -- " + strings.Repeat("f", 60)
	six := "return 6 -- " + strings.Repeat("s", 60)
	reg := h.Register("six", six) // for the plain client, loaded by Admin
	shapes := map[string]func(p redis.Pipeliner){
		"discard": func(p redis.Pipeliner) {
			p.Do(ctx, "multi")
			p.Eval(ctx, five, nil)
			p.Do(ctx, "discard")
			p.Eval(ctx, five, nil)
		},
		"exec": func(p redis.Pipeliner) {
			p.Do(ctx, "MULTI")
			p.Eval(ctx, five, nil)
			p.Eval(ctx, five, nil)
			p.Do(ctx, []byte("exec"))
			p.Eval(ctx, five, nil)
		},
		"nested multi": func(p redis.Pipeliner) {
			// The second MULTI is refused; the first stays open.
			p.Do(ctx, "multi")
			p.Do(ctx, "multi")
			p.Eval(ctx, five, nil)
			p.Eval(ctx, five, nil)
			p.EvalSha(ctx, reg, nil)
			p.Do(ctx, "exec")
			p.Eval(ctx, five, nil)
		},
		"watch aborted": func(p redis.Pipeliner) {
			p.Do(ctx, "watch", "w")
			p.Do(ctx, "multi")
			p.Eval(ctx, five, nil)
			p.Do(ctx, "exec")
			p.Eval(ctx, five, nil)
		},
	}
	for name, ops := range shapes {
		for _, flush := range []bool{false, true} {
			run := func(rdb *redis.Client) []string {
				if flush {
					r.FlushScripts(t)
				}
				if rdb == r.Plain {
					// Register promises the hooked client's EVALSHA
					// finds the script, as if the server had it.
					require.NoError(t, r.Admin.ScriptLoad(ctx, six).Err())
				}
				cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					ops(p)
					if name == "watch aborted" {
						require.NoError(t, r.Admin.Set(ctx, "w", "changed", 0).Err())
					}
					return nil
				})
				return testkit.RenderAll(cmds, err)
			}
			want := run(r.Plain)
			assert.Equal(t, want, run(r.Hooked), "%s flush=%v", name, flush)
			assert.Equal(t, want, run(r.Hooked), "%s flush=%v, again", name, flush)
		}
	}

	// On a sticky connection, single commands.
	nine := "return 9 -- " + strings.Repeat("n", 60)
	sticky := func(rdb *redis.Client) []string {
		conn := rdb.Conn()
		defer conn.Close()
		out := []string{testkit.Render(conn.Eval(ctx, nine, nil)), testkit.Render(conn.Eval(ctx, nine, nil))}
		out = append(out, testkit.Render(conn.Do(ctx, []byte("script"), []byte("flush"))))
		out = append(out, testkit.Render(conn.Do(ctx, "multi")))
		out = append(out, testkit.Render(conn.Eval(ctx, nine, nil)))
		out = append(out, testkit.Render(conn.Do(ctx, "exec")))
		out = append(out, testkit.Render(conn.Eval(ctx, nine, nil)))
		r.FlushScripts(t) // another client's flush between MULTI and EXEC
		out = append(out, testkit.Render(conn.Do(ctx, "multi")))
		out = append(out, testkit.Render(conn.Eval(ctx, nine, nil)))
		out = append(out, testkit.Render(conn.Do(ctx, "exec")))
		return out
	}
	assert.Equal(t, sticky(r.Plain), sticky(r.Hooked))
}

// Every spelling of SCRIPT FLUSH go-redis writes resets what the hook
// believes: the next uses carry their body, never NOSCRIPT.
func TestFlushSpellings(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	learn(t, r.Hooked)
	script, flush := "Script", "FLUSH"
	for _, args := range [][]interface{}{
		{"script", "flush"},
		{[]byte("SCRIPT"), []byte("flush")},
		{"script", []byte("Flush"), "async"},
		{&script, &flush},
	} {
		require.NoError(t, r.Hooked.Eval(ctx, bigCounter, []string{"k"}).Err())
		require.NoError(t, r.Hooked.Do(ctx, args...).Err())
		require.NoError(t, r.Hooked.Eval(ctx, bigCounter, []string{"k"}).Err())
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Eval(ctx, bigCounter, []string{"k"})
			p.Do(ctx, args...)
			p.Eval(ctx, bigCounter, []string{"k"})
			p.Eval(ctx, bigCounter, []string{"k"})
			return nil
		})
		require.NoError(t, err, "%v", args)
	}
	st := h.Stats()
	assert.Zero(t, st.NoScriptPassed)
	assert.Zero(t, st.NoScriptRepaired, "never a NOSCRIPT: the hook saw every flush")
}

// One Hook installed on clients of two servers and two databases: each
// client has its own record of its server, so a flush of one costs that one
// a repair and the other nothing.
func TestOneHookManyClients(t *testing.T) {
	t.Parallel()
	a, b := redistest.Start(t), redistest.Start(t)
	h := quiet()
	ca := testkit.Client(t, a, &redis.Options{DB: 0})
	cb := testkit.Client(t, b, &redis.Options{DB: 5})
	require.NoError(t, h.Install(ca))
	require.NoError(t, h.Install(cb))
	ctx := t.Context()
	for i := 0; i < 2; i++ {
		require.NoError(t, ca.Eval(ctx, incrScript, []string{"k"}, i).Err())
		require.NoError(t, cb.Eval(ctx, incrScript, []string{"k"}, i).Err())
	}
	require.NoError(t, testkit.Client(t, a, nil).ScriptFlush(ctx).Err())
	for i := 0; i < 3; i++ {
		require.NoError(t, ca.Eval(ctx, incrScript, []string{"k"}, i).Err())
		require.NoError(t, cb.Eval(ctx, incrScript, []string{"k"}, i).Err())
	}
	assert.Equal(t, int64(1), h.Stats().NoScriptRepaired, "only the flushed server")
	assert.Equal(t, "5", testkit.Client(t, a, nil).Get(ctx, "k").Val())
	assert.Equal(t, "5", testkit.Client(t, b, &redis.Options{DB: 5}).Get(ctx, "k").Val())
	var _ = fmt.Sprint
}

// A refusal of the hook's EVALSHA is remembered for the server (the calls
// go as written, with plain EVAL's results) and asked again after a
// reconnect: an ACL change that grants EVALSHA, with the clients' connections
// killed, brings the saving back.
func TestDeniedEvalShaAskedAgainAfterReconnect(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	admin := testkit.Client(t, srv, nil)
	plain, hooked, h := acl(t, srv, "relearn", "~*", "+@all", "-evalsha", "-evalsha_ro")
	spy := &testkit.Spy{}
	hooked.AddHook(spy)
	for i := 0; i < 4; i++ {
		want := testkit.Render(plain.Eval(ctx, bigCounter, []string{"p"}))
		got := testkit.Render(hooked.Eval(ctx, bigCounter, []string{"h"}))
		require.Equal(t, want, got, "call %d", i)
	}
	spy.Reset()
	require.NoError(t, hooked.Eval(ctx, bigCounter, []string{"h"}).Err())
	assert.Equal(t, []string{"eval"}, spy.Names(), "refused once, then as written")

	require.NoError(t, admin.Do(ctx, "acl", "setuser", "relearn", "+evalsha", "+evalsha_ro").Err())
	require.NoError(t, admin.ClientKillByFilter(ctx, "USER", "relearn").Err())
	spy.Reset()
	for i := 0; i < 3; i++ {
		require.NoError(t, hooked.Eval(ctx, bigCounter, []string{"h"}).Err())
	}
	assert.Contains(t, spy.Names(), "evalsha", "asked again after the reconnect")
	assert.Zero(t, h.Stats().NoScriptPassed)
}

// With WithMaxBatchSize a pipeline goes as sub-batches, and a MULTI the
// caller wrote is never split from its EXEC; a sub-batch that starts with
// it places nothing inside it (its indexes are the sub-batch's own).
func TestHandWrittenTransactionInSubBatches(t *testing.T) {
	t.Parallel()
	r, _ := rig(t, scripthook.WithMaxBatchSize(3))
	ctx := t.Context()
	learn(t, r.Hooked)
	five := "return 5 -- " + strings.Repeat("f", 60)
	ops := func(p redis.Pipeliner) {
		p.Eval(ctx, five, nil)
		p.Get(ctx, "sub:x")
		p.Set(ctx, "sub:x", "1", 0)
		p.Do(ctx, "multi")
		for i := 0; i < 4; i++ {
			p.Eval(ctx, five, nil)
		}
		p.Do(ctx, "exec")
	}
	for _, flush := range []bool{false, true} {
		run := func(rdb *redis.Client) []string {
			if flush {
				r.FlushScripts(t)
			}
			require.NoError(t, r.Admin.Del(ctx, "sub:x").Err())
			cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error { ops(p); return nil })
			return testkit.RenderAll(cmds, err)
		}
		want := run(r.Plain)
		for i := 0; i < 2; i++ {
			assert.Equal(t, want, run(r.Hooked), "flush=%v round %d", flush, i)
		}
	}
}
