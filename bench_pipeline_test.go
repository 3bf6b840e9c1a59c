package scripthook_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
)

// countingConn counts the bytes a client writes to its socket.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// countingClient is a client whose written bytes are counted in n.
func countingClient(addr string, n *atomic.Int64) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{Conn: c, n: n}, nil
		},
	})
}

// BenchmarkRealRedisPipeline compares 1000-call pipelines, interleaved in
// one run against a real redis-server: the hook in both modes, hand-written
// EvalSha with the script preloaded (the limit), and plain Eval. A call is
// one script call; b.N is the number of pipelines per contender.
//
//	go test -run XXX -bench RealRedisPipeline -benchtime 40x
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
				bytes atomic.Int64
				rdb   *redis.Client
				queue func(p redis.Pipeliner)
			}
			mk := func(name string, opts ...scripthook.Option) *entry {
				e := &entry{name: name}
				e.rdb = countingClient(srv.Addr, &e.bytes)
				if opts != nil {
					e.rdb.AddHook(scripthook.New(opts...))
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
			sha := evalsha.rdb.ScriptLoad(ctx, body).Val()
			evalsha.queue = func(p redis.Pipeliner) {
				for i := 0; i < calls; i++ {
					p.EvalSha(ctx, sha, keys, "x")
				}
			}
			eval := mk("eval")
			entries := []*entry{strict, optimistic, evalsha, eval}
			cs := make([]contender, len(entries))
			for i, e := range entries {
				cs[i] = contender{e.name, func(ctx context.Context) error {
					_, err := e.rdb.Pipelined(ctx, func(p redis.Pipeliner) error { e.queue(p); return nil })
					return err
				}}
				defer e.rdb.Close()
			}
			runInterleaved(b, cs, 1, 2, 1) // warm up and dial
			for _, e := range entries {
				e.bytes.Store(0)
			}
			b.ResetTimer()
			rounds := 5
			per := max(b.N/rounds, 1)
			rate := runInterleaved(b, cs, rounds, per, 1)
			total := float64(rounds * per * calls)
			for _, e := range entries {
				b.ReportMetric(rate[e.name]*calls, e.name+"-calls/s")
				b.ReportMetric(float64(e.bytes.Load())/total, e.name+"-B/call")
			}
			b.ReportMetric(rate["strict"]/rate["evalsha"], "strict/evalsha")
			b.ReportMetric(rate["strict"]/rate["eval"], "strict/eval")
			b.ReportMetric(rate["optimistic"]/rate["evalsha"], "optimistic/evalsha")
		})
	}
}
