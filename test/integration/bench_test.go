package integration_test

// Benchmarks against a real redis-server on loopback: the hook against
// hand-written EvalSha with the script preloaded (the limit for go-redis)
// and plain Eval, interleaved in one run so that machine noise hits every
// contender alike. The hook's own cost over a do-nothing server is in the
// root package's bench_test.go; other libraries are compared in bench/.
//
//	go test -run XXX -bench RealRedisSingle -benchtime 20000x ./test/integration
//	go test -run XXX -bench RealRedisPipeline -benchtime 40x ./test/integration

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
)

// benchScript returns a script of about size bytes that increments a key
// and returns its argument.
func benchScript(size int) string {
	const tail = "\nredis.call('INCR', KEYS[1]) return ARGV[1]"
	return strings.Repeat("-- padding to make the body larger ----\n", size/40+1)[:max(0, size-len(tail))] + tail
}

// benchContender is one way of running the script.
type benchContender struct {
	name string
	call func(ctx context.Context) error
}

// benchInterleaved runs every contender in turn, rounds times, each time
// making calls calls from workers goroutines, and returns calls per second
// per contender over all rounds. Who goes first rotates per round.
func benchInterleaved(b *testing.B, cs []benchContender, rounds, calls, workers int) map[string]float64 {
	elapsed := make(map[string]time.Duration)
	total := make(map[string]int)
	for r := 0; r < rounds; r++ {
		for i := range cs {
			c := cs[(i+r)%len(cs)]
			var wg sync.WaitGroup
			per := max(calls/workers, 1)
			start := time.Now()
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					for j := 0; j < per; j++ {
						if err := c.call(ctx); err != nil {
							b.Error(c.name, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed[c.name] += time.Since(start)
			total[c.name] += per * workers
		}
	}
	rate := make(map[string]float64)
	for _, c := range cs {
		rate[c.name] = float64(total[c.name]) / elapsed[c.name].Seconds()
	}
	return rate
}

// BenchmarkRealRedisSingle compares single calls: the hook, preloaded
// EvalSha and plain Eval, from 1 and 16 goroutines. b.N is the number of
// calls per contender.
func BenchmarkRealRedisSingle(b *testing.B) {
	srv := redistest.Start(b)
	for _, size := range []int{200, 4 << 10, 32 << 10} {
		for _, workers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%dB/%dG", size, workers), func(b *testing.B) {
				body := benchScript(size)
				opts := &redis.Options{PoolSize: 32}
				plain := testkit.Client(b, srv, opts)
				hooked := testkit.Client(b, srv, opts)
				if err := scripthook.New(scripthook.WithTracing(false)).Install(hooked); err != nil {
					b.Fatal(err)
				}
				ctx := context.Background()
				sha, err := plain.ScriptLoad(ctx, body).Result()
				if err != nil {
					b.Fatal(err)
				}
				keys := []string{"bench"}
				cs := []benchContender{
					{"hook", func(ctx context.Context) error { return hooked.Eval(ctx, body, keys, "x").Err() }},
					{"evalsha", func(ctx context.Context) error { return plain.EvalSha(ctx, sha, keys, "x").Err() }},
					{"eval", func(ctx context.Context) error { return plain.Eval(ctx, body, keys, "x").Err() }},
				}
				benchInterleaved(b, cs, 1, 64, workers) // warm up every pool
				b.ResetTimer()
				rate := benchInterleaved(b, cs, 5, max(b.N/5, workers), workers)
				b.ReportMetric(rate["hook"], "hook-calls/s")
				b.ReportMetric(rate["evalsha"], "evalsha-calls/s")
				b.ReportMetric(rate["eval"], "eval-calls/s")
				b.ReportMetric(rate["hook"]/rate["evalsha"], "hook/evalsha")
				b.ReportMetric(rate["hook"]/rate["eval"], "hook/eval")
			})
		}
	}
}

// BenchmarkRealRedisPipeline compares 1000-call pipelines: the hook in both
// modes, preloaded EvalSha and plain Eval, with the request bytes each
// writes per call (testkit.Wire). b.N is the number of pipelines per
// contender.
func BenchmarkRealRedisPipeline(b *testing.B) {
	srv := redistest.Start(b)
	const calls = 1000
	for _, size := range []int{200, 4 << 10, 32 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			body := benchScript(size)
			ctx := context.Background()
			keys := []string{"bench"}
			type entry struct {
				name  string
				wire  *testkit.Wire
				rdb   *redis.Client
				queue func(p redis.Pipeliner)
				base  int64 // bytes written before the measured rounds
			}
			mk := func(name string, opts ...scripthook.Option) *entry {
				e := &entry{name: name, wire: &testkit.Wire{}}
				e.rdb = testkit.Client(b, srv, e.wire.Options(nil))
				if opts != nil {
					if err := scripthook.New(opts...).Install(e.rdb); err != nil {
						b.Fatal(err)
					}
				}
				e.queue = func(p redis.Pipeliner) {
					for i := 0; i < calls; i++ {
						p.Eval(ctx, body, keys, "x")
					}
				}
				return e
			}
			strict := mk("strict", scripthook.WithTracing(false))
			optimistic := mk("optimistic", scripthook.WithTracing(false), scripthook.WithPipelineMode(scripthook.PipelineOptimistic))
			evalsha := mk("evalsha")
			sha, err := evalsha.rdb.ScriptLoad(ctx, body).Result()
			if err != nil {
				b.Fatal(err)
			}
			evalsha.queue = func(p redis.Pipeliner) {
				for i := 0; i < calls; i++ {
					p.EvalSha(ctx, sha, keys, "x")
				}
			}
			eval := mk("eval")
			entries := []*entry{strict, optimistic, evalsha, eval}
			cs := make([]benchContender, len(entries))
			for i, e := range entries {
				cs[i] = benchContender{e.name, func(ctx context.Context) error {
					_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { e.queue(p); return nil })
					return err
				}}
			}
			benchInterleaved(b, cs, 1, 2, 1) // dial, learn, warm up
			for _, e := range entries {
				e.base = e.wire.Written()
			}
			b.ResetTimer()
			const rounds = 5
			per := max(b.N/rounds, 1)
			rate := benchInterleaved(b, cs, rounds, per, 1)
			total := float64(rounds * per * calls)
			for _, e := range entries {
				b.ReportMetric(rate[e.name]*calls, e.name+"-calls/s")
				b.ReportMetric(float64(e.wire.Written()-e.base)/total, e.name+"-B/call")
			}
			b.ReportMetric(rate["strict"]/rate["evalsha"], "strict/evalsha")
			b.ReportMetric(rate["strict"]/rate["eval"], "strict/eval")
			b.ReportMetric(rate["optimistic"]/rate["evalsha"], "optimistic/evalsha")
		})
	}
}
