package scripthook_test

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
)

// benchScript returns a script of about size bytes that increments a key
// and returns its argument.
func benchScript(size int) string {
	const tail = "\nredis.call('INCR', KEYS[1]) return ARGV[1]"
	return strings.Repeat("-- padding to make the body larger ----\n", size/40)[:max(0, size-len(tail))] + tail
}

// contender is one way of running the script.
type contender struct {
	name string
	call func(ctx context.Context) error
}

// runInterleaved runs every contender in turn, rounds times, each time
// making calls calls from workers goroutines, and returns calls per second
// per contender over all rounds. Interleaving makes machine noise hit all
// contenders alike.
func runInterleaved(b *testing.B, cs []contender, rounds, calls, workers int) map[string]float64 {
	elapsed := make(map[string]time.Duration)
	total := make(map[string]int)
	for r := 0; r < rounds; r++ {
		for i := range cs {
			c := cs[(i+r)%len(cs)] // rotate who goes first
			var wg sync.WaitGroup
			per := calls / workers
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

// BenchmarkRealRedisSingle compares, against a real redis-server on
// loopback and in one interleaved run: the hook, hand-written EvalSha with
// the script preloaded (the limit), and plain Eval. b.N is the number of
// calls per contender; report the ratios with
//
//	go test -run XXX -bench RealRedisSingle -benchtime 20000x
func BenchmarkRealRedisSingle(b *testing.B) {
	srv := redistest.Start(b)
	for _, size := range []int{200, 4 << 10, 32 << 10} {
		for _, workers := range []int{1, 16} {
			b.Run(fmt.Sprintf("%dB/%dG", size, workers), func(b *testing.B) {
				body := benchScript(size)
				opts := &redis.Options{Addr: srv.Addr, PoolSize: 32}
				plain := redis.NewClient(opts)
				defer plain.Close()
				hooked := redis.NewClient(opts)
				defer hooked.Close()
				hooked.AddHook(scripthook.New(scripthook.WithTracing(false)))
				ctx := context.Background()
				sha, err := plain.ScriptLoad(ctx, body).Result()
				if err != nil {
					b.Fatal(err)
				}
				keys := []string{"bench"}
				cs := []contender{
					{"hook", func(ctx context.Context) error { return hooked.Eval(ctx, body, keys, "x").Err() }},
					{"evalsha", func(ctx context.Context) error { return plain.EvalSha(ctx, sha, keys, "x").Err() }},
					{"eval", func(ctx context.Context) error { return plain.Eval(ctx, body, keys, "x").Err() }},
				}
				// Warm up every pool.
				runInterleaved(b, cs, 1, 64, min(workers, 16))
				b.ResetTimer()
				rate := runInterleaved(b, cs, 5, max(b.N/5, workers), workers)
				b.ReportMetric(rate["hook"], "hook-calls/s")
				b.ReportMetric(rate["evalsha"], "evalsha-calls/s")
				b.ReportMetric(rate["eval"], "eval-calls/s")
				b.ReportMetric(rate["hook"]/rate["evalsha"], "hook/evalsha")
				b.ReportMetric(rate["hook"]/rate["eval"], "hook/eval")
			})
		}
	}
}
