package faults_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// replyErr is an error reply of the server.
type replyErr string

func (e replyErr) Error() string { return string(e) }
func (replyErr) RedisError()     {}

// callerKey tags a storm caller's context with its index, so that the spy
// can tell whose command it sees.
type callerKey struct{}

// A storm on the fake server: 32 callers meet NOSCRIPT at once (the script
// was flushed) and the server refuses what their repairs send, with each
// error as a real server gives it: inside the script (OOM, READONLY,
// MISCONF: SCRIPT LOAD works), or for every command (BUSY, LOADING, a
// closed connection: SCRIPT LOAD fails too), the fault beginning as the
// NOSCRIPT replies go out. Every
// caller gets what a plain EVAL gets; none waits for another or inherits
// another's failure; each sends at most its EVALSHA, one SCRIPT LOAD and
// the command that gets the error, and nothing after an error that is not
// NOSCRIPT: no retry loop. Once the fault is gone the hook works normally.
func TestRepairErrorsStormFake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		// all: the whole server refuses, SCRIPT LOAD included.
		all bool
	}{
		{"OOM", replyErr("OOM command not allowed when used memory > 'maxmemory'. script: x, on @user_script:1."), false},
		{"READONLY", replyErr("READONLY You can't write against a read only replica. script: x, on @user_script:1."), false},
		{"MISCONF", replyErr("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk."), false},
		{"BUSY", replyErr("BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE."), true},
		{"LOADING", replyErr("LOADING Redis is loading the dataset in memory"), true},
		{"closed connection", net.ErrClosed, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			stormFake(t, tc.err, tc.all)
		})
	}
}

func stormFake(t *testing.T, fault error, all bool) {
	ctx := context.Background()
	f := &testkit.Fake{}
	h := scripthook.New(scripthook.WithTracing(false))
	// Each caller's commands in order, with what they got.
	type sentCmd struct{ name, err string }
	var mu sync.Mutex
	byCaller := map[int][]sentCmd{}
	spy := &testkit.Spy{
		// A round trip's latency, outside the fake's lock: the callers'
		// commands overlap, as they would on a network.
		Before: func(ctx context.Context, _ []redis.Cmder) {
			if ctx.Value(callerKey{}) != nil {
				time.Sleep(time.Millisecond)
			}
		},
		After: func(ctx context.Context, cmds []redis.Cmder, err error) {
			if i, ok := ctx.Value(callerKey{}).(int); ok {
				mu.Lock()
				byCaller[i] = append(byCaller[i], sentCmd{testkit.FullName(cmds[0]), testkit.ErrText(err)})
				mu.Unlock()
			}
		}}
	rdb := redis.NewClient(&redis.Options{Addr: "fake:6379", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(h)
	rdb.AddHook(spy)
	rdb.AddHook(f) // last: it answers
	plain := redis.NewClient(&redis.Options{Addr: "fake:6379", MaxRetries: -1})
	t.Cleanup(func() { _ = plain.Close() })
	plain.AddHook(f)
	body := testkit.LedgerScript
	call := func(ctx context.Context, rdb *redis.Client) *redis.Cmd {
		return rdb.Eval(ctx, body, []string{"k"}, "id")
	}

	// The hook runs the script by SHA1; another client flushes it.
	for i := 0; i < 2; i++ {
		require.NoError(t, call(ctx, rdb).Err())
	}
	f.Flush()
	f.Reset()

	// The fault, as the server would give it. has: the server holds the
	// script again (a SCRIPT LOAD or an EVAL compiled it), so that
	// EVALSHA no longer meets NOSCRIPT but the error.
	var has atomic.Bool
	f.Fail = func(args []interface{}) error {
		name := strings.ToLower(fmt.Sprint(args[0]))
		switch {
		case name == "evalsha" && !has.Load():
			return nil // NOSCRIPT
		case all:
			return fault
		case name == "script":
			has.Store(true)
			return nil
		case name == "eval":
			has.Store(true)
		}
		return fault
	}
	want := testkit.Render(call(ctx, plain))
	has.Store(false)

	const n = 32
	got := make([]*redis.Cmd, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i] = call(context.WithValue(ctx, callerKey{}, i), rdb)
		}()
	}
	wg.Wait()
	f.Fail = nil

	loads := 0
	for i := 0; i < n; i++ {
		assert.Equal(t, want, testkit.Render(got[i]), "caller %d gets what a plain EVAL gets", i)
		seq := byCaller[i]
		require.NotEmpty(t, seq, "caller %d", i)
		assert.LessOrEqual(t, len(seq), 4, "caller %d: EVALSHA, SCRIPT LOAD, EVALSHA, EVAL at most: %v", i, seq)
		for j, c := range seq[:len(seq)-1] {
			if c.name == "script|load" {
				loads++
				continue
			}
			assert.True(t, strings.HasPrefix(c.err, "NOSCRIPT"),
				"caller %d sent more after its command %d (%s) got %q: %v", i, j, c.name, c.err, seq)
		}
		assert.Equal(t, testkit.ErrText(got[i].Err()), seq[len(seq)-1].err, "caller %d got its last command's reply", i)
	}
	assert.LessOrEqual(t, loads, n, "at most one SCRIPT LOAD per caller")
	t.Logf("%d callers: %d SCRIPT LOADs, server calls %v", n, loads, f.Stats().Calls)

	// The fault is gone: the next call works, and the one after is one
	// EVALSHA.
	require.NoError(t, call(ctx, rdb).Err())
	f.Reset()
	require.NoError(t, call(ctx, rdb).Err())
	assert.Equal(t, map[string]int{"evalsha": 1}, f.Stats().Calls, "then by SHA1")
	assert.Zero(t, h.Stats().NoScriptPassed, "no NOSCRIPT reached a caller")
}
