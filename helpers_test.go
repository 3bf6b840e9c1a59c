package scripthook_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/stretchr/testify/require"
)

// rig is one real redis-server with a plain client, an admin client and a
// client with the hook, all on the same server.
type rig struct {
	srv   *redistest.Server
	plain *redis.Client // no hook: the reference for every result
	admin *redis.Client // no hook: flushes, stats, setup
	rdb   *redis.Client // with the hook
	h     *scripthook.Hook
}

func newRig(t *testing.T, opts ...scripthook.Option) *rig {
	t.Helper()
	srv := redistest.Start(t)
	return rigOn(t, srv, &redis.Options{}, opts...)
}

func rigOn(t *testing.T, srv *redistest.Server, base *redis.Options, opts ...scripthook.Option) *rig {
	t.Helper()
	mk := func() *redis.Client {
		o := *base
		o.Addr = srv.Addr
		c := redis.NewClient(&o)
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	r := &rig{srv: srv, plain: mk(), admin: mk(), rdb: mk()}
	r.h = scripthook.New(append([]scripthook.Option{scripthook.WithTracing(false)}, opts...)...)
	r.rdb.AddHook(r.h)
	return r
}

// calls returns how often the server ran a command since the last reset.
func (r *rig) calls(t *testing.T, name string) int64 {
	t.Helper()
	n, err := r.srv.CommandCalls(context.Background(), name)
	require.NoError(t, err)
	return n
}

func (r *rig) resetStats(t *testing.T) {
	t.Helper()
	require.NoError(t, r.srv.ResetStats(context.Background()))
}

func (r *rig) flushScripts(t *testing.T) {
	t.Helper()
	require.NoError(t, r.admin.ScriptFlush(context.Background()).Err())
}

// outcome renders a command's reply and error so that two clients' results
// can be compared exactly.
func outcome(cmd redis.Cmder) string {
	if c, ok := cmd.(*redis.Cmd); ok {
		v, err := c.Result()
		return fmt.Sprintf("%#v | %v", v, err)
	}
	return fmt.Sprintf("%s | %v", cmd.String(), cmd.Err())
}
