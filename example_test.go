package scripthook_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/spanrec"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
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

// A NOSCRIPT never reaches the caller. Here another client empties the
// server's script cache behind the hook's back (as a restart, a failover or
// an operator would): the hook's EVALSHA meets NOSCRIPT, and the hook loads
// the script once more and runs the call. A SCRIPT FLUSH sent through the
// hooked client itself needs no repair: the hook sees it and forgets what
// the server had, so its next call simply carries the body.
func Example_scriptFlush() {
	rdb, stop := exampleClient()
	defer stop()
	h := scripthook.New()
	rdb.AddHook(h)
	other := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	defer other.Close()

	ctx := context.Background()
	fmt.Println(rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Val())
	fmt.Println(rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Val())
	_ = other.ScriptFlush(ctx).Err()
	fmt.Println(rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Val())
	fmt.Println("repaired:", h.Stats().NoScriptRepaired)

	_ = rdb.ScriptFlush(ctx).Err()
	fmt.Println(rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Val())
	fmt.Println("repaired:", h.Stats().NoScriptRepaired)
	// Output:
	// 1
	// 2
	// 3
	// repaired: 1
	// 4
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

	// The server has never seen the script: EVALSHA alone would fail with
	// NOSCRIPT. The hook loads the registered script first (SCRIPT LOAD),
	// then sends the caller's EVALSHA.
	n, err := rdb.EvalSha(context.Background(), sha, []string{"k"}, 60).Int()
	fmt.Println(n, err)
	st := h.Stats()
	fmt.Printf("SCRIPT LOAD: %d, NOSCRIPT repaired: %d\n", st.Loads, st.NoScriptRepaired)
	// Output:
	// true
	// 1 <nil>
	// SCRIPT LOAD: 1, NOSCRIPT repaired: 0
}

// In strict mode (the default) no batch depends on what the server's script
// cache held before it. The first batch of a Hook on a server sends its
// scripts as written, with their bodies, as plain EVAL does, and asks the
// server what the user may run (EVALSHA, SCRIPT LOAD: hidden probes that run
// and create nothing, whose replies the caller never sees). Later batches
// send one SCRIPT LOAD of each script ahead of its first use, and every use
// as EVALSHA, wherever that writes fewer bytes than the bodies.
func ExampleWithPipelineMode() {
	rdb, stop := exampleClient()
	defer stop()
	h := scripthook.New(scripthook.WithPipelineMode(scripthook.PipelineStrict))
	rdb.AddHook(h)

	ctx := context.Background()
	var before scripthook.Stats
	for batch := 1; batch <= 2; batch++ {
		cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := 0; i < 100; i++ {
				p.Eval(ctx, rateLimiter, []string{"k"}, 60)
			}
			return nil
		})
		fmt.Println(len(cmds), err, cmds[99].(*redis.Cmd).Val())
		st := h.Stats()
		fmt.Printf("batch %d: bodies sent: %d, SCRIPT LOAD: %d, sent as EVALSHA: %d\n", batch,
			st.BodiesSent-before.BodiesSent, st.Loads-before.Loads, st.Rewritten-before.Rewritten)
		before = st
	}
	// Output:
	// 100 <nil> 100
	// batch 1: bodies sent: 100, SCRIPT LOAD: 0, sent as EVALSHA: 0
	// 100 <nil> 200
	// batch 2: bodies sent: 1, SCRIPT LOAD: 1, sent as EVALSHA: 100
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

// Spans name what the caller asked for: an EVAL stays EVAL when it went out
// as EVALSHA, which scripthook.sent tells. db.stored_procedure.name is the
// registered name; another script is OtherName ("_OTHER") on its first call
// and its SHA1 from its second call on (up to WithMaxScriptNames scripts). A
// pipeline gets one span with a child per script command. A call the hook
// repaired says so, with an event giving the cause (the hook had loaded the
// script, so the server lost it) and how (SCRIPT LOAD, then EVALSHA). Here
// the spans go to an in-memory recorder; a program would pass its
// exporter's provider.
//
// The single call of a registered script loads it first (SCRIPT LOAD, then
// EVALSHA), which also tells the hook that the user may run both; so the
// pipeline after it sends one SCRIPT LOAD (the batch's one body) and EVALSHA
// for every use. The short unregistered script goes as written: its EVALSHA
// would be longer than its body.
func Example_tracing() {
	// A program passes its SDK's provider (sdktrace.NewTracerProvider(...)).
	// spanrec is this repository's in-memory recorder on the OpenTelemetry
	// API alone: it keeps the SDK out of the library's go.mod.
	tp := spanrec.New()

	rdb, stop := exampleClient()
	defer stop()
	h := scripthook.New(scripthook.WithTracerProvider(tp))
	h.Register("rate-limiter", rateLimiter)
	rdb.AddHook(h)
	other := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr})
	defer other.Close()

	ctx := context.Background()
	_ = rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Err() // a single call
	_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Eval(ctx, rateLimiter, []string{"k"}, 60)
		p.Eval(ctx, rateLimiter, []string{"k"}, 60)
		return nil
	})
	_ = other.ScriptFlush(ctx).Err()                        // behind the hook's back
	_ = rdb.Eval(ctx, rateLimiter, []string{"k"}, 60).Err() // repaired
	for i := 0; i < 2; i++ {
		_ = rdb.Eval(ctx, "return 1", nil).Err() // not registered
	}

	printExampleSpans(tp.Ended())
	// The first call goes as written: its reply shows that the server lets
	// this user run EVAL. The pipeline goes as written too, with probes at
	// its end that ask whether the user may run EVALSHA; from then on the
	// script goes by SHA1.
	// Output:
	// EVAL rate-limiter: db.operation.name=EVAL db.stored_procedure.name=rate-limiter scripthook.sent=EVAL scripthook.body_sent=true scripthook.repaired=false
	// PIPELINE EVAL: db.operation.name=PIPELINE EVAL scripthook.batch.scripts=2 scripthook.batch.bodies_sent=3
	//   EVAL rate-limiter: db.operation.name=EVAL db.stored_procedure.name=rate-limiter scripthook.sent=EVAL scripthook.body_sent=true scripthook.repaired=false
	//   EVAL rate-limiter: db.operation.name=EVAL db.stored_procedure.name=rate-limiter scripthook.sent=EVAL scripthook.body_sent=true scripthook.repaired=false
	// EVAL rate-limiter: db.operation.name=EVAL db.stored_procedure.name=rate-limiter scripthook.sent=EVALSHA scripthook.body_sent=true scripthook.repaired=true
	//   event scripthook.repair: scripthook.repair.cause=evicted scripthook.repair.how=load
	// EVAL: db.operation.name=EVAL db.stored_procedure.name=_OTHER scripthook.sent=EVAL scripthook.body_sent=true scripthook.repaired=false
	// EVAL e0e1f9fabfc9d4800c877a703b823ac0578ff8db: db.operation.name=EVAL db.stored_procedure.name=e0e1f9fabfc9d4800c877a703b823ac0578ff8db scripthook.sent=EVAL scripthook.body_sent=true scripthook.repaired=false
}

// exampleSpanAttrs are the attributes printExampleSpans shows, in this order.
var exampleSpanAttrs = []attribute.Key{
	"db.operation.name", "db.stored_procedure.name",
	"scripthook.sent", "scripthook.body_sent", "scripthook.repaired",
	"scripthook.batch.scripts", "scripthook.batch.bodies_sent",
}

// printExampleSpans prints each top-level span, in the order they ended,
// followed by its events and its children, with the attributes that say
// what scripthook did.
func printExampleSpans(spans []*spanrec.Span) {
	children := map[trace.SpanID][]*spanrec.Span{}
	for _, s := range spans {
		if s.Parent.IsValid() {
			children[s.Parent.SpanID()] = append(children[s.Parent.SpanID()], s)
		}
	}
	var show func(s *spanrec.Span, indent string)
	show = func(s *spanrec.Span, indent string) {
		fmt.Printf("%s%s: %s\n", indent, s.Name, emitExampleAttrs(s.Attributes, exampleSpanAttrs))
		for _, ev := range s.Events {
			fmt.Printf("%s  event %s: %s\n", indent, ev.Name, emitExampleAttrs(ev.Attributes, nil))
		}
		for _, c := range children[s.SpanContext.SpanID()] {
			show(c, indent+"  ")
		}
	}
	for _, s := range spans {
		if !s.Parent.IsValid() {
			show(s, "")
		}
	}
}

// emitExampleAttrs formats the attributes named in keys, in that order (all
// of them, in their own order, when keys is nil).
func emitExampleAttrs(kvs []attribute.KeyValue, keys []attribute.Key) string {
	var parts []string
	if keys == nil {
		for _, kv := range kvs {
			parts = append(parts, string(kv.Key)+"="+kv.Value.String())
		}
		return strings.Join(parts, " ")
	}
	for _, k := range keys {
		for _, kv := range kvs {
			if kv.Key == k {
				parts = append(parts, string(k)+"="+kv.Value.String())
			}
		}
	}
	return strings.Join(parts, " ")
}
