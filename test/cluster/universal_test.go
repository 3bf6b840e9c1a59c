package cluster_test

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// README's client table: redis.NewUniversalClient with several addresses
// returns a ClusterClient, and Instrument on it gives every node its node
// hook, as for a ClusterClient made directly: a pipeline's script goes to
// the node that owns its key with its body once, then by SHA1.
func TestUniversalClientCluster(t *testing.T) {
	t.Parallel()
	c := redistest.SharedCluster(t)
	u := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: c.Addrs, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { _ = u.Close() })
	cc, isCluster := u.(*redis.ClusterClient)
	require.True(t, isCluster, "several addresses: a ClusterClient")
	require.NoError(t, scripthook.Instrument(u, scripthook.WithTracing(false)))
	spy := testkit.WatchNodes(t, cc)
	ctx := t.Context()
	body := "return KEYS[1] -- universal " + strings.Repeat("u", 200)
	learnCaps(t, u)
	spy.Reset()
	cmds, err := u.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, body, []string{"{universal}:k"})
		p.Eval(ctx, body, []string{"{universal}:k"})
		return nil
	})
	require.NoError(t, err)
	for _, c := range cmds {
		assert.Equal(t, "{universal}:k", c.(*redis.Cmd).Val())
	}
	assert.Equal(t, [][]string{{"script|load", "evalsha", "evalsha"}}, spy.BatchNames(),
		"the node's hook sent the body once, ahead of its SHA1s")
}
