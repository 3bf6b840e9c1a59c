package scripthook

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const unitBody = "return redis.call('INCR', KEYS[1])"

func TestUnitFirstCallSendsBodyThenSHA(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false))
	p := chain(h, f)
	for i := 0; i < 3; i++ {
		require.NoError(t, p(t.Context(), redis.NewCmd(t.Context(), "eval", unitBody, 1, "k")))
	}
	assert.Equal(t, []string{"eval", "evalsha", "evalsha"}, f.names(), "no doomed EVALSHA first")
	st := h.Stats()
	assert.Equal(t, int64(2), st.Rewritten)
	assert.Equal(t, int64(1), st.BodiesSent)
}

func TestUnitRewriteOff(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false), WithRewrite(false))
	p := chain(h, f)
	for i := 0; i < 3; i++ {
		require.NoError(t, p(t.Context(), redis.NewCmd(t.Context(), "eval", unitBody, 1, "k")))
	}
	assert.Equal(t, []string{"eval", "eval", "eval"}, f.names())
}

// Many callers that hit NOSCRIPT together cause one body transfer: the
// first reloads, the others wait for it and run by SHA1.
func TestUnitNoScriptStormSendsBodyOnce(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false))
	p := chain(h, f)
	require.NoError(t, p(t.Context(), redis.NewCmd(t.Context(), "eval", unitBody, 1, "k")))
	f.flush()
	f.evals.Store(0)

	const n = 64
	// The reload is held until every other caller waits for it, so they all
	// overlap with it. (Callers that arrive after the first NOSCRIPT skip the
	// doomed EVALSHA and wait straight away.)
	f.gateEval = make(chan struct{})
	s := h.sh.cache.lookupSHA(sha1Hex(unitBody))
	go func() {
		for {
			if fl := h.node.inFlight(s); fl != nil && fl.waiters.Load() == n-1 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		close(f.gateEval)
	}()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs[i] = p(context.Background(), redis.NewCmd(context.Background(), "eval", unitBody, 1, "k"))
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, int64(1), f.evals.Load(), "one body for all callers")
	assert.Equal(t, f.noscripts.Load(), h.Stats().NoScriptRepaired, "every NOSCRIPT received was repaired")
	assert.Zero(t, h.Stats().NoScriptPassed)
}

// A caller waiting for another's reload returns at once when its context
// ends; the reload completes for the others.
func TestUnitWaiterContextEnds(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false))
	p := chain(h, f)
	f.gateEval = make(chan struct{})

	leaderDone := make(chan error, 1)
	go func() {
		leaderDone <- p(context.Background(), redis.NewCmd(context.Background(), "eval", unitBody, 1, "k"))
	}()
	for f.evals.Load() == 0 { // the leader is inside its EVAL
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	waiterDone := make(chan error, 1)
	go func() {
		waiterDone <- p(ctx, redis.NewCmd(ctx, "eval", unitBody, 1, "k"))
	}()
	cancel()
	select {
	case err := <-waiterDone:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter did not return after its context ended")
	}
	close(f.gateEval)
	require.NoError(t, <-leaderDone)
	assert.Equal(t, int64(1), f.evals.Load(), "the waiter sent no body")
	ok, _ := h.node.loaded(h.sh.cache.lookupSHA(sha1Hex(unitBody)))
	assert.True(t, ok, "the reload completed")
}

// When the caller that was sending the body fails, those waiting for it
// send their own: a waiter never inherits another caller's failure.
func TestUnitLeaderFailureWaitersSendOwnBody(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false))
	p := chain(h, f)
	f.gateEval = make(chan struct{})
	lctx, lcancel := context.WithCancel(context.Background())
	leaderDone := make(chan error, 1)
	go func() { leaderDone <- p(lctx, redis.NewCmd(lctx, "eval", unitBody, 1, "k")) }()
	for f.evals.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	waiterDone := make(chan error, 1)
	go func() {
		waiterDone <- p(context.Background(), redis.NewCmd(context.Background(), "eval", unitBody, 1, "k"))
	}()
	// Let the waiter reach the flight, then end the leader's context.
	s := h.sh.cache.lookupSHA(sha1Hex(unitBody))
	for h.node.inFlight(s).waiters.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	lcancel()
	assert.ErrorIs(t, <-leaderDone, context.Canceled)
	close(f.gateEval)
	require.NoError(t, <-waiterDone)
	assert.Equal(t, int64(2), f.evals.Load())
}

// Every outcome but NOSCRIPT reaches the caller unchanged, after exactly one
// command: nothing else is ever retried.
func TestUnitOtherOutcomesNotRetried(t *testing.T) {
	outcomes := []error{
		redis.Nil,
		replyErr("ERR user_script:1: Script attempted to access nonexistent global variable 'x'"),
		replyErr("ERR Error compiling script (new function): user_script:1: unexpected symbol near '+'"),
		replyErr("WRONGTYPE Operation against a key holding the wrong kind of value"),
		replyErr("OOM command not allowed when used memory > 'maxmemory'."),
		replyErr("BUSY Redis is busy running a script."),
		replyErr("READONLY You can't write against a read only replica."),
		replyErr("LOADING Redis is loading the dataset in memory"),
		io.EOF,
		context.DeadlineExceeded,
		context.Canceled,
	}
	for _, want := range outcomes {
		t.Run(want.Error(), func(t *testing.T) {
			for _, warm := range []bool{false, true} {
				f := newFakeServer()
				h := New(WithTracing(false))
				p := chain(h, f)
				if warm {
					require.NoError(t, p(t.Context(), redis.NewCmd(t.Context(), "eval", unitBody, 1, "k")))
				}
				before := len(f.names())
				f.reply = func([]interface{}) error { return want }
				got := p(t.Context(), redis.NewCmd(t.Context(), "eval", unitBody, 1, "k"))
				assert.Equal(t, want, got)
				assert.Len(t, f.names(), before+1, "exactly one command")
			}
		})
	}
}

// An EVALSHA for a body the hook does not know passes through, NOSCRIPT
// included; once the hook knows the body, NOSCRIPT is repaired.
func TestUnitEvalShaUnknownThenKnown(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false))
	p := chain(h, f)
	sha := sha1Hex(unitBody)
	err := p(t.Context(), redis.NewCmd(t.Context(), "evalsha", sha, 1, "k"))
	assert.True(t, isNoScript(err))
	assert.Equal(t, int64(1), h.Stats().NoScriptPassed)

	assert.Equal(t, sha, h.Register("incr", unitBody))
	require.NoError(t, p(t.Context(), redis.NewCmd(t.Context(), "EVALSHA", sha, 1, "k")))
	assert.Equal(t, []string{"evalsha", "EVALSHA", "eval"}, f.names())
	assert.Equal(t, int64(1), h.Stats().NoScriptRepaired)
}

// The caller's args are never written to, even when shared between calls.
func TestUnitArgsUntouched(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false))
	p := chain(h, f)
	args := []interface{}{"EVAL", unitBody, 1, "k", "a"}
	snapshot := append([]interface{}(nil), args...)
	for i := 0; i < 3; i++ {
		cmd := redis.NewCmd(t.Context(), args...)
		require.NoError(t, p(t.Context(), cmd))
		assert.Equal(t, snapshot, cmd.Args())
	}
	assert.Equal(t, snapshot, args)
}

func TestUnitMalformedPassThrough(t *testing.T) {
	f := newFakeServer()
	h := New(WithTracing(false))
	p := chain(h, f)
	for _, args := range [][]interface{}{
		{"eval"},
		{"eval", unitBody},
		{"eval", unitBody, -1},
		{"eval", unitBody, 3, "k"},
		{"eval", 42, 0},
	} {
		cmd := redis.NewCmd(t.Context(), args...)
		_ = p(t.Context(), cmd)
		assert.Equal(t, args, cmd.Args())
	}
	assert.Equal(t, []string{"eval", "eval", "eval", "eval", "eval"}, f.names())
	assert.Zero(t, h.Stats().Scripts)
}
