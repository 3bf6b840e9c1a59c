package main

import (
	"context"
	"crypto/sha1"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"github.com/redis/rueidis"
	"github.com/scripthook/scripthook"
	"go.opentelemetry.io/otel/trace"
)

// contender is one way of running the benchmark script.
type contender int

const (
	cEval       contender = iota // go-redis Eval: what users have today
	cScripthook                  // go-redis Eval with scripthook added
	cScriptRun                   // go-redis redis.Script.Run (EVALSHA, EVAL on NOSCRIPT)
	cEvalSha                     // hand-written EvalSha, script preloaded: the limit
	cRueidis                     // rueidis Lua.Exec / Lua.ExecMulti

	// Tracing rows.
	cEvalOtel       // go-redis Eval + redisotel.InstrumentTracing (defaults)
	cEvalOtelNoStmt // same, WithDBStatement(false)
	cHookOff        // scripthook, WithTracing(false)
	cHookTraced     // scripthook, WithTracerProvider(sdk)
)

// mainContenders are compared on every main, cold-start and flush row.
var mainContenders = []contender{cEval, cScripthook, cScriptRun, cEvalSha, cRueidis}

// traceContenders are compared on the tracing rows.
var traceContenders = []contender{cEval, cEvalOtel, cEvalOtelNoStmt, cHookOff, cHookTraced}

func (c contender) String() string {
	switch c {
	case cEval:
		return "Eval"
	case cScripthook:
		return "scripthook"
	case cScriptRun:
		return "Script.Run"
	case cEvalSha:
		return "EvalSha preloaded"
	case cRueidis:
		return "rueidis Lua.Exec"
	case cEvalOtel:
		return "Eval + redisotel"
	case cEvalOtelNoStmt:
		return "Eval + redisotel (no db.statement)"
	case cHookOff:
		return "scripthook, tracing off"
	case cHookTraced:
		return "scripthook, traced"
	}
	return "?"
}

// describe says exactly what the contender runs, for the method section.
func (c contender) describe() string {
	switch c {
	case cEval:
		return "`rdb.Eval(ctx, body, keys, arg)`; pipelines: `pipe.Eval` ×N in `rdb.Pipelined`"
	case cScripthook:
		return "the same `rdb.Eval` calls on a client with `rdb.AddHook(scripthook.New())` (defaults: strict pipelines, tracing on with the global no-op provider)"
	case cScriptRun:
		return "`redis.NewScript(body).Run(ctx, rdb, keys, arg)`; pipelines: `script.Run(ctx, pipe, ...)` (queues EVALSHA)"
	case cEvalSha:
		return "`rdb.EvalSha(ctx, sha, keys, arg)` after `SCRIPT LOAD` at setup (cold start: inside the measured time); on NOSCRIPT the error is counted, the script is loaded again and the call is not retried"
	case cRueidis:
		return "`rueidis.NewLuaScript(body).Exec(ctx, client, keys, args)`; pipelines: `Lua.ExecMulti` (SCRIPT LOAD, then N EVALSHA in one DoMulti); default client options (auto-pipelining of concurrent calls on one connection)"
	case cEvalOtel:
		return "`rdb.Eval` with `redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tp))` (defaults: db.statement and caller attributes on)"
	case cEvalOtelNoStmt:
		return "as above with `redisotel.WithDBStatement(false)`"
	case cHookOff:
		return "`scripthook.New(scripthook.WithTracing(false))`"
	case cHookTraced:
		return "`scripthook.New(scripthook.WithTracerProvider(tp))`"
	}
	return ""
}

// workloadScript is one benchmark script: a deterministic function of
// ARGV[1], padded with a Lua comment to the wanted size.
type workloadScript struct {
	size int
	body string
	sha  string
}

// scriptResult is what the script returns for arg.
func scriptResult(arg int64) int64 { return arg*3 + 1 }

func makeScript(size int) workloadScript {
	head := fmt.Sprintf("-- scripthook bench script, %d bytes\nlocal n = tonumber(ARGV[1])\nreturn n * 3 + 1\n", size)
	var b strings.Builder
	b.WriteString(head)
	const line = "-- padding: the server hashes every byte of an EVAL body; EVALSHA sends 40 hex digits instead.\n"
	for b.Len() < size {
		rest := size - b.Len()
		if rest >= len(line) {
			b.WriteString(line)
			continue
		}
		if rest >= 4 {
			b.WriteString("--")
			b.WriteString(strings.Repeat("x", rest-3))
			b.WriteString("\n")
		} else {
			b.WriteString(strings.Repeat("\n", rest))
		}
	}
	body := b.String()
	sum := sha1.Sum([]byte(body))
	return workloadScript{size: size, body: body, sha: hex.EncodeToString(sum[:])}
}

// Arguments are drawn from a fixed table so no contender formats numbers or
// boxes values in its loop: every contender gets the same inputs for free.
const argCount = 1024

var (
	benchKeys = []string{"scripthook:bench:key"}
	argInts   [argCount]int64
	argStrs   [argCount]string
	argIfaces [argCount]interface{}
	argSlices [argCount][]string
	argWant   [argCount]int64
)

func init() {
	for i := range argCount {
		v := int64(1000 + 7*i)
		argInts[i] = v
		argStrs[i] = strconv.FormatInt(v, 10)
		argIfaces[i] = argStrs[i]
		argSlices[i] = []string{argStrs[i]}
		argWant[i] = scriptResult(v)
	}
}

// instance is one contender's client(s) for one workload row.
type instance interface {
	// prepare is the contender's one-time setup for a fresh server cache
	// (SCRIPT LOAD for the preloaded EvalSha); a no-op for the others.
	prepare(ctx context.Context) error
	// ping makes sure a connection exists.
	ping(ctx context.Context) error
	// single runs the script once with argument table entry i.
	single(ctx context.Context, i int) (int64, error)
	// pipeline runs the script len(out) times in one batch with arguments
	// i0, i0+1, ...; out gets the results, errs the errors.
	pipeline(ctx context.Context, i0 int, out []int64, errs []error)
	// bytesWritten is the number of bytes written to the server so far.
	bytesWritten() int64
	// hookStats returns scripthook's counters, if the contender has a hook.
	hookStats() (scripthook.Stats, bool)
	close()
}

// countingConn counts the bytes written to a connection. It keeps the
// socket reachable through SyscallConn, so clients treat it as a plain TCP
// connection (go-redis health checks use it).
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, fmt.Errorf("not a syscall.Conn")
}

// NetConn returns the wrapped connection.
func (c *countingConn) NetConn() net.Conn { return c.Conn }

func countingDialer(n *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, n: n}, nil
	}
}

// newInstance builds contender c's client for script s against addr. tp is
// the SDK TracerProvider of the tracing rows.
func newInstance(c contender, addr string, s *workloadScript, tp trace.TracerProvider) (instance, error) {
	if c == cRueidis {
		return newRueidis(addr, s)
	}
	g := &goredisInst{c: c, s: s, script: redis.NewScript(s.body)}
	g.rdb = redis.NewClient(&redis.Options{
		Addr:   addr,
		Dialer: countingDialer(&g.bytes),
	})
	switch c {
	case cScripthook:
		g.hook = scripthook.New()
	case cHookOff:
		g.hook = scripthook.New(scripthook.WithTracing(false))
	case cHookTraced:
		g.hook = scripthook.New(scripthook.WithTracerProvider(tp))
	case cEvalOtel:
		if err := redisotel.InstrumentTracing(g.rdb, redisotel.WithTracerProvider(tp)); err != nil {
			_ = g.rdb.Close()
			return nil, err
		}
	case cEvalOtelNoStmt:
		if err := redisotel.InstrumentTracing(g.rdb, redisotel.WithTracerProvider(tp), redisotel.WithDBStatement(false)); err != nil {
			_ = g.rdb.Close()
			return nil, err
		}
	}
	if g.hook != nil {
		g.rdb.AddHook(g.hook)
	}
	return g, nil
}

// goredisInst serves every go-redis based contender.
type goredisInst struct {
	c      contender
	s      *workloadScript
	rdb    *redis.Client
	hook   *scripthook.Hook
	script *redis.Script
	bytes  atomic.Int64
	// per-pipeline scratch, reused (only one goroutine runs pipelines).
	cmds []*redis.Cmd
}

func (g *goredisInst) prepare(ctx context.Context) error {
	if g.c != cEvalSha {
		return nil
	}
	return g.rdb.ScriptLoad(ctx, g.s.body).Err()
}

func (g *goredisInst) ping(ctx context.Context) error { return g.rdb.Ping(ctx).Err() }

func (g *goredisInst) single(ctx context.Context, i int) (int64, error) {
	switch g.c {
	case cScriptRun:
		return g.script.Run(ctx, g.rdb, benchKeys, argIfaces[i]).Int64()
	case cEvalSha:
		v, err := g.rdb.EvalSha(ctx, g.s.sha, benchKeys, argIfaces[i]).Int64()
		if err != nil && isNoScript(err) {
			// What a hand-written caller must do: load it again. The failed
			// call is counted as a NOSCRIPT error, not retried.
			_ = g.rdb.ScriptLoad(ctx, g.s.body).Err()
		}
		return v, err
	default:
		return g.rdb.Eval(ctx, g.s.body, benchKeys, argIfaces[i]).Int64()
	}
}

func (g *goredisInst) pipeline(ctx context.Context, i0 int, out []int64, errs []error) {
	n := len(out)
	if cap(g.cmds) < n {
		g.cmds = make([]*redis.Cmd, n)
	}
	cmds := g.cmds[:n]
	_, _ = g.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for j := range n {
			a := argIfaces[(i0+j)&(argCount-1)]
			switch g.c {
			case cScriptRun:
				cmds[j] = g.script.Run(ctx, pipe, benchKeys, a)
			case cEvalSha:
				cmds[j] = pipe.EvalSha(ctx, g.s.sha, benchKeys, a)
			default:
				cmds[j] = pipe.Eval(ctx, g.s.body, benchKeys, a)
			}
		}
		return nil
	})
	for j, cmd := range cmds {
		out[j], errs[j] = cmd.Int64()
		cmds[j] = nil
	}
}

func (g *goredisInst) bytesWritten() int64 { return g.bytes.Load() }

func (g *goredisInst) hookStats() (scripthook.Stats, bool) {
	if g.hook == nil {
		return scripthook.Stats{}, false
	}
	return g.hook.Stats(), true
}

func (g *goredisInst) close() { _ = g.rdb.Close() }

// rueidisInst runs rueidis Lua scripts with default client options (so
// concurrent calls are auto-pipelined on one connection).
type rueidisInst struct {
	c     rueidis.Client
	lua   *rueidis.Lua
	bytes atomic.Int64
	execs []rueidis.LuaExec
}

func newRueidis(addr string, s *workloadScript) (*rueidisInst, error) {
	r := &rueidisInst{lua: rueidis.NewLuaScript(s.body)}
	dial := countingDialer(&r.bytes)
	c, err := rueidis.NewClient(rueidis.ClientOption{
		InitAddress: []string{addr},
		DialCtxFn: func(ctx context.Context, addr string, _ *net.Dialer, _ *tls.Config) (net.Conn, error) {
			return dial(ctx, "tcp", addr)
		},
	})
	if err != nil {
		return nil, err
	}
	r.c = c
	return r, nil
}

func (r *rueidisInst) prepare(context.Context) error { return nil }

func (r *rueidisInst) ping(ctx context.Context) error {
	return r.c.Do(ctx, r.c.B().Ping().Build()).Error()
}

func (r *rueidisInst) single(ctx context.Context, i int) (int64, error) {
	return r.lua.Exec(ctx, r.c, benchKeys, argSlices[i]).AsInt64()
}

func (r *rueidisInst) pipeline(ctx context.Context, i0 int, out []int64, errs []error) {
	n := len(out)
	if cap(r.execs) < n {
		r.execs = make([]rueidis.LuaExec, n)
	}
	execs := r.execs[:n]
	for j := range execs {
		execs[j] = rueidis.LuaExec{Keys: benchKeys, Args: argSlices[(i0+j)&(argCount-1)]}
	}
	res := r.lua.ExecMulti(ctx, r.c, execs...)
	for j := range out {
		if j < len(res) {
			out[j], errs[j] = res[j].AsInt64()
		} else {
			errs[j] = fmt.Errorf("rueidis: %d results for %d calls", len(res), n)
		}
	}
}

func (r *rueidisInst) bytesWritten() int64 { return r.bytes.Load() }

func (r *rueidisInst) hookStats() (scripthook.Stats, bool) { return scripthook.Stats{}, false }

func (r *rueidisInst) close() { r.c.Close() }

// isNoScript reports a NOSCRIPT error from either client.
func isNoScript(err error) bool {
	if err == nil {
		return false
	}
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		return true
	}
	if re, ok := rueidis.IsRedisErr(err); ok && re.IsNoScript() {
		return true
	}
	return false
}
