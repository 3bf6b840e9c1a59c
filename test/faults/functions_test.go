package faults_test

// Function libraries under faults, on the fake server: the hook's FUNCTION
// LOAD REPLACE refused (OOM, READONLY, NOPERM, a compile error), lost, or
// never answered, and FCALL's repair meeting "Function not found" again or
// a lost connection. For each: the exact error the caller gets, exactly how
// many FUNCTION LOAD and FCALL the server saw, how many times the function
// ran, and what the next call does once the fault is gone (the hook
// remembers nothing wrong).

import (
	"context"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fkLib is the library the fake tests register: fincr, fget.
const fkLib = "#!lua name=fk\n" +
	"redis.register_function('fincr', function(keys, args) return redis.call('INCRBY', keys[1], args[1]) end)\n" +
	"redis.register_function{function_name='fget', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}"

// The servers' exact refusals of a FUNCTION LOAD.
const (
	fkOOM      = "OOM command not allowed when used memory > 'maxmemory'."
	fkReadOnly = "READONLY You can't write against a read only replica."
	fkNoPerm   = "NOPERM User fake has no permissions to run the 'function|load' command"
)

// fnFake is a client whose hook has fkLib registered, answered by a fake
// server, and a plain client of the same fake.
type fnFake struct {
	f             *testkit.Fake
	h             *scripthook.Hook
	hooked, plain *redis.Client
}

func newFnFake(t *testing.T, f *testkit.Fake, libs ...string) *fnFake {
	t.Helper()
	if f == nil {
		f = &testkit.Fake{}
	}
	h := scripthook.New(scripthook.WithTracing(false))
	if len(libs) == 0 {
		libs = []string{fkLib}
	}
	for _, l := range libs {
		_, err := h.RegisterLibrary(l)
		require.NoError(t, err)
	}
	mk := func(hooks ...redis.Hook) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: "fake:6379", MaxRetries: -1})
		t.Cleanup(func() { _ = c.Close() })
		for _, hk := range hooks {
			c.AddHook(hk)
		}
		return c
	}
	return &fnFake{f: f, h: h, hooked: mk(h, f), plain: mk(f)}
}

// counts is what the fake saw since its last Reset: FUNCTION LOADs, FCALLs
// and runs of fincr.
type counts struct{ loads, fcalls, runs int }

func (x *fnFake) counts() counts {
	st := x.f.Stats()
	return counts{st.Calls["function|load"], st.Calls["fcall"] + st.Calls["fcall_ro"], st.FnRuns["fincr"]}
}

func (x *fnFake) fincr(ctx context.Context) error {
	return x.hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err()
}

// failLoadOnce makes the fake answer the next FUNCTION LOAD with err, and
// the ones after normally.
func failLoadOnce(f *testkit.Fake, err error) {
	var fired atomic.Bool
	f.Fail = func(args []interface{}) error {
		if testkit.IsFunctionLoad(args) && fired.CompareAndSwap(false, true) {
			return err
		}
		return nil
	}
}

// A refused FUNCTION LOAD: the caller gets the refusal, exactly once, and
// the FCALL the hook sends after it (which may find the library another
// client loaded) is the server's only other command. OOM and a compile
// error are remembered by nothing: the next call loads again (and works
// once the fault is gone). READONLY marks the server a replica and NOPERM
// marks FUNCTION LOAD refused there: the hook never loads on that server
// again, and the calls go as written, as a plain client's do.
func TestFunctionLoadRefusedFake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault error
		// stops: the hook loads no more on this server afterwards.
		stops bool
	}{
		{"OOM", replyErr(fkOOM), false},
		{"READONLY", replyErr(fkReadOnly), true},
		{"NOPERM", nil, true}, // an ACL rule, below
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			f := &testkit.Fake{}
			want := tc.fault
			if tc.fault == nil {
				f.Denied = map[string]bool{"function|load": true}
				want = replyErr(fkNoPerm)
			} else {
				failLoadOnce(f, tc.fault)
			}
			x := newFnFake(t, f)
			assert.EqualError(t, x.fincr(ctx), want.Error(), "the caller gets the load's refusal")
			assert.Equal(t, counts{loads: 1, fcalls: 1}, x.counts(), "one load, the call as written, nothing ran")
			assert.Equal(t, int64(1), x.h.Stats().FunctionLoads)

			f.Reset()
			if tc.stops {
				// The hook loads no more here: the call is the plain one.
				plain := x.plain.FCall(ctx, "fincr", []string{"k"}, 1).Err()
				require.EqualError(t, plain, testkit.NoFunctionText)
				f.Reset()
				assert.EqualError(t, x.fincr(ctx), plain.Error(), "what a plain FCALL gets")
				assert.Equal(t, counts{fcalls: 1}, x.counts(), "no load on this server")
				assert.Equal(t, int64(1), x.h.Stats().FunctionNotFoundPassed)
				// Another client loads the library: the calls work.
				require.NoError(t, f.FunctionLoad(fkLib))
				f.Reset()
				require.NoError(t, x.fincr(ctx))
				assert.Equal(t, counts{fcalls: 1, runs: 1}, x.counts())
				return
			}
			require.NoError(t, x.fincr(ctx), "the fault is gone: the next call loads again")
			assert.Equal(t, counts{loads: 1, fcalls: 1, runs: 1}, x.counts())
			f.Reset()
			require.NoError(t, x.fincr(ctx))
			assert.Equal(t, counts{fcalls: 1, runs: 1}, x.counts(), "then the call alone")
		})
	}
}

// A registered library that does not compile: every call gets the compile
// error, and every call tries the load again (nothing is remembered of a
// refusal); a fixed body registered over it works at once.
func TestFunctionLoadCompileErrorFake(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	broken := "#!lua name=fk\nredis.register_function('fincr', function() return + end)"
	x := newFnFake(t, nil, broken)
	want := "ERR Error compiling function: user_function:1: unexpected symbol near '+'"
	for i := 1; i <= 2; i++ {
		assert.EqualError(t, x.fincr(ctx), want, "call %d", i)
		assert.Equal(t, counts{loads: i, fcalls: i}, x.counts(), "call %d: one load each", i)
	}
	assert.Equal(t, int64(0), x.h.Stats().FunctionNotFoundPassed, "the caller got the load's error, not the not-found")
	_, err := x.h.RegisterLibrary(fkLib)
	require.NoError(t, err)
	x.f.Reset()
	require.NoError(t, x.fincr(ctx))
	assert.Equal(t, counts{loads: 1, fcalls: 1, runs: 1}, x.counts())
}

// The connection drops while the hook's FUNCTION LOAD is on its way (the
// fake answers it with a closed connection and loads nothing).
func TestFunctionLoadConnectionDroppedFake(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := &testkit.Fake{}
	failLoadOnce(f, io.ErrUnexpectedEOF)
	x := newFnFake(t, f)
	err := x.fincr(ctx)
	t.Logf("caller got %v; fake saw %+v", err, x.counts())
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the caller gets the lost connection, as a plain command on it would")
	assert.Equal(t, counts{loads: 1}, x.counts(), "nothing after the lost load")

	f.Reset()
	require.NoError(t, x.fincr(ctx), "the next call loads again")
	assert.Equal(t, counts{loads: 1, fcalls: 1, runs: 1}, x.counts())
}

// stallLoad is a hook between scripthook and the fake that holds the hook's
// FUNCTION LOAD until the caller's context ends (as go-redis does with
// ContextTimeoutEnabled: a server that never answers), then returns the
// context's error.
type stallLoad struct {
	entered chan struct{} // closed when a load is held
	once    atomic.Bool
}

func (s *stallLoad) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *stallLoad) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if testkit.IsFunctionLoad(cmd.Args()) && s.once.CompareAndSwap(false, true) {
			close(s.entered)
			<-ctx.Done()
			cmd.SetErr(ctx.Err())
			return ctx.Err()
		}
		return next(ctx, cmd)
	}
}

func (s *stallLoad) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// The hook's FUNCTION LOAD never answers. Another caller that needs the
// library meanwhile waits for that load, and returns its own context's
// error the moment its context ends, having sent nothing; the caller whose
// load hangs returns its context's error when its context ends, and sends
// no FCALL. Nothing is left waiting (goleak in TestMain), and the next call
// loads and runs.
func TestFunctionLoadNeverAnswersFake(t *testing.T) {
	t.Parallel()
	f := &testkit.Fake{}
	h := scripthook.New(scripthook.WithTracing(false))
	_, err := h.RegisterLibrary(fkLib)
	require.NoError(t, err)
	st := &stallLoad{entered: make(chan struct{})}
	rdb := redis.NewClient(&redis.Options{Addr: "fake:6379", MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	rdb.AddHook(h)
	rdb.AddHook(st)
	rdb.AddHook(f)
	x := &fnFake{f: f, h: h, hooked: rdb}

	ownerCtx, cancelOwner := context.WithCancel(t.Context())
	defer cancelOwner()
	owner := make(chan error, 1)
	go func() { owner <- x.fincr(ownerCtx) }()
	<-st.entered // the owner's load is held

	// A waiter whose context has ended: it does not wait for the load.
	waitCtx, cancelWait := context.WithCancel(t.Context())
	cancelWait()
	assert.ErrorIs(t, x.fincr(waitCtx), context.Canceled, "the waiter returns its context's error")
	assert.Equal(t, counts{}, x.counts(), "the waiter sent nothing; the held load has not reached the fake")
	select {
	case err := <-owner:
		t.Fatalf("the owner returned before its context ended: %v", err)
	default:
	}

	cancelOwner()
	assert.ErrorIs(t, <-owner, context.Canceled, "the owner returns its context's error")
	assert.Equal(t, counts{}, x.counts(), "no FCALL after the load that never answered")

	require.NoError(t, x.fincr(t.Context()), "the next call loads and runs")
	assert.Equal(t, counts{loads: 1, fcalls: 1, runs: 1}, x.counts())
}

// The library is flushed and stays missing: the reload succeeds, yet the
// retry is answered "Function not found" again (another client flushes in
// between, every time). Exactly one reload and one retry, no loop; the
// caller gets the not-found, as a plain FCALL would; the next call, with
// the flushes over, loads and runs.
func TestFunctionNotFoundAfterReloadFake(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	f := &testkit.Fake{}
	x := newFnFake(t, f)
	require.NoError(t, x.fincr(ctx))
	f.FunctionFlush()
	f.Reset()
	var missing atomic.Bool
	missing.Store(true)
	f.Fail = func(args []interface{}) error {
		if strings.EqualFold(testkit.Text(args[0]), "fcall") && missing.Load() {
			return replyErr(testkit.NoFunctionText) // flushed again just before
		}
		return nil
	}
	plain := x.plain.FCall(ctx, "fincr", []string{"k"}, 1).Err()
	f.Reset()
	err := x.fincr(ctx)
	assert.EqualError(t, err, testkit.NoFunctionText)
	assert.Equal(t, testkit.ErrText(plain), testkit.ErrText(err), "what a plain FCALL gets")
	assert.Equal(t, counts{loads: 1, fcalls: 2}, x.counts(), "one reload, one retry")
	st := x.h.Stats()
	assert.Equal(t, int64(1), st.FunctionNotFoundPassed)
	assert.Equal(t, int64(0), st.FunctionRepaired)

	missing.Store(false)
	f.FunctionFlush()
	f.Reset()
	require.NoError(t, x.fincr(ctx))
	assert.Equal(t, counts{loads: 1, fcalls: 1, runs: 1}, x.counts(), "the next call loads first")
	f.Reset()
	require.NoError(t, x.fincr(ctx))
	assert.Equal(t, counts{fcalls: 1, runs: 1}, x.counts())
}

// A lost connection at an FCALL: the caller gets the network error, and
// the FCALL is never sent a second time when the first may have run. Both
// the caller's first FCALL (the library held) and the repair's retry
// (after a flush and a reload) are lost.
func TestFunctionFCallLostFake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		flush bool // the FCALL meets not-found first: the retry is lost
		want  counts
	}{
		{"first call", false, counts{fcalls: 1, runs: 1}},
		{"retry", true, counts{loads: 1, fcalls: 2, runs: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			f := &testkit.Fake{}
			x := newFnFake(t, f)
			require.NoError(t, x.fincr(ctx))
			if tc.flush {
				f.FunctionFlush()
			}
			f.Reset()
			// The FCALL that finds the function runs, and its reply is
			// lost with the connection.
			lossy := &loseAfter{f: f}
			x.hooked = redis.NewClient(&redis.Options{Addr: "fake:6379", MaxRetries: -1})
			t.Cleanup(func() { _ = x.hooked.Close() })
			x.hooked.AddHook(x.h)
			x.hooked.AddHook(lossy)
			x.hooked.AddHook(f)
			err := x.fincr(ctx)
			assert.ErrorIs(t, err, io.ErrUnexpectedEOF, "the caller gets the lost connection")
			assert.Equal(t, tc.want, x.counts(), "never a second run")

			lossy.off.Store(true)
			f.Reset()
			require.NoError(t, x.fincr(ctx), "the next call works")
			assert.Equal(t, counts{fcalls: 1, runs: 1}, x.counts(), "the server holds the library")
		})
	}
}

// loseAfter is a hook between scripthook and the fake: an FCALL that runs
// (the function exists) has its reply replaced by a lost connection, until
// off.
type loseAfter struct {
	f   *testkit.Fake
	off atomic.Bool
}

func (l *loseAfter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (l *loseAfter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if !l.off.Load() && strings.EqualFold(testkit.Text(cmd.Args()[0]), "fcall") && err == nil {
			cmd.SetErr(io.ErrUnexpectedEOF)
			return io.ErrUnexpectedEOF
		}
		return err
	}
}

func (l *loseAfter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
