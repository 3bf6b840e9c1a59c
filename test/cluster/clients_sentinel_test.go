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

// README's client table, the Sentinel rows: redis.NewUniversalClient with
// MasterName returns a failover *redis.Client, and with RouteRandomly too a
// failover *redis.ClusterClient (what NewFailoverClusterClient returns);
// Instrument takes either, and the primary then runs a script as written
// once, by SHA1 after that. Without the hook every call goes as written.
func TestSentinelClientTypes(t *testing.T) {
	t.Parallel()
	sn := redistest.StartSentinel(t)
	r := testkit.RigOn(t, sn.Primary, &redis.Options{Protocol: 2, DisableIdentity: true, MaxRetries: -1}, nil)
	body := "return ARGV[1] -- sentinel client types " + strings.Repeat("s", 200)
	// evals sends body five times through c and returns how many EVALs and
	// EVALSHAs the primary ran for them.
	evals := func(t *testing.T, c redis.UniversalClient) [2]int64 {
		t.Helper()
		r.ResetStats(t)
		for i := 0; i < 5; i++ {
			v, err := c.Eval(t.Context(), body, nil, "x").Result()
			require.NoError(t, err)
			require.Equal(t, "x", v)
		}
		return [2]int64{r.Calls(t, "eval"), r.Calls(t, "evalsha")}
	}
	for _, c := range []struct {
		name    string
		opts    redis.UniversalOptions
		cluster bool
	}{
		{"MasterName: a failover Client", redis.UniversalOptions{}, false},
		{"MasterName and RouteRandomly: a failover ClusterClient", redis.UniversalOptions{RouteRandomly: true}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := c.opts
			o.MasterName, o.Addrs, o.MaxRetries = sn.MasterName, sn.SentinelAddrs, -1
			u := redis.NewUniversalClient(&o)
			t.Cleanup(func() { _ = u.Close() })
			if c.cluster {
				require.IsType(t, &redis.ClusterClient{}, u)
			} else {
				require.IsType(t, &redis.Client{}, u)
			}
			r.FlushScripts(t)
			assert.Equal(t, [2]int64{5, 0}, evals(t, u), "no hook: as written")

			require.NoError(t, scripthook.Instrument(u, scripthook.WithTracing(false)))
			r.FlushScripts(t)
			assert.Equal(t, [2]int64{1, 4}, evals(t, u), "instrumented: first as written, then by SHA1")
		})
	}
}
