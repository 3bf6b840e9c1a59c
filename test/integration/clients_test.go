package integration_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientScript is long enough that the hook sends it by SHA1 once warm.
var clientScript = "return ARGV[1] -- " + strings.Repeat("c", 200)

// evalsThrough sends clientScript five times through rdb and returns how
// many EVALs and EVALSHAs the server ran for them.
func evalsThrough(t *testing.T, r *testkit.Rig, rdb redis.Scripter) (evals, evalshas int64) {
	t.Helper()
	ctx := t.Context()
	r.ResetStats(t)
	for i := 0; i < 5; i++ {
		v, err := rdb.Eval(ctx, clientScript, nil, "x").Result()
		require.NoError(t, err)
		require.Equal(t, "x", v)
	}
	return r.Calls(t, "eval"), r.Calls(t, "evalsha")
}

// README's table of client types, from the user's side: which call puts
// the hook on which client. A WithTimeout clone does not inherit the hook
// (go-redis copies no hooks into it), a Conn does, NewUniversalClient's
// single-server result takes Instrument.
func TestClientTypes(t *testing.T) {
	t.Parallel()
	t.Run("WithTimeout clone needs its own Install", func(t *testing.T) {
		r, h := rig(t)
		clone := r.Hooked.WithTimeout(5 * time.Second)
		evals, shas := evalsThrough(t, r, clone)
		assert.Equal(t, [2]int64{5, 0}, [2]int64{evals, shas}, "the clone sends what it is given")
		assert.Zero(t, h.Stats().Scripts, "the hook never saw the clone's calls")

		require.NoError(t, h.Install(clone))
		evals, shas = evalsThrough(t, r, clone)
		assert.Equal(t, [2]int64{1, 4}, [2]int64{evals, shas}, "installed: first as written, then by SHA1")
	})
	t.Run("Conn carries the hooks its client had", func(t *testing.T) {
		r, _ := rig(t)
		conn := r.Hooked.Conn()
		t.Cleanup(func() { _ = conn.Close() })
		evals, shas := evalsThrough(t, r, conn)
		assert.Equal(t, [2]int64{1, 4}, [2]int64{evals, shas})

		before := testkit.Client(t, r.Srv, nil).Conn() // made before its hook
		t.Cleanup(func() { _ = before.Close() })
		evals, shas = evalsThrough(t, r, before)
		assert.Equal(t, [2]int64{5, 0}, [2]int64{evals, shas})
	})
	t.Run("NewUniversalClient single address", func(t *testing.T) {
		r, _ := rig(t)
		u := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{r.Srv.Addr}})
		t.Cleanup(func() { _ = u.Close() })
		require.IsType(t, &redis.Client{}, u)
		require.NoError(t, scripthook.Instrument(u, scripthook.WithTracing(false)))
		evals, shas := evalsThrough(t, r, u)
		assert.Equal(t, [2]int64{1, 4}, [2]int64{evals, shas})
	})
}
