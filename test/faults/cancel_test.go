package faults_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// timedOut reports an error that says a deadline passed: the context's, or
// the connection's read deadline go-redis set from it.
func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// A caller whose context ends while its repair's SCRIPT LOAD is in flight
// (the server's reply held back by a proxy, on that connection only)
// returns at its deadline with a timeout and runs nothing; 8 other callers
// of the same script, started while that load is in flight, finish while
// it still is: in this design no caller waits for another's work (they find
// the load in flight and send their command with its body). Each runs
// once. The hook then works normally.
func TestCancelDuringRepair(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := redistest.Start(t)
	px := newStallProxy(t, srv.Addr)
	admin := testkit.Client(t, srv, nil)
	// ContextTimeoutEnabled: go-redis reads with the context's deadline, so
	// a caller can give up on a reply (a cancellation without a deadline
	// interrupts no read, with or without the hook).
	opts := &redis.Options{Addr: px.Addr(), PoolSize: 16, MaxRetries: -1, ContextTimeoutEnabled: true}
	mk := func() *redis.Client {
		c := redis.NewClient(opts)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	h := scripthook.New(scripthook.WithTracing(false))
	// Registered: a caller that finds the belief unknown would load it
	// first, so the others meet the load in flight whichever way they
	// call.
	sha := h.Register("ledger", testkit.LedgerScript)
	spy := &testkit.Spy{}
	hooked, plain := mk(), mk()
	hooked.AddHook(h)
	hooked.AddHook(spy)
	l := testkit.NewLedger()
	key := testkit.LedgerKey("cancel")
	eval := func(ctx context.Context, rdb *redis.Client, id string) error {
		cmd := rdb.Eval(ctx, testkit.LedgerScript, []string{key}, id)
		l.RecordCmd(t, "cancel", id, cmd)
		return cmd.Err()
	}

	// The hook pins the script; another client flushes it: the next call
	// repairs.
	require.NoError(t, eval(ctx, hooked, "warm"))
	require.NoError(t, admin.ScriptFlush(ctx).Err())

	const deadline = 300 * time.Millisecond
	held, release := px.Arm("\r\nscript\r\n$4\r\nload\r\n")
	defer release()
	actx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	var aErr error
	var aTook time.Duration
	aDone := make(chan struct{})
	spy.Reset()
	go func() {
		defer close(aDone)
		t0 := time.Now()
		aErr = eval(actx, hooked, "A")
		aTook = time.Since(t0)
	}()
	select {
	case <-held:
	case <-time.After(10 * time.Second):
		t.Fatalf("the repair's SCRIPT LOAD never went out; the hook sent %v", spy.Names())
	}

	// 8 others, while A's load is in flight: half EVAL, half EVALSHA of
	// the registered script.
	const others = 8
	errs := make([]error, others)
	var wg sync.WaitGroup
	for i := 0; i < others; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint("other-", i)
			if i%2 == 0 {
				errs[i] = eval(ctx, hooked, id)
				return
			}
			cmd := hooked.EvalSha(ctx, sha, []string{key}, id)
			l.RecordCmd(t, "cancel", id, cmd)
			errs[i] = cmd.Err()
		}()
	}
	othersDone := make(chan struct{})
	go func() { wg.Wait(); close(othersDone) }()
	var blocked bool
	select {
	case <-othersDone:
	case <-time.After(10 * time.Second):
		blocked = true
	}
	var aLate bool
	select {
	case <-aDone:
	case <-time.After(10 * time.Second):
		aLate = true
	}
	// Only now does the held reply go on.
	release()
	<-othersDone
	<-aDone
	assert.False(t, blocked, "the other callers finished while A's load was in flight")
	assert.False(t, aLate, "A returned while its load was in flight")
	for i, err := range errs {
		assert.NoError(t, err, "other caller %d", i)
	}
	assert.True(t, timedOut(aErr), "A got a timeout: %v", aErr)
	assert.Less(t, aTook, deadline+2*time.Second, "A returned at its deadline")
	assert.Empty(t, admin.HGet(ctx, key, "A").Val(), "A ran nothing: no command went out after its deadline")

	// A plain client's EVAL whose reply comes after its deadline.
	pheld, prelease := px.Arm("\r\n$4\r\neval\r\n")
	pctx, pcancel := context.WithTimeout(ctx, deadline)
	pErr := plain.Eval(pctx, testkit.LedgerScript, []string{testkit.LedgerKey("plain")}, "P").Err()
	pcancel()
	<-pheld
	prelease()
	assert.True(t, timedOut(pErr), "the plain EVAL timed out: %v", pErr)
	t.Logf("A got %q after %v (plain EVAL: %q); the hook sent %v", testkit.ErrText(aErr), aTook.Round(time.Millisecond), testkit.ErrText(pErr), spy.Names())

	// The hook works on: the next call runs once, with no NOSCRIPT.
	require.NoError(t, eval(ctx, hooked, "after"))
	assert.Zero(t, h.Stats().NoScriptPassed, "no NOSCRIPT reached a caller")
	v := l.Verify(t, admin)
	assert.Equal(t, 1, v.UnknownLost, "A, and only A, is unknown and did not run")
}
