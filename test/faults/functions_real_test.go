package faults_test

// The refusals of functions_test.go staged on real servers: a user whose
// ACL lacks function|load, a server out of memory (maxmemory 1), a replica.
// What the hooked caller gets is what the plain client's own FUNCTION LOAD
// REPLACE of the library gets; the FCALL after it is what a plain FCALL
// gets; and what the hook sends is counted by a Spy after it.

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fnReal is a hooked client (fkLib registered, a Spy after the hook) and a
// plain client of the same server, made from base.
type fnReal struct {
	h             *scripthook.Hook
	spy           *testkit.Spy
	hooked, plain *redis.Client
}

func newFnReal(t *testing.T, srv *redistest.Server, base *redis.Options) *fnReal {
	t.Helper()
	h := scripthook.New(scripthook.WithTracing(false))
	_, err := h.RegisterLibrary(fkLib)
	require.NoError(t, err)
	x := &fnReal{h: h, spy: &testkit.Spy{}, hooked: testkit.Client(t, srv, base), plain: testkit.Client(t, srv, base)}
	x.hooked.AddHook(h)
	x.hooked.AddHook(x.spy)
	return x
}

// sent counts the FUNCTION LOADs and FCALLs the hook sent since the last
// reset of the spy.
func (x *fnReal) sent() counts {
	var c counts
	for _, n := range x.spy.Names() {
		switch n {
		case "function|load":
			c.loads++
		case "fcall", "fcall_ro":
			c.fcalls++
		}
	}
	return c
}

// The user may not run FUNCTION LOAD: the caller gets the server's NOPERM
// for it, once; afterwards the hook sends no load to that server and the
// calls are a plain client's; once another client loads the library, they
// work.
func TestFunctionLoadNoPermReal(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t)
	admin := testkit.Client(t, srv, nil)
	require.NoError(t, admin.Do(ctx, "acl", "setuser", "fn-noload", "on", ">pw", "~*", "&*", "+@all", "-function|load").Err())
	x := newFnReal(t, srv, &redis.Options{Username: "fn-noload", Password: "pw"})

	wantLoad := x.plain.FunctionLoadReplace(ctx, fkLib).Err()
	require.Error(t, wantLoad)
	wantCall := x.plain.FCall(ctx, "fincr", []string{"k"}, 1).Err()
	require.EqualError(t, wantCall, testkit.NoFunctionText)

	assert.Equal(t, testkit.ErrText(wantLoad), testkit.ErrText(x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err()),
		"the caller gets the NOPERM of FUNCTION LOAD")
	assert.Equal(t, counts{loads: 1, fcalls: 1}, x.sent())
	x.spy.Reset()
	assert.Equal(t, testkit.ErrText(wantCall), testkit.ErrText(x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err()),
		"then what a plain FCALL gets")
	assert.Equal(t, counts{fcalls: 1}, x.sent(), "no load again")

	require.NoError(t, admin.FunctionLoad(ctx, fkLib).Err())
	x.spy.Reset()
	n, err := x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "ran once")
	assert.Equal(t, counts{fcalls: 1}, x.sent())
	assert.Equal(t, "1", admin.Get(ctx, "k").Val())
}

// The server is out of memory (maxmemory 1): FUNCTION LOAD is refused with
// OOM and the caller gets exactly the OOM a plain FUNCTION LOAD REPLACE
// gets; nothing is remembered, so once memory is back the next call loads
// and runs.
func TestFunctionLoadOOMReal(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t)
	admin := testkit.Client(t, srv, nil)
	x := newFnReal(t, srv, nil)
	require.NoError(t, x.plain.Ping(ctx).Err())
	require.NoError(t, x.hooked.Ping(ctx).Err())

	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", "1").Err())
	wantLoad := x.plain.FunctionLoadReplace(ctx, fkLib).Err()
	require.Error(t, wantLoad)
	require.Contains(t, wantLoad.Error(), "OOM ")
	x.spy.Reset()
	for i := 1; i <= 2; i++ {
		assert.Equal(t, testkit.ErrText(wantLoad), testkit.ErrText(x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err()), "call %d", i)
		assert.Equal(t, counts{loads: i, fcalls: i}, x.sent(), "call %d: one load and the call each time", i)
	}

	require.NoError(t, admin.ConfigSet(ctx, "maxmemory", "0").Err())
	x.spy.Reset()
	n, err := x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	assert.Equal(t, counts{loads: 1, fcalls: 1}, x.sent())
	x.spy.Reset()
	require.NoError(t, x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, counts{fcalls: 1}, x.sent(), "then the call alone")
	assert.Equal(t, "2", admin.Get(ctx, "k").Val())
}

// On a replica FUNCTION LOAD is refused with READONLY: the caller gets the
// READONLY a plain FUNCTION LOAD REPLACE gets, once; the hook marks the
// server a replica and never loads there again (what a plain FCALL gets
// follows); the library the primary gets reaches the replica by
// replication, and FCALL_RO on the replica then works with no load.
func TestFunctionLoadReadOnlyReal(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	primary := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strconv.Itoa(primary.Port))
	padmin := testkit.Client(t, primary, nil)
	x := newFnReal(t, replica, nil)

	wantLoad := x.plain.FunctionLoadReplace(ctx, fkLib).Err()
	require.Error(t, wantLoad)
	require.Contains(t, wantLoad.Error(), "READONLY ")
	wantCall := x.plain.FCallRO(ctx, "fget", []string{"k"}).Err()
	require.EqualError(t, wantCall, testkit.NoFunctionText)

	// The load ahead of the call is refused READONLY; the call gets the
	// server's reply, as plain (README, FCALL_RO on replicas), with no
	// second call.
	assert.Equal(t, testkit.ErrText(wantCall), testkit.ErrText(x.hooked.FCallRO(ctx, "fget", []string{"k"}).Err()))
	assert.Equal(t, counts{loads: 1, fcalls: 1}, x.sent())
	x.spy.Reset()
	assert.Equal(t, testkit.ErrText(wantCall), testkit.ErrText(x.hooked.FCallRO(ctx, "fget", []string{"k"}).Err()))
	assert.Equal(t, counts{fcalls: 1}, x.sent(), "no load on a replica")

	// The same in pipelines, with a hook of its own: the first carries the
	// load (refused READONLY; the call's reply is the plain one), the next
	// carries none.
	y := newFnReal(t, replica, nil)
	pipe := func(c *redis.Client) []string {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCallRO(ctx, "fget", []string{"k"})
			return nil
		})
		return testkit.RenderAll(cmds, err)
	}
	want := pipe(y.plain)
	assert.Equal(t, want, pipe(y.hooked))
	assert.Equal(t, counts{loads: 1, fcalls: 1}, y.sent())
	y.spy.Reset()
	assert.Equal(t, want, pipe(y.hooked))
	assert.Equal(t, counts{fcalls: 1}, y.sent(), "no load on a replica")

	require.NoError(t, padmin.FunctionLoad(ctx, fkLib).Err())
	require.NoError(t, padmin.Set(ctx, "k", "v", 0).Err())
	waitReplicated(t, x.plain, "k", "v")
	x.spy.Reset()
	v, err := x.hooked.FCallRO(ctx, "fget", []string{"k"}).Text()
	require.NoError(t, err)
	assert.Equal(t, "v", v)
	assert.Equal(t, counts{fcalls: 1}, x.sent())
}

// waitReplicated waits until the replica c reads value at key (written on
// the primary after the library, so the library is there too). A wait,
// not an assertion on time: the limit is only against a hang.
func waitReplicated(t *testing.T, c *redis.Client, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for {
		if v, err := c.Get(ctx, key).Result(); err == nil && v == value {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("replica never read %s=%s", key, value)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// The repair's retry runs on the server and its reply is lost with the
// connection (a real server, a connection that dies after the write): the
// caller gets the network error, the function ran once, and nothing is
// sent again. The next call is decided before its dial (the library is
// held) and runs; the dial after a lost connection makes the hook forget
// what the server holds (it may have restarted), so the call after that
// loads first.
func TestFunctionRetryLostReal(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	srv := redistest.Start(t)
	admin := testkit.Client(t, srv, nil)
	l := &lossy{}
	x := newFnReal(t, srv, &redis.Options{Dialer: l.dial, PoolSize: 1, MaxRetries: -1})
	require.NoError(t, x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	require.NoError(t, admin.FunctionFlush(ctx).Err())
	x.spy.Reset()
	l.writes.Store(0)
	l.nth = 4 // the FCALL (not found), the FUNCTION LIST, the reload, the retry
	err := x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err()
	require.True(t, l.broken.Load(), "the retry went out")
	assert.ErrorIs(t, err, errLost)
	assert.Equal(t, counts{loads: 1, fcalls: 2}, x.sent(), "one reload, one retry, nothing after the lost reply")
	assert.Equal(t, "2", admin.Get(ctx, "k").Val(), "the retry ran, once")

	l.nth, l.writes, l.broken = 0, atomic.Int64{}, atomic.Bool{}
	x.spy.Reset()
	require.NoError(t, x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, "3", admin.Get(ctx, "k").Val())
	assert.Equal(t, counts{fcalls: 1}, x.sent(), "decided before the dial: the library is held (and here it is)")
	x.spy.Reset()
	require.NoError(t, x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, "4", admin.Get(ctx, "k").Val())
	assert.Equal(t, counts{loads: 1, fcalls: 1}, x.sent(), "the dial after a lost connection made the hook forget: loaded first")
}
