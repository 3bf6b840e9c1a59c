package testkit

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook/internal/redistest"
)

// Rig is one real server with three clients: Plain (no hook, the reference
// for every result), Admin (no hook: flushes, stats, setup) and Hooked (with
// the hook under test).
type Rig struct {
	Srv                  *redistest.Server
	Plain, Admin, Hooked *redis.Client
}

// NewRig starts a server of its own and adds hook to the Hooked client.
func NewRig(t testing.TB, hook redis.Hook) *Rig {
	t.Helper()
	return RigOn(t, redistest.Start(t), &redis.Options{}, hook)
}

// RigOn is NewRig on an existing server, every client made from base.
func RigOn(t testing.TB, srv *redistest.Server, base *redis.Options, hook redis.Hook) *Rig {
	t.Helper()
	r := &Rig{Srv: srv, Plain: Client(t, srv, base), Admin: Client(t, srv, base), Hooked: Client(t, srv, base)}
	if hook != nil {
		r.Hooked.AddHook(hook)
	}
	return r
}

// Client returns a client of srv made from base (nil: defaults), closed
// when the test ends.
func Client(t testing.TB, srv *redistest.Server, base *redis.Options) *redis.Client {
	t.Helper()
	o := redis.Options{}
	if base != nil {
		o = *base
	}
	o.Addr = srv.Addr
	c := redis.NewClient(&o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Calls returns how often the server ran a command ("eval",
// "script|load") since the last ResetStats.
func (r *Rig) Calls(t testing.TB, name string) int64 {
	t.Helper()
	n, err := r.Srv.CommandCalls(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// ResetStats zeroes the server's command counts.
func (r *Rig) ResetStats(t testing.TB) {
	t.Helper()
	if err := r.Srv.ResetStats(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// FlushScripts empties the server's script cache, as another client.
func (r *Rig) FlushScripts(t testing.TB) {
	t.Helper()
	if err := r.Admin.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}

// FlushDB empties the data, as another client.
func (r *Rig) FlushDB(t testing.TB) {
	t.Helper()
	if err := r.Admin.FlushDB(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
}
