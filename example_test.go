package scripthook_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
)

// exampleClient is a client of an embedded miniredis, for the examples.
func exampleClient() (*redis.Client, func()) {
	mr := miniredis.NewMiniRedis()
	_ = mr.Start()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	return rdb, func() { _ = rdb.Close(); mr.Close() }
}

const rateLimiter = `
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n`

// The whole integration is one line. The first call sends the body; the
// others go out as EVALSHA.
func Example() {
	rdb, stop := exampleClient()
	defer stop()

	h := scripthook.New()
	rdb.AddHook(h)

	ctx := context.Background()
	for i := 0; i < 3; i++ {
		n, err := rdb.Eval(ctx, rateLimiter, []string{"user:42"}, 60).Int()
		fmt.Println(n, err)
	}
	st := h.Stats()
	fmt.Printf("bodies sent: %d, sent as EVALSHA: %d\n", st.BodiesSent, st.Rewritten)
	// Output:
	// 1 <nil>
	// 2 <nil>
	// 3 <nil>
	// bodies sent: 1, sent as EVALSHA: 2
}

// A NOSCRIPT (here after SCRIPT FLUSH) never reaches the caller: the hook
// sends the body once more and the call succeeds.
func Example_scriptFlush() {
	rdb, stop := exampleClient()
	defer stop()
	h := scripthook.New()
	rdb.AddHook(h)

	ctx := context.Background()
	fmt.Println(rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Val())
	fmt.Println(rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Val())
	_ = rdb.ScriptFlush(ctx).Err()
	fmt.Println(rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Val())
	fmt.Println("repaired:", h.Stats().NoScriptRepaired)
	// Output:
	// 1
	// 2
	// 3
	// repaired: 1
}

// Register names a script for traces and lets the hook repair EVALSHA calls
// for it, such as those redis.Script.Run makes.
func ExampleHook_Register() {
	rdb, stop := exampleClient()
	defer stop()
	h := scripthook.New()
	rdb.AddHook(h)

	sha := h.Register("rate-limiter", rateLimiter)
	fmt.Println(sha == redis.NewScript(rateLimiter).Hash())

	// The server has never seen the script: EVALSHA would fail with
	// NOSCRIPT; the hook sends the body instead.
	n, err := rdb.EvalSha(context.Background(), sha, []string{"k"}, 60).Int()
	fmt.Println(n, err)
	// Output:
	// true
	// 1 <nil>
}

// In a pipeline the body goes out once per batch, ahead of its first use.
func ExampleWithPipelineMode() {
	rdb, stop := exampleClient()
	defer stop()
	h := scripthook.New(scripthook.WithPipelineMode(scripthook.PipelineStrict))
	rdb.AddHook(h)

	ctx := context.Background()
	cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < 100; i++ {
			p.Eval(ctx, rateLimiter, []string{"k"}, 60)
		}
		return nil
	})
	fmt.Println(len(cmds), err, cmds[99].(*redis.Cmd).Val())
	st := h.Stats()
	fmt.Printf("bodies sent: %d, sent as EVALSHA: %d\n", st.BodiesSent, st.Rewritten)
	// Output:
	// 100 <nil> 100
	// bodies sent: 1, sent as EVALSHA: 99
}

// Instrument reaches every shard of a Ring (and every node of a Cluster),
// those that exist already and those added later.
func ExampleInstrument() {
	a, b := miniredis.NewMiniRedis(), miniredis.NewMiniRedis()
	_, _ = a.Start(), b.Start()
	defer a.Close()
	defer b.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr(), "b": b.Addr()}})
	defer ring.Close()

	h := scripthook.New()
	if err := h.Install(ring); err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		_ = ring.Eval(ctx, rateLimiter, []string{fmt.Sprint("user:", i)}, 60).Err()
	}
	// One body per shard that ran the script, then EVALSHA.
	st := h.Stats()
	fmt.Printf("bodies sent: %d, sent as EVALSHA: %d\n", st.BodiesSent, st.Rewritten)

	// NewUniversalClient with one address makes a *redis.Client.
	single := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{a.Addr()}})
	defer single.Close()
	fmt.Println(scripthook.Instrument(single))
	// Output:
	// bodies sent: 2, sent as EVALSHA: 2
	// <nil>
}
