package cluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// A Sentinel failover of a redis.NewFailoverClient's primary under load:
// the promoted replica has an empty script cache, calls succeed again on
// it with no NOSCRIPT reaching a caller, and no call's effect is applied
// twice.
//
// The old primary's writes are paused (CLIENT PAUSE WRITE) until the
// replica has all of them, as CLUSTER FAILOVER does by itself: otherwise a
// write the old primary acknowledges after the promotion is lost to
// asynchronous replication, whatever the client does, and "every
// successful call applied once" could not be checked. Calls held by the
// pause fail when Sentinel or go-redis closes their connections; the ledger
// accepts that such a call ran at most once.
func TestSentinelFailoverUnderLoad(t *testing.T) {
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
	require.NoError(t, h.Install(rdb))
	oldP, newP := sn.Primary, sn.Replica
	admin := &redis.Options{Protocol: 2, DisableIdentity: true, MaxRetries: -1}
	oldAdmin, newAdmin := testkit.Client(t, oldP, admin), testkit.Client(t, newP, admin)

	// Spans say which server ran a call: a FailoverClient dials an address
	// of its own ("FailoverClient"), and the hook takes the server's from
	// the connection.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	traced := newClient()
	require.NoError(t, scripthook.Instrument(traced, scripthook.WithTracerProvider(tp)))
	servedBy := func() int64 {
		spans.Reset()
		if traced.Eval(ctx, "return 1", nil).Err() != nil || len(spans.Ended()) != 1 {
			return 0
		}
		return attrsOf(spans.Ended()[0])["server.port"].AsInt64()
	}
	assert.Equal(t, int64(oldP.Port), servedBy(), "the first call's span names the server")

	start := time.Now()
	hooked := testkit.StartLedgerLoad(t, rdb, []string{"sentinel-h0", "sentinel-h1", "sentinel-h2"}, 3, "h")
	ref := testkit.StartLedgerLoad(t, plain, []string{"sentinel-p0"}, 1, "p")
	time.Sleep(200 * time.Millisecond)
	has, err := newAdmin.ScriptExists(ctx, testkit.SHA1(testkit.LedgerScript)).Result()
	require.NoError(t, err)
	require.Equal(t, []bool{false}, has, "the replica's script cache is empty")

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

	assert.Eventually(t, func() bool { return servedBy() == int64(newP.Port) }, 10*time.Second, 20*time.Millisecond,
		"spans name the new primary")

	served, err := sn.Primary.CommandCalls(ctx, "evalsha")
	require.NoError(t, err)
	assert.Positive(t, served, "the promoted replica runs the scripts by SHA1")
	check := newClient() // no hook, on the new primary
	logVerdict(t, "hooked", hooked.L, check)
	logVerdict(t, "plain", ref.L, check)
	assert.Zero(t, testkit.NoScriptSeen(hooked.L))
	assert.Zero(t, h.Stats().NoScriptPassed)
}

// infoValue returns the value of field in an INFO reply.
func infoValue(info, field string) string {
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return v
		}
	}
	return ""
}
