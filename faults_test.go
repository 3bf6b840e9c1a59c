package scripthook

// Faults during a reload, and cancellation while waiting for one.
//
// Server errors are produced by real redis-servers at the exact moment the
// hook reloads a script: a hook added after scripthook (so it sees what
// scripthook sends, below it in the chain) arms the fault just before the
// reload's EVAL goes out. Each error must reach the caller unchanged, be the
// error a plain client gets in the same situation, and cost exactly one
// command: no retry loop.
//
//	SCRIPTHOOK_REQUIRE_REDIS=1 go test -race -run 'TestFault' -v -timeout 300s .

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

// faultHook sits below scripthook and sees exactly the commands it sends.
// While armed, the first EVAL it sees runs before() first and after() once
// the reply is in; it records what next returned for that command.
type faultHook struct {
	mu     sync.Mutex
	armed  bool
	before func()
	after  func()
	sent   []string // script command names, in order
	gotErr error    // what next returned for the faulted command
}

func (f *faultHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (f *faultHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		name := cmd.Name()
		if !strings.HasPrefix(name, "eval") {
			return next(ctx, cmd)
		}
		f.mu.Lock()
		f.sent = append(f.sent, name)
		fire := f.armed && name == "eval"
		if fire {
			f.armed = false
		}
		f.mu.Unlock()
		if !fire {
			return next(ctx, cmd)
		}
		f.before()
		err := next(ctx, cmd)
		f.mu.Lock()
		f.gotErr = err
		f.mu.Unlock()
		f.after()
		return err
	}
}

func (f *faultHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (f *faultHook) arm(before, after func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed, f.before, f.after, f.sent, f.gotErr = true, before, after, nil, nil
}

func (f *faultHook) report() ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.sent...), f.gotErr
}

// fltCalls returns calls+rejected_calls of a command in INFO commandstats:
// every time the server received it, whether it ran or was refused.
func fltCalls(t *testing.T, c *redis.Client, name string) int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	var total int64
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+name+":")
		if !ok {
			continue
		}
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(field, "=")
			if k == "calls" || k == "rejected_calls" {
				n, err := strconv.ParseInt(v, 10, 64)
				require.NoError(t, err)
				total += n
			}
		}
	}
	return total
}

// fltAddr masks addresses (ports differ between connections).
var fltAddr = regexp.MustCompile(`127\.0\.0\.1:\d+`)

func fltErrText(err error) string {
	if err == nil {
		return "<nil>"
	}
	return fltAddr.ReplaceAllString(err.Error(), "127.0.0.1:*")
}

// fltScript writes when ARGV[1] is "w", returns 200 KB when it is "big",
// and only reads otherwise (so it also runs on a replica).
const fltScript = `
if ARGV[1] == 'w' then redis.call('SET', KEYS[1], 'x') end
if ARGV[1] == 'big' then return string.rep('x', 200000) end
return redis.call('GET', KEYS[1])`

// busyScript keeps the server busy (without writing, so SCRIPT KILL works)
// for at most five seconds. It goes out as EVAL_RO so that it is not
// counted with the EVALs under test.
const busyScript = `
local t = redis.call('TIME')
local start = t[1] * 1000 + t[2] / 1000
while true do
  local n = redis.call('TIME')
  if n[1] * 1000 + n[2] / 1000 - start > 5000 then break end
end
return 1`

// fltCase is one server error provoked during a reload.
type fltCase struct {
	name string
	args []string // extra redis-server arguments
	// setup runs once; it returns the server the clients talk to (a
	// replica for READONLY).
	setup func(t *testing.T, srv *redistest.Server) *redistest.Server
	// fault returns before/after functions that make the server answer the
	// next command with the error, and undo it. victim is the client name of
	// the connections that must fail (for a closed connection).
	fault  func(t *testing.T, srv *redistest.Server, victim string) (before, after func())
	arg    string // ARGV[1] of the faulted call
	prefix string // the error the caller must get
}

func fltCases() []fltCase {
	admin := func(t *testing.T, srv *redistest.Server) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, ClientName: "admin"})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	return []fltCase{
		{
			name: "OOM", args: []string{"--maxmemory-policy", "noeviction"}, arg: "w", prefix: "OOM ",
			fault: func(t *testing.T, srv *redistest.Server, _ string) (func(), func()) {
				a := admin(t, srv)
				return func() { require.NoError(t, a.ConfigSet(context.Background(), "maxmemory", "1").Err()) },
					func() { require.NoError(t, a.ConfigSet(context.Background(), "maxmemory", "0").Err()) }
			},
		},
		{
			name: "BUSY", args: []string{"--busy-reply-threshold", "50"}, arg: "r", prefix: "BUSY ",
			fault: func(t *testing.T, srv *redistest.Server, _ string) (func(), func()) {
				a, runner := admin(t, srv), admin(t, srv)
				done := make(chan error, 1)
				before := func() {
					// Dial the admin's connection now: a connection dialled
					// while the server is busy fails its HELLO with BUSY, and
					// SCRIPT KILL would then have nothing to go out on.
					require.NoError(t, a.Ping(context.Background()).Err())
					go func() { done <- runner.EvalRO(context.Background(), busyScript, nil).Err() }()
					require.Eventually(t, func() bool {
						return redis.HasErrorPrefix(a.Ping(context.Background()).Err(), "BUSY")
					}, 5*time.Second, 5*time.Millisecond, "the server never got busy")
				}
				after := func() {
					require.NoError(t, a.ScriptKill(context.Background()).Err())
					assert.Error(t, <-done, "the busy script was killed")
				}
				return before, after
			},
		},
		{
			name: "READONLY", arg: "w", prefix: "READONLY ",
			setup: func(t *testing.T, srv *redistest.Server) *redistest.Server {
				return redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(srv.Port))
			},
			fault: func(*testing.T, *redistest.Server, string) (func(), func()) {
				return func() {}, func() {} // a replica refuses writes all the time
			},
		},
		{
			name: "LOADING", args: []string{"--enable-debug-command", "local"}, arg: "r", prefix: "LOADING ",
			setup: func(t *testing.T, srv *redistest.Server) *redistest.Server {
				a := admin(t, srv)
				ctx := context.Background()
				// DEBUG RELOAD saves these keys and loads them back, 100 µs
				// per key, answering other clients LOADING meanwhile.
				require.NoError(t, a.Do(ctx, "DEBUG", "POPULATE", 5000).Err())
				require.NoError(t, a.ConfigSet(ctx, "key-load-delay", "100").Err())
				require.NoError(t, a.ConfigSet(ctx, "loading-process-events-interval-bytes", "1024").Err())
				return srv
			},
			fault: func(t *testing.T, srv *redistest.Server, _ string) (func(), func()) {
				a, reloader := admin(t, srv), admin(t, srv)
				done := make(chan error, 1)
				before := func() {
					go func() { done <- reloader.Do(context.Background(), "DEBUG", "RELOAD").Err() }()
					require.Eventually(t, func() bool {
						info, err := a.Info(context.Background(), "persistence").Result()
						return err == nil && strings.Contains(info, "loading:1")
					}, 5*time.Second, time.Millisecond, "the server never started loading")
				}
				after := func() { require.NoError(t, <-done) }
				return before, after
			},
		},
		{
			// The reply overflows the output buffer limit, so the server
			// closes the connection after running the script: the caller
			// gets EOF for a call that took effect.
			name: "closed connection", arg: "big", prefix: "EOF",
			fault: func(t *testing.T, srv *redistest.Server, _ string) (func(), func()) {
				a := admin(t, srv)
				set := func(v string) {
					require.NoError(t, a.ConfigSet(context.Background(), "client-output-buffer-limit", v).Err())
				}
				return func() { set("normal 16384 0 0") }, func() { set("normal 0 0 0") }
			},
		},
	}
}

// Server errors during a reload reach the caller unchanged, equal to what a
// plain client gets, after exactly one EVAL: no retry loop, and with
// go-redis's own retries on, no more attempts than a plain client makes.
func TestFaultErrorsDuringReload(t *testing.T) {
	for _, tc := range fltCases() {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			srv := redistest.Start(t, tc.args...)
			target := srv
			if tc.setup != nil {
				target = tc.setup(t, srv)
			}
			stats := redis.NewClient(&redis.Options{Addr: target.Addr, MaxRetries: -1})
			defer stats.Close()
			before, after := tc.fault(t, target, "")

			run := func(t *testing.T, retries int) {
				mk := func(hooks ...redis.Hook) *redis.Client {
					c := redis.NewClient(&redis.Options{Addr: target.Addr, MaxRetries: retries})
					t.Cleanup(func() { _ = c.Close() })
					for _, h := range hooks {
						c.AddHook(h)
					}
					return c
				}
				h := New(WithTracing(false))
				fh := &faultHook{}
				rdb, plain := mk(h, fh), mk()
				key := fmt.Sprint("k", retries)

				// Warm: the hook believes the server has the script. Then
				// another client flushes it: the next call reloads.
				for i := 0; i < 2; i++ {
					require.ErrorIs(t, rdb.Eval(ctx, fltScript, []string{key}, "r").Err(), redis.Nil)
				}
				require.NoError(t, stats.ScriptFlush(ctx).Err())
				require.NoError(t, stats.ConfigResetStat(ctx).Err())

				fh.arm(before, after)
				err := rdb.Eval(ctx, fltScript, []string{key}, tc.arg).Err()
				sent, gotErr := fh.report()
				require.Error(t, err)
				require.Equal(t, []string{"evalsha", "eval"}, sent,
					"the EVALSHA that met NOSCRIPT, then one reload: nothing retried by the hook")
				assert.Equal(t, fltErrText(gotErr), fltErrText(err), "surfaced unchanged")
				assert.True(t, strings.HasPrefix(err.Error(), tc.prefix), "got %q", err)
				hookEvals := fltCalls(t, stats, "eval")
				assert.Equal(t, int64(1), fltCalls(t, stats, "evalsha"))

				// A plain client in the same situation.
				require.NoError(t, stats.ScriptFlush(ctx).Err())
				require.NoError(t, stats.ConfigResetStat(ctx).Err())
				before()
				perr := plain.Eval(ctx, fltScript, []string{key}, tc.arg).Err()
				after()
				assert.Equal(t, fltErrText(perr), fltErrText(err), "the error a plain client gets")
				plainEvals := fltCalls(t, stats, "eval")
				if retries < 0 {
					assert.Equal(t, int64(1), hookEvals, "exactly one EVAL reached the server")
				}
				assert.Equal(t, plainEvals, hookEvals, "as many attempts as a plain client (go-redis's retries)")

				// The fault is gone: the next call is repaired and runs once.
				require.NoError(t, stats.ConfigResetStat(ctx).Err())
				require.ErrorIs(t, rdb.Eval(ctx, fltScript, []string{key}, "r").Err(), redis.Nil)
				assert.LessOrEqual(t, fltCalls(t, stats, "eval")+fltCalls(t, stats, "evalsha"), int64(2))
				t.Logf("%s (MaxRetries %d): caller got %q after %v; server received %d EVAL (plain client: %d)",
					tc.name, retries, err, sent, hookEvals, plainEvals)
			}
			t.Run("no retries", func(t *testing.T) { run(t, -1) })
			if tc.name == "READONLY" {
				// go-redis retries READONLY itself, below the hook: the hook
				// must not multiply those attempts.
				t.Run("go-redis retries", func(t *testing.T) { run(t, 3) })
			}
		})
	}
}

// The same errors from the fake server, for every caller of a NOSCRIPT
// storm: each caller sends at most the EVALSHA that met NOSCRIPT and one
// EVAL, and gets the error itself. A failed reload is never inherited by the
// callers that waited for it, and never retried.
func TestFaultReloadErrorsStormFake(t *testing.T) {
	for _, want := range []error{
		replyErr("OOM command not allowed when used memory > 'maxmemory'."),
		replyErr("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."),
		replyErr("READONLY You can't write against a read only replica."),
		replyErr("LOADING Redis is loading the dataset in memory"),
		net.ErrClosed,
	} {
		t.Run(want.Error(), func(t *testing.T) {
			f := newFakeServer()
			h := New(WithTracing(false))
			p := chain(h, f)
			ctx := context.Background()
			require.NoError(t, p(ctx, redis.NewCmd(ctx, "eval", unitBody, 1, "k")))
			f.flush()
			var evals atomic.Int64
			// The fault lasts: every script command gets the error (the
			// fake loads a script even from a failed EVAL, so later EVALSHAs
			// get past NOSCRIPT and meet it too).
			f.reply = func(args []interface{}) error {
				if args[0] == "eval" {
					evals.Add(1)
					time.Sleep(time.Millisecond) // let others pile up on the flight
				}
				return want
			}
			const n = 32
			var wg sync.WaitGroup
			errs := make([]error, n)
			before := len(f.names())
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					errs[i] = p(ctx, redis.NewCmd(ctx, "eval", unitBody, 1, "k"))
				}(i)
			}
			wg.Wait()
			for _, err := range errs {
				assert.Equal(t, want, err)
			}
			sent := len(f.names()) - before
			assert.LessOrEqual(t, sent, 2*n, "at most EVALSHA + EVAL per caller")
			assert.LessOrEqual(t, evals.Load(), int64(n), "at most one reload per caller")
			ok, _ := h.node.loaded(h.sh.cache.lookupSHA(sha1Hex(unitBody)))
			assert.False(t, ok, "an error proves nothing is loaded")
		})
	}
}

// slowScript makes the reload that carries it take a while on the server.
const slowScript = `
if ARGV[1] == 'slow' then
  local t = redis.call('TIME')
  local start = t[1] * 1000 + t[2] / 1000
  while true do
    local n = redis.call('TIME')
    if n[1] * 1000 + n[2] / 1000 - start > 300 then break end
  end
end
return redis.call('INCR', KEYS[1])`

// A caller whose context ends while it waits for another caller's reload
// returns promptly with its context's error and sends nothing; the reload
// completes for the callers still waiting; no goroutine is left behind.
// Then the same with the reloading caller's own context ending: those who
// waited send the body themselves.
func TestFaultCancelWhileWaitingForReload(t *testing.T) {
	srv := redistest.Start(t)
	ignore := goleak.IgnoreCurrent() // the server's process watcher, other tests' leftovers

	for _, leaderCancels := range []bool{false, true} {
		t.Run(fmt.Sprintf("leader cancels=%v", leaderCancels), func(t *testing.T) {
			ctx := context.Background()
			h := New(WithTracing(false))
			// ContextTimeoutEnabled: the leader's deadline interrupts its read.
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 32, MaxRetries: -1, ContextTimeoutEnabled: true})
			rdb.AddHook(h)
			admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
			key := fmt.Sprint("cancel-", leaderCancels)
			require.NoError(t, admin.Del(ctx, key).Err())
			require.NoError(t, admin.ScriptFlush(ctx).Err())

			// The leader sends the body; the script keeps the server busy
			// for 300 ms.
			lctx, lcancel := context.WithCancel(ctx)
			defer lcancel()
			if leaderCancels {
				lctx, lcancel = context.WithTimeout(ctx, 100*time.Millisecond)
				defer lcancel()
			}
			leaderErr := make(chan error, 1)
			go func() { leaderErr <- rdb.Eval(lctx, slowScript, []string{key}, "slow").Err() }()
			sha := sha1Hex(slowScript)
			require.Eventually(t, func() bool {
				s := h.sh.cache.lookupSHA(sha)
				return s != nil && h.node.inFlight(s) != nil
			}, 5*time.Second, time.Millisecond, "the leader's reload never started")
			s := h.sh.cache.lookupSHA(sha)
			fl := h.node.inFlight(s)

			const impatient, patient = 8, 8
			var wg sync.WaitGroup
			impatientErrs := make([]error, impatient)
			impatientEarly := make([]bool, impatient)
			patientErrs := make([]error, patient)
			for i := 0; i < patient; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					patientErrs[i] = rdb.Eval(ctx, slowScript, []string{key}, "fast").Err()
				}(i)
			}
			for i := 0; i < impatient; i++ {
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
					defer cancel()
					impatientErrs[i] = rdb.Eval(cctx, slowScript, []string{key}, "fast").Err()
					// Returned while the reload was still going: it did not
					// wait for it.
					select {
					case <-fl.done:
					default:
						impatientEarly[i] = true
					}
				}(i)
			}
			wg.Wait()

			lerr := <-leaderErr
			if leaderCancels {
				// Normally a deadline error; a leader that finished first on a
				// loaded machine changes nothing below.
				if lerr == nil {
					t.Log("the leader finished before its deadline")
				}
			} else {
				assert.NoError(t, lerr)
			}
			assert.GreaterOrEqual(t, fl.waiters.Load(), int32(patient), "the patient callers waited on the flight")
			for i := 0; i < impatient; i++ {
				assert.ErrorIs(t, impatientErrs[i], context.DeadlineExceeded)
				// 30 ms deadline against a 300 ms reload: they returned at
				// their deadline, not at the reload's end.
				assert.True(t, impatientEarly[i], "returned promptly, before the reload ended")
			}
			for i := 0; i < patient; i++ {
				assert.NoError(t, patientErrs[i])
			}
			// The leader's script ran on the server even when its caller gave
			// up (it was fully sent); the impatient callers sent nothing.
			assert.Equal(t, fmt.Sprint(1+patient), admin.Get(ctx, key).Val(), "impatient callers ran nothing, others once")
			if !leaderCancels {
				ok, _ := h.node.loaded(s)
				assert.True(t, ok, "the reload completed for the others")
			}
			// (When the leader gives up, its connection is closed, which
			// makes the hook forget the node's scripts at the next dial; the
			// callers that waited sent the body themselves, above.)

			require.NoError(t, rdb.Close())
			require.NoError(t, admin.Close())
			goleak.VerifyNone(t, ignore)
		})
	}
}
