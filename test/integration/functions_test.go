package integration_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Function libraries the tests share.
const (
	// counterLib's fincr increments a key by its argument and returns
	// the new value; fget reads it (no-writes, for FCALL_RO).
	counterLib = "#!lua name=counter\n" +
		"redis.register_function('fincr', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)\n" +
		"redis.register_function{function_name='fget', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}"
	// counterLibV2 is a changed body of the same library: fincr doubles.
	counterLibV2 = "#!lua name=counter\n" +
		"redis.register_function('fincr', function(keys, args) return redis.call('INCRBY', keys[1], 2*args[1]) end)\n" +
		"redis.register_function{function_name='fget', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}"
	// brokenLib does not compile.
	brokenLib = "#!lua name=broken\nredis.register_function('fbroken', function() return + end)"
	// forgeLib's function answers with the server's own text.
	forgeLib = "#!lua name=forge\nredis.register_function('fforge', function() return redis.error_reply('ERR Function not found') end)"
)

const noFunction = "ERR Function not found"

// fnRig is a rig whose hook has counterLib registered.
func fnRig(t *testing.T, opts ...scripthook.Option) (*testkit.Rig, *scripthook.Hook) {
	t.Helper()
	r, h := rig(t, opts...)
	name, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	require.Equal(t, "counter", name)
	return r, h
}

// RegisterLibrary reads the library's name, and refuses, with a
// scripthook: error, what the server would refuse or what names no
// function it could recognise.
func TestRegisterLibraryParsing(t *testing.T) {
	t.Parallel()
	h := scripthook.New(scripthook.WithTracing(false))
	for _, bad := range []string{
		"",
		"redis.register_function('f', function() return 1 end)",
		"#!lua\nredis.register_function('f', function() return 1 end)",
		"#!js name=x\nredis.register_function('f', function() return 1 end)",
		"#!lua name=x foo=bar\nredis.register_function('f', function() return 1 end)",
		"#!lua name=a-b\nredis.register_function('f', function() return 1 end)",
		" #!lua name=x\nredis.register_function('f', function() return 1 end)",
		"#!lua name=nofuncs\nreturn 1",
	} {
		_, err := h.RegisterLibrary(bad)
		require.Error(t, err, "%q", bad)
		assert.True(t, strings.HasPrefix(err.Error(), "scripthook: "), "%v", err)
	}
	name, err := h.RegisterLibrary("#!LUA  name=Lib_2 \nredis.register_function(  \"F\" , function() return 1 end)")
	require.NoError(t, err)
	assert.Equal(t, "Lib_2", name)
	// Another library may not register the same function (any case).
	_, err = h.RegisterLibrary("#!lua name=other\nredis.register_function('f', function() return 2 end)")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Lib_2")
}

// A fresh server gets the library before the first call, once; a FUNCTION
// FLUSH by another client is repaired on the next call, which the caller
// never sees; a function the hook does not know reaches the caller as the
// server answers it; FCALL_RO works the same.
func TestFunctionRepairedAfterFlush(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	r.ResetStats(t)

	n, err := r.Hooked.FCall(ctx, "fincr", []string{"k"}, 5).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(5), n)
	assert.Equal(t, int64(1), r.Calls(t, "function|load"), "loaded once, before the first call")
	n, err = r.Hooked.FCall(ctx, "FINCR", []string{"k"}, 1).Int64() // function names ignore case
	require.NoError(t, err)
	assert.Equal(t, int64(6), n)
	assert.Equal(t, int64(1), r.Calls(t, "function|load"), "not again")

	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	assert.EqualError(t, r.Plain.FCall(ctx, "fincr", []string{"k"}, 1).Err(), noFunction, "what plain FCALL gets")
	n, err = r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(7), n, "ran once")
	assert.Equal(t, int64(2), r.Calls(t, "function|load"))
	v, err := r.Hooked.FCallRO(ctx, "fget", []string{"k"}).Text()
	require.NoError(t, err)
	assert.Equal(t, "7", v)

	st := h.Stats()
	assert.Equal(t, int64(2), st.FunctionLoads)
	assert.Equal(t, int64(1), st.FunctionRepaired)
	assert.Equal(t, int64(0), st.FunctionNotFoundPassed)

	// Not a registered function: unchanged, and no load for it.
	before := r.Calls(t, "function|load")
	plainErr := r.Plain.FCall(ctx, "nosuch", nil).Err()
	hookedErr := r.Hooked.FCall(ctx, "nosuch", nil).Err()
	assert.Equal(t, testkit.ErrText(plainErr), testkit.ErrText(hookedErr))
	assert.Equal(t, before, r.Calls(t, "function|load"))
	// Do("FCALL", ...) is the same call.
	n, err = r.Hooked.Do(ctx, "fcall", "fincr", 1, "k", 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(8), n)
}

// The same after the server restarts without persistence: the reconnect
// tells the hook that the server may have lost everything.
func TestFunctionAfterRestart(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	require.NoError(t, r.Srv.Restart())
	// The first command after a restart may meet the closed connection,
	// as without the hook; retries are go-redis's.
	var err error
	for range 3 {
		if err = r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err(); err == nil {
			break
		}
		require.True(t, testkit.IsNetErr(err), "%v", err)
	}
	require.NoError(t, err)
	n, err := r.Admin.Get(ctx, "k").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the data was lost with the restart; the call ran once")
	assert.Equal(t, int64(0), h.Stats().FunctionNotFoundPassed)
}

// Concurrent callers after a flush share one FUNCTION LOAD, and every call
// runs exactly once.
func TestFunctionConcurrentRepairOneLoad(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	for round := 0; round < 5; round++ {
		require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
		r.ResetStats(t)
		before := h.Stats().FunctionLoads
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.Equal(t, int64(1), r.Calls(t, "function|load"), "round %d: one load on the server", round)
		assert.Equal(t, before+1, h.Stats().FunctionLoads)
	}
	n, err := r.Admin.Get(ctx, "k").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1+5*16), n, "every call ran exactly once")
}

// A library that does not compile: the caller gets the server's compile
// error for its call, once per call, never a loop; registering a fixed body
// makes the next call work.
func TestFunctionLoadFails(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	_, err := h.RegisterLibrary(brokenLib)
	require.NoError(t, err)
	want := r.Plain.FunctionLoad(ctx, brokenLib).Err()
	require.Error(t, want)
	require.Contains(t, want.Error(), "Error compiling function")
	r.ResetStats(t)
	for i := 1; i <= 3; i++ {
		err := r.Hooked.FCall(ctx, "fbroken", nil).Err()
		assert.Equal(t, testkit.ErrText(want), testkit.ErrText(err), "call %d", i)
		assert.Equal(t, int64(i), r.Calls(t, "function|load"), "one load per call")
		assert.Equal(t, int64(i), r.Calls(t, "fcall"), "one call per call")
	}
	_, err = h.RegisterLibrary("#!lua name=broken\nredis.register_function('fbroken', function() return 'fixed' end)")
	require.NoError(t, err)
	v, err := r.Hooked.FCall(ctx, "fbroken", nil).Text()
	require.NoError(t, err)
	assert.Equal(t, "fixed", v)
}

// A function whose own error reply is the server's text is never
// repaired: its reply reaches the caller as plain FCALL gives it, and it
// runs once.
func TestFunctionForgedNotFound(t *testing.T) {
	t.Parallel()
	r, h := rig(t)
	ctx := t.Context()
	_, err := h.RegisterLibrary(forgeLib)
	require.NoError(t, err)
	require.NoError(t, r.Admin.FunctionLoad(ctx, forgeLib).Err())
	r.ResetStats(t)
	assert.EqualError(t, r.Hooked.FCall(ctx, "fforge", nil).Err(), noFunction)
	assert.Equal(t, int64(1), r.Calls(t, "fcall"))
}

// Registering a changed body replaces the library on every server before
// the next call there.
func TestFunctionChangedBody(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	n, err := r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	require.Equal(t, int64(1), n)
	_, err = h.RegisterLibrary(counterLibV2)
	require.NoError(t, err)
	n, err = r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(3), n, "the new body ran")
	// Registering the same body again changes nothing.
	r.ResetStats(t)
	_, err = h.RegisterLibrary(counterLibV2)
	require.NoError(t, err)
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, int64(0), r.Calls(t, "function|load"))
}

// A caller whose context ends while it waits for another caller's load
// returns at once with its context's error; the load goes on for the rest.
func TestFunctionWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	r, _ := fnRig(t)
	ctx := t.Context()
	// Writes are paused: the first caller's FUNCTION LOAD waits at the
	// server, and so does the one that waits for it.
	require.NoError(t, r.Admin.Do(ctx, "client", "pause", 60000, "write").Err())
	first := make(chan error, 1)
	go func() { first <- r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err() }()
	time.Sleep(200 * time.Millisecond) // let the first caller's load reach the server (ordering only, not timing)
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	err := r.Hooked.FCall(short, "fincr", []string{"k"}, 1).Err()
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	// Returned while the load it waited for is still held by the pause
	// (unpaused only below): the first caller has not finished.
	select {
	case e := <-first:
		t.Fatalf("the first caller finished before the pause was lifted: %v", e)
	default:
	}
	require.NoError(t, r.Admin.Do(ctx, "client", "unpause").Err())
	require.NoError(t, <-first)
	n, err := r.Admin.Get(ctx, "k").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "only the first call ran")
}

// Pipelines: the load goes ahead of the first call in the same round trip;
// after a flush a missing function is repaired when nothing that took
// effect follows it, else the caller gets the server's error, exactly as
// plain FCALL, and the next pipeline carries the load.
func TestFunctionPipelines(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	r.ResetStats(t)
	cmds, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		p.Set(ctx, "x", "1", 0)
		p.FCallRO(ctx, "fget", []string{"k"})
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(1), cmds[0].(*redis.Cmd).Val())
	assert.Equal(t, "1", cmds[2].(*redis.Cmd).Val())
	assert.Equal(t, int64(1), r.Calls(t, "function|load"))

	// After a flush, a miss followed by a write: not repaired (the write
	// took effect after it), as plain FCALL.
	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	cmds, err = r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		p.Set(ctx, "x", "2", 0)
		return nil
	})
	require.Error(t, err)
	assert.EqualError(t, cmds[0].Err(), noFunction)
	require.NoError(t, cmds[1].Err())
	assert.Equal(t, int64(1), h.Stats().FunctionNotFoundPassed)
	// The next pipeline carries the load.
	cmds, err = r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(2), cmds[0].(*redis.Cmd).Val())

	// A miss with nothing after it that took effect: repaired.
	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	cmds, err = r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Get(ctx, "x")
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(3), cmds[1].(*redis.Cmd).Val())
	assert.Equal(t, int64(4), cmds[2].(*redis.Cmd).Val())
	assert.Equal(t, int64(2), h.Stats().FunctionRepaired)
	n, err := r.Admin.Get(ctx, "k").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(4), n, "each call ran once")
}

// Transactions are never re-run outside their MULTI: after a flush the
// caller gets the error plain FCALL gives inside EXEC, and the next
// transaction works, on a Client and through Watch.
func TestFunctionTransactions(t *testing.T) {
	t.Parallel()
	r, _ := fnRig(t)
	ctx := t.Context()
	tx := func(rdb *redis.Client) ([]redis.Cmder, error) {
		return rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "n")
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
	}
	// The first transaction on a server without the library fails like
	// plain's; the next works.
	cmds, err := tx(r.Hooked)
	require.Error(t, err)
	assert.EqualError(t, cmds[1].Err(), noFunction)
	require.NoError(t, cmds[0].Err(), "the transaction's other commands ran, once")
	cmds, err = tx(r.Hooked)
	require.NoError(t, err)
	assert.Equal(t, int64(1), cmds[1].(*redis.Cmd).Val())

	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	cmds, err = tx(r.Hooked)
	require.Error(t, err)
	assert.EqualError(t, cmds[1].Err(), noFunction)
	// Through Watch, on its own connection.
	err = r.Hooked.Watch(ctx, func(t *redis.Tx) error {
		_, err := t.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		return err
	}, "k")
	require.NoError(t, err)
	n, err := r.Admin.Get(ctx, "k").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(2), n)
	m, err := r.Admin.Get(ctx, "n").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(3), m, "no transaction ran twice")

	// Once the server has shown that the user may load functions, a
	// transaction that needs the library carries the load inside its MULTI
	// (here after the caller's own FUNCTION DELETE): it works the first
	// time, in one round trip.
	require.NoError(t, r.Hooked.FunctionDelete(ctx, "counter").Err())
	r.ResetStats(t)
	cmds, err = tx(r.Hooked)
	require.NoError(t, err)
	assert.Equal(t, int64(3), cmds[1].(*redis.Cmd).Val())
	assert.Equal(t, int64(1), r.Calls(t, "function|load"))
	assert.Equal(t, int64(1), r.Calls(t, "exec"), "no transaction of the hook's")

	// The load inside a Watch transaction leaves WATCH as it was: a change
	// to the watched key aborts it all, the load included, as plain.
	require.NoError(t, r.Hooked.FunctionDelete(ctx, "counter").Err())
	err = r.Hooked.Watch(ctx, func(t *redis.Tx) error {
		if err := r.Admin.Incr(ctx, "k").Err(); err != nil {
			return err
		}
		_, err := t.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		return err
	}, "k")
	assert.ErrorIs(t, err, redis.TxFailedErr)
	n, err = r.Admin.Get(ctx, "k").Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(4), n, "the function did not run")
	n, err = r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err, "the next call loads it")
	assert.Equal(t, int64(5), n)
}

// FUNCTION commands of the caller's own change what the hook believes:
// after its FUNCTION DELETE the next call loads the library again, and its
// own FUNCTION LOAD of the library's name stands (the hook does not
// replace it before calls).
func TestFunctionCallerCommands(t *testing.T) {
	t.Parallel()
	r, _ := fnRig(t)
	ctx := t.Context()
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	require.NoError(t, r.Hooked.FunctionDelete(ctx, "counter").Err())
	r.ResetStats(t)
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, int64(1), r.Calls(t, "function|load"), "loaded before the call, no miss")
	assert.Equal(t, int64(1), r.Calls(t, "fcall"))

	require.NoError(t, r.Hooked.FunctionLoadReplace(ctx, counterLibV2).Err())
	r.ResetStats(t)
	n, err := r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(4), n, "the caller's version ran")
	assert.Equal(t, int64(0), r.Calls(t, "function|load"), "no load of the hook's")

	// In a pipeline, after the caller's FUNCTION FLUSH, nothing is added:
	// the call after it gets the server's answer, as plain.
	cmds, _ := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FunctionFlush(ctx)
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		return nil
	})
	assert.EqualError(t, cmds[1].Err(), noFunction)
	n, err = r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err, "the next call loads it")
	assert.Equal(t, int64(5), n)
}

// A FUNCTION FLUSH storm from another client under concurrent single calls
// and pipelines: an exactly-once ledger shows that no call ran twice, and
// every call that reached the caller as an error is the server's "Function
// not found" (flushed again between the load and the call) and did not run.
func TestFunctionFlushStorm(t *testing.T) {
	t.Parallel()
	const ledgerLib = "#!lua name=ledger\n" +
		"redis.register_function('fledger', function(keys, args) " +
		"if redis.call('HSETNX', keys[1], args[1], 1) == 0 then return redis.error_reply('DUP ' .. args[1]) end " +
		"return redis.call('HLEN', keys[1]) end)"
	r, h := rig(t)
	_, err := h.RegisterLibrary(ledgerLib)
	require.NoError(t, err)
	ctx := t.Context()
	stop := make(chan struct{})
	var flushes sync.WaitGroup
	flushes.Add(1)
	go func() {
		defer flushes.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
				_ = r.Admin.FunctionFlush(ctx).Err()
			}
		}
	}()
	type outcome struct {
		id  string
		err error
	}
	out := make(chan outcome, 8*200)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				if w%2 == 0 {
					id := fmt.Sprintf("s%d-%d", w, i)
					out <- outcome{id, r.Hooked.FCall(ctx, "fledger", []string{"ledger"}, id).Err()}
					continue
				}
				a, b := fmt.Sprintf("p%d-%d-a", w, i), fmt.Sprintf("p%d-%d-b", w, i)
				cmds, _ := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
					p.FCall(ctx, "fledger", []string{"ledger"}, a)
					p.FCall(ctx, "fledger", []string{"ledger"}, b)
					return nil
				})
				out <- outcome{a, cmds[0].Err()}
				out <- outcome{b, cmds[1].Err()}
			}
		}()
	}
	wg.Wait()
	close(stop)
	flushes.Wait()
	close(out)
	ran, missed := 0, 0
	for o := range out {
		exists, err := r.Admin.HExists(ctx, "ledger", o.id).Result()
		require.NoError(t, err)
		switch {
		case o.err == nil:
			ran++
			assert.True(t, exists, "%s ran", o.id)
		default:
			missed++
			assert.EqualError(t, o.err, noFunction, "%s", o.id)
			assert.False(t, exists, "%s failed and did not run", o.id)
		}
	}
	t.Logf("%d calls ran, %d got the server's error; stats %+v", ran, missed, h.Stats())
	assert.Equal(t, 8*150, ran+missed)
	assert.Greater(t, ran, missed, "the repairs kept most calls working")
}

// A SCRIPT FLUSH queued inside a MULTI the caller wrote does not make the
// hook forget that MULTI: its FUNCTION LOAD for a registered library and
// its SCRIPT LOAD for a registered script stay out of the caller's
// transaction, whose EXEC replies are exactly plain's. (The flush used to
// reset the count of open MULTIs, and both loads were queued: two extra
// replies in EXEC's.)
func TestFunctionFlushInsideCallerMulti(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	h.Register("seven", "return 7")
	run := func(c *redis.Client) []string {
		require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
		r.FlushScripts(t)
		cn := c.Conn()
		defer cn.Close()
		var out []string
		for _, args := range [][]interface{}{
			{"multi"}, {"script", "flush"},
			{"fcall", "fincr", 1, "k", 1}, {"evalsha", testkit.SHA1("return 7"), 0},
			{"exec"},
		} {
			out = append(out, testkit.Render(cn.Do(ctx, args...)))
		}
		return out
	}
	want := run(r.Plain)
	assert.Equal(t, want, run(r.Hooked))
	// Afterwards the hook works as usual.
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
}
