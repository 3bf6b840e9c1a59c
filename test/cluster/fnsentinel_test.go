package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A Sentinel FailoverClient with a registered library, under FCALL load
// (singles, pipelines, transactions) through a Sentinel failover: the
// calls work before and after it; during it, callers get only what a
// client without the hook gets (network errors, READONLY from the demoted
// primary, ...), never "Function not found"; every call ran at most once,
// every successful one exactly once. Writes on the old primary are paused
// until the replica has them, as in TestSentinelFailoverUnderLoad.
func TestSentinelFunctionsFailover(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	sn := redistest.StartSentinel(t)
	newClient := func() *redis.Client {
		c := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: sn.MasterName, SentinelAddrs: sn.SentinelAddrs, MaxRetries: -1,
		})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	rdb, plain := newClient(), newClient()
	h := scripthook.New(scripthook.WithTracing(false))
	_, err := h.RegisterLibrary(fnLib)
	require.NoError(t, err)
	require.NoError(t, h.Install(rdb))
	sp := newSendSpy()
	rdb.AddHook(sp.hookFor("primary"))
	oldP, newP := sn.Primary, sn.Replica
	admin := &redis.Options{Protocol: 2, DisableIdentity: true, MaxRetries: -1}
	oldAdmin, newAdmin := testkit.Client(t, oldP, admin), testkit.Client(t, newP, admin)
	require.False(t, hasLib(t, oldAdmin))

	// Before: the first call loads the library, once.
	l := testkit.NewLedger()
	for i := 0; i < 5; i++ {
		id := fmt.Sprint("before-", i)
		assert.Equal(t, testkit.Ran, l.RecordCmd(t, "sfn-x", id, fnCall(ctx, rdb, "sfn-x", id)))
	}
	calls := func(s *redistest.Server, name string) int64 {
		n, err := s.CommandCalls(ctx, name)
		require.NoError(t, err)
		return n
	}
	assert.Equal(t, int64(1), calls(oldP, "function|load"))
	require.NoError(t, oldAdmin.Do(ctx, "WAIT", 1, 5000).Err())
	require.True(t, hasLib(t, newAdmin), "the replica has the library by replication")

	start := time.Now()
	hooked := startFnLoad(t, rdb, []string{"sfn-h0", "sfn-h1", "sfn-h2"}, 3, "h", true)
	ref := startFnLoad(t, plain, []string{"sfn-p0", "sfn-p1"}, 2, "p", true)
	time.Sleep(200 * time.Millisecond)

	require.NoError(t, oldAdmin.Do(ctx, "CLIENT", "PAUSE", 30000, "WRITE").Err())
	require.Eventually(t, func() bool {
		info, err := oldAdmin.Info(ctx, "replication").Result()
		if err != nil {
			return false
		}
		offset := "offset=" + infoValue(info, "master_repl_offset") + ","
		return strings.Contains(infoValue(info, "slave0"), offset)
	}, 10*time.Second, 5*time.Millisecond, "the replica caught up")
	okBefore, _, _ := hooked.L.Counts()
	require.NoError(t, sn.Failover(ctx))
	require.NoError(t, oldAdmin.Do(ctx, "CLIENT", "UNPAUSE").Err())
	require.Eventually(t, func() bool {
		ok, _, _ := hooked.L.Counts()
		return ok > okBefore+300
	}, 20*time.Second, 10*time.Millisecond, "calls succeed again after the failover")
	hooked.Stop()
	ref.Stop()
	t.Logf("failover under load took %v", time.Since(start))

	// After: every call works.
	for i := 0; i < 5; i++ {
		id := fmt.Sprint("after-", i)
		assert.Equal(t, testkit.Ran, l.RecordCmd(t, "sfn-x", id, fnCall(ctx, rdb, "sfn-x", id)))
	}
	var cmds []*redis.Cmd
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < 3; i++ {
			cmds = append(cmds, fnCall(ctx, p, "sfn-x", fmt.Sprint("after-tx-", i)))
		}
		return nil
	})
	require.NoError(t, err)
	for i, c := range cmds {
		assert.Equal(t, testkit.Ran, l.RecordCmd(t, "sfn-x", fmt.Sprint("after-tx-", i), c))
	}
	served, err := sn.Primary.CommandCalls(ctx, "fcall")
	require.NoError(t, err)
	assert.Positive(t, served, "the promoted replica runs the functions")

	check := newClient()
	logVerdict(t, "hooked", hooked.L, check)
	logVerdict(t, "plain", ref.L, check)
	l.Verify(t, check)
	assert.Zero(t, notFoundSeen(hooked.L))
	assert.Zero(t, h.Stats().FunctionNotFoundPassed)
	// Error replies (network errors aside) only of kinds the plain client
	// got too.
	plainKinds := map[string]bool{}
	for msg := range ref.L.Errors() {
		plainKinds[errKind(msg)] = true
	}
	for msg, n := range hooked.L.Errors() {
		if !plainKinds[errKind(msg)] && !isNetText(msg) {
			t.Errorf("%d hooked calls failed with %q, which the plain client never got", n, msg)
		}
	}
	t.Logf("sends: %s; stats %+v", sp, h.Stats())
	t.Logf("function|load: old primary %d, new primary %d", calls(oldP, "function|load"), calls(newP, "function|load"))
}

// errKind is an error reply's first word (READONLY, LOADING, ...), or the
// whole text for network errors.
func errKind(msg string) string {
	if k, _, ok := strings.Cut(msg, " "); ok && k == strings.ToUpper(k) {
		return k
	}
	return msg
}

// isNetText reports an error text that is no server reply.
func isNetText(msg string) bool {
	return errKind(msg) == msg || strings.Contains(msg, "connection") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "closed")
}
