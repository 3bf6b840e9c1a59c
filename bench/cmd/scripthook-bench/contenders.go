package main

import (
	"context"
	"crypto/tls"
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
	cControl                     // a second, identical preloaded EvalSha: the A/A control
	cRueidis                     // rueidis Lua.Exec / Lua.ExecMulti

	// Tracing rows.
	cEvalControl    // a second, identical plain Eval: the tracing rows' A/A control
	cEvalOtel       // go-redis Eval + redisotel.InstrumentTracing (defaults)
	cEvalOtelNoStmt // same, WithDBStatement(false)
	cHookOff        // scripthook, WithTracing(false)
	cHookTraced     // scripthook, WithTracerProvider(sdk)
	cEvalOtelNever  // redisotel on an SDK provider that samples nothing
	cHookNever      // scripthook on an SDK provider that samples nothing

	// FCALL rows (Redis 7 Functions).
	cFcall        // go-redis FCall, the library loaded by hand before the row: the reference
	cFcallControl // a second, identical plain FCall: the FCALL rows' A/A control
	cFcallHook    // the same FCall on a client with scripthook and the library registered
	cFcallRueidis // rueidis Do(B().Fcall()...)
)

// mainContenders are compared on every row but the tracing rows.
var mainContenders = []contender{cEval, cScripthook, cScriptRun, cEvalSha, cControl, cRueidis}

// fipsContenders: redis.NewScript hashes the body with crypto/sha1 when it
// is built, which panics under GODEBUG=fips140=only, so Script.Run cannot
// run there; rueidis learns the SHA1 from SCRIPT LOAD (WithLoadSHA1).
var fipsContenders = []contender{cEval, cScripthook, cEvalSha, cControl, cRueidis}

// traceContenders are compared on the tracing rows.
var traceContenders = []contender{cEval, cEvalControl, cEvalOtel, cEvalOtelNoStmt, cHookOff, cHookTraced, cEvalOtelNever, cHookNever}

// fcallContenders are compared on the FCALL rows.
var fcallContenders = []contender{cFcall, cFcallControl, cFcallHook, cFcallRueidis}

// controlOf is the contender whose identical twin is the A/A control.
func controlOf(c contender) contender {
	switch c {
	case cEvalControl:
		return cEval
	case cFcallControl:
		return cFcall
	}
	return cEvalSha
}

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
	case cControl:
		return "EvalSha preloaded, A/A control"
	case cRueidis:
		return "rueidis Lua.Exec"
	case cEvalControl:
		return "Eval, A/A control"
	case cEvalOtel:
		return "Eval + redisotel"
	case cEvalOtelNoStmt:
		return "Eval + redisotel (no db.statement)"
	case cHookOff:
		return "scripthook, tracing off"
	case cHookTraced:
		return "scripthook, traced"
	case cEvalOtelNever:
		return "Eval + redisotel, never sampled"
	case cHookNever:
		return "scripthook, never sampled"
	case cFcall:
		return "FCALL, library preloaded"
	case cFcallControl:
		return "FCALL preloaded, A/A control"
	case cFcallHook:
		return "FCALL + scripthook"
	case cFcallRueidis:
		return "rueidis FCALL"
	}
	return "?"
}

// isControl reports an A/A control contender.
func (c contender) isControl() bool { return c == cControl || c == cEvalControl || c == cFcallControl }

// isHook reports the contender that stands for scripthook in its row.
func (c contender) isHook() bool { return c == cScripthook || c == cFcallHook }

// isFcall reports a go-redis contender of the FCALL rows.
func (c contender) isFcall() bool { return c == cFcall || c == cFcallControl || c == cFcallHook }

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
		return "`rdb.EvalSha(ctx, sha, keys, arg)` with the SHA1 from a `SCRIPT LOAD` at setup (cold start: inside the measured time); on NOSCRIPT the error is counted, the script is loaded again and the call is not retried"
	case cControl:
		return "a second client doing exactly what *EvalSha preloaded* does, measured as a contender of its own: its ratio to *EvalSha preloaded* is what an identical twin shows on this machine in this run (the A/A control)"
	case cRueidis:
		return "`rueidis.NewLuaScript(body).Exec(ctx, client, keys, args)`; pipelines: `Lua.ExecMulti` (SCRIPT LOAD, then N EVALSHA in one DoMulti); default client options (auto-pipelining of concurrent calls on one connection); in FIPS 140-only mode with `rueidis.WithLoadSHA1(true)`"
	case cEvalControl:
		return "a second plain `rdb.Eval` client, the A/A control of the tracing rows"
	case cEvalOtel:
		return "`rdb.Eval` with `redisotel.InstrumentTracing(rdb, redisotel.WithTracerProvider(tp))` (defaults: db.statement and caller attributes on)"
	case cEvalOtelNoStmt:
		return "as above with `redisotel.WithDBStatement(false)`"
	case cHookOff:
		return "`scripthook.New(scripthook.WithTracing(false))`"
	case cHookTraced:
		return "`scripthook.New(scripthook.WithTracerProvider(tp))`"
	case cEvalOtelNever:
		return "`redisotel.InstrumentTracing` (defaults) on an SDK provider with `sdktrace.NeverSample()`"
	case cHookNever:
		return "`scripthook.New(scripthook.WithTracerProvider(tp))` on an SDK provider with `sdktrace.NeverSample()`"
	case cFcall:
		return "`rdb.FCall(ctx, \"" + fcallFunction + "\", keys, arg)`, the library loaded once before the row with `FUNCTION LOAD REPLACE` from another client"
	case cFcallControl:
		return "a second client doing exactly what *FCALL, library preloaded* does: the FCALL rows' A/A control"
	case cFcallHook:
		return "the same `rdb.FCall` calls on a client with `rdb.AddHook(h)`, where `h := scripthook.New()` and `h.RegisterLibrary(code)` (defaults): the hook sends its own `FUNCTION LOAD REPLACE` before its first FCALL on the server, in the untimed warm-up"
	case cFcallRueidis:
		return "`client.Do(ctx, client.B().Fcall().Function(name).Numkeys(1).Key(key).Arg(arg).Build())` on a rueidis client with default options, the library preloaded as for plain FCALL"
	}
	return ""
}

// The FCALL rows' function library: the benchmark script as a function.
const (
	fcallLibName  = "scripthook_bench"
	fcallFunction = "scripthook_bench_fn"
)

// fcallLibrary returns scriptResult(ARGV[1]) like every benchmark script.
const fcallLibrary = "#!lua name=" + fcallLibName + "\n" +
	"-- scripthook bench library: the benchmark script as a function\n" +
	"redis.register_function('" + fcallFunction + "', function(keys, args)\n" +
	"  return tonumber(args[1]) * 3 + 1\n" +
	"end)\n"

// workloadScript is one benchmark script: a deterministic function of
// ARGV[1], padded with a Lua comment to the wanted size.
type workloadScript struct {
	size int
	body string
}

// scriptResult is what every script returns for arg.
func scriptResult(arg int64) int64 { return arg*3 + 1 }

// makeScript returns the script of a size; tag (may be empty) makes bodies
// of the same size distinct. No SHA1 is computed here: under
// GODEBUG=fips140=only crypto/sha1 panics, and the preloaded EvalSha takes
// its SHA1 from SCRIPT LOAD's reply like everything else.
func makeScript(size int, tag string) workloadScript {
	if tag != "" {
		tag = " " + tag
	}
	head := fmt.Sprintf("-- scripthook bench script, %d bytes%s\nlocal n = tonumber(ARGV[1])\nreturn n * 3 + 1\n", size, tag)
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
	return workloadScript{size: size, body: b.String()}
}

// scriptFamily returns n distinct scripts of a size, tagged so that no
// other family shares a body with it.
func scriptFamily(size, n int, tag string) []*workloadScript {
	out := make([]*workloadScript, n)
	for i := range out {
		s := makeScript(size, tag+" #"+strconv.Itoa(i))
		out[i] = &s
	}
	return out
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
	// single runs script k once with argument table entry i.
	single(ctx context.Context, k, i int) (int64, error)
	// pipeline runs script 0 len(out) times in one batch with arguments
	// i0, i0+1, ...; out gets the results, errs the errors.
	pipeline(ctx context.Context, i0 int, out []int64, errs []error)
	// wire returns the bytes written to the server so far and the round
	// trips (turns from writing to reading on a connection).
	wire() (bytes, trips int64)
	// hookStats returns scripthook's counters, if the contender has a hook.
	hookStats() (scripthook.Stats, bool)
	close()
}

// wireCounter counts what a contender's connections wrote and how often
// they turned from writing to reading: one round trip.
type wireCounter struct{ bytes, trips atomic.Int64 }

// countingConn counts the bytes written to a connection and its round
// trips. It keeps the socket reachable through SyscallConn, so clients
// treat it as a plain TCP connection (go-redis health checks use it).
type countingConn struct {
	net.Conn
	w     *wireCounter
	wrote atomic.Bool // written since the last read
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.wrote.Store(true) // before the write: the reply may come at once
	n, err := c.Conn.Write(b)
	c.w.bytes.Add(int64(n))
	return n, err
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.wrote.Swap(false) {
		c.w.trips.Add(1)
	}
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

func countingDialer(w *wireCounter) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 5 * time.Minute}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countingConn{Conn: c, w: w}, nil
	}
}

// instOpts are the row's settings a contender's client depends on.
type instOpts struct {
	tp trace.TracerProvider // the SDK provider of the tracing rows
	// tpNever is an SDK provider that samples nothing.
	tpNever trace.TracerProvider
	auto    bool // go-redis contenders go through rdb.AutoPipeline()
	fips    bool // the process runs under GODEBUG=fips140=only
}

// newInstance builds contender c's client for scripts against addr.
func newInstance(c contender, addr string, scripts []*workloadScript, o instOpts) (instance, error) {
	if c == cRueidis || c == cFcallRueidis {
		r, err := newRueidis(addr, scripts, o.fips)
		if r != nil {
			r.fcall = c == cFcallRueidis
		}
		return r, err
	}
	g := &goredisInst{c: c, scripts: scripts, shas: make([]string, len(scripts))}
	if c == cScriptRun {
		for _, s := range scripts {
			g.runners = append(g.runners, redis.NewScript(s.body))
		}
	}
	g.rdb = redis.NewClient(&redis.Options{
		Addr:   addr,
		Dialer: countingDialer(&g.w),
	})
	switch c {
	case cScripthook:
		g.hook = scripthook.New()
	case cFcallHook:
		g.hook = scripthook.New()
		if _, err := g.hook.RegisterLibrary(fcallLibrary); err != nil {
			_ = g.rdb.Close()
			return nil, fmt.Errorf("RegisterLibrary: %w", err)
		}
	case cHookOff:
		g.hook = scripthook.New(scripthook.WithTracing(false))
	case cHookTraced:
		g.hook = scripthook.New(scripthook.WithTracerProvider(o.tp))
	case cHookNever:
		g.hook = scripthook.New(scripthook.WithTracerProvider(o.tpNever))
	case cEvalOtelNever:
		if err := redisotel.InstrumentTracing(g.rdb, redisotel.WithTracerProvider(o.tpNever)); err != nil {
			_ = g.rdb.Close()
			return nil, err
		}
	case cEvalOtel:
		if err := redisotel.InstrumentTracing(g.rdb, redisotel.WithTracerProvider(o.tp)); err != nil {
			_ = g.rdb.Close()
			return nil, err
		}
	case cEvalOtelNoStmt:
		if err := redisotel.InstrumentTracing(g.rdb, redisotel.WithTracerProvider(o.tp), redisotel.WithDBStatement(false)); err != nil {
			_ = g.rdb.Close()
			return nil, err
		}
	}
	if g.hook != nil {
		g.rdb.AddHook(g.hook)
	}
	g.cmd = g.rdb
	if o.auto {
		ap, err := g.rdb.AutoPipeline()
		if err != nil {
			_ = g.rdb.Close()
			return nil, fmt.Errorf("AutoPipeline: %w", err)
		}
		g.ap, g.cmd = ap, ap
	}
	return g, nil
}

// scripter is what the go-redis contenders call: the client, or its
// AutoPipeliner.
type scripter interface {
	redis.Scripter
	FCall(ctx context.Context, function string, keys []string, args ...interface{}) *redis.Cmd
	Ping(ctx context.Context) *redis.StatusCmd
}

// goredisInst serves every go-redis based contender.
type goredisInst struct {
	c       contender
	scripts []*workloadScript
	shas    []string // from SCRIPT LOAD (preloaded EvalSha)
	rdb     *redis.Client
	ap      *redis.AutoPipeliner
	cmd     scripter
	hook    *scripthook.Hook
	runners []*redis.Script
	w       wireCounter
	// per-pipeline scratch, reused (only one goroutine runs pipelines).
	cmds []*redis.Cmd
}

func (g *goredisInst) isEvalSha() bool { return g.c == cEvalSha || g.c == cControl }

func (g *goredisInst) prepare(ctx context.Context) error {
	if !g.isEvalSha() {
		return nil
	}
	if len(g.scripts) == 1 {
		sha, err := g.cmd.ScriptLoad(ctx, g.scripts[0].body).Result()
		g.shas[0] = sha
		return err
	}
	cmds, err := g.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range g.scripts {
			p.ScriptLoad(ctx, s.body)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for k, c := range cmds {
		g.shas[k] = c.(*redis.StringCmd).Val()
	}
	return nil
}

func (g *goredisInst) ping(ctx context.Context) error { return g.cmd.Ping(ctx).Err() }

func (g *goredisInst) single(ctx context.Context, k, i int) (int64, error) {
	switch {
	case g.c.isFcall():
		return g.cmd.FCall(ctx, fcallFunction, benchKeys, argIfaces[i]).Int64()
	case g.c == cScriptRun:
		return g.runners[k].Run(ctx, g.cmd, benchKeys, argIfaces[i]).Int64()
	case g.isEvalSha():
		v, err := g.cmd.EvalSha(ctx, g.shas[k], benchKeys, argIfaces[i]).Int64()
		if err != nil && isNoScript(err) {
			// What a hand-written caller must do: load it again. The failed
			// call is counted as a NOSCRIPT error, not retried.
			_ = g.cmd.ScriptLoad(ctx, g.scripts[k].body).Err()
		}
		return v, err
	default:
		return g.cmd.Eval(ctx, g.scripts[k].body, benchKeys, argIfaces[i]).Int64()
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
			switch {
			case g.c.isFcall():
				cmds[j] = pipe.FCall(ctx, fcallFunction, benchKeys, a)
			case g.c == cScriptRun:
				cmds[j] = g.runners[0].Run(ctx, pipe, benchKeys, a)
			case g.isEvalSha():
				cmds[j] = pipe.EvalSha(ctx, g.shas[0], benchKeys, a)
			default:
				cmds[j] = pipe.Eval(ctx, g.scripts[0].body, benchKeys, a)
			}
		}
		return nil
	})
	for j, cmd := range cmds {
		out[j], errs[j] = cmd.Int64()
		cmds[j] = nil
	}
}

func (g *goredisInst) wire() (int64, int64) { return g.w.bytes.Load(), g.w.trips.Load() }

func (g *goredisInst) hookStats() (scripthook.Stats, bool) {
	if g.hook == nil {
		return scripthook.Stats{}, false
	}
	return g.hook.Stats(), true
}

func (g *goredisInst) close() {
	if g.ap != nil {
		_ = g.ap.Close()
	}
	_ = g.rdb.Close()
}

// rueidisInst runs rueidis Lua scripts with default client options (so
// concurrent calls are auto-pipelined on one connection), or with fcall
// the FCALL rows' function.
type rueidisInst struct {
	c     rueidis.Client
	luas  []*rueidis.Lua
	fcall bool
	w     wireCounter
	execs []rueidis.LuaExec
	cmds  rueidis.Commands
}

// fcallCmd builds one FCALL of the FCALL rows' function (a rueidis command
// is recycled once it ran, so each call builds its own).
func (r *rueidisInst) fcallCmd(i int) rueidis.Completed {
	return r.c.B().Fcall().Function(fcallFunction).Numkeys(1).Key(benchKeys[0]).Arg(argStrs[i]).Build()
}

func newRueidis(addr string, scripts []*workloadScript, fips bool) (*rueidisInst, error) {
	r := &rueidisInst{}
	for _, s := range scripts {
		if fips {
			// NewLuaScript hashes with crypto/sha1 unless told to learn
			// the SHA1 from SCRIPT LOAD.
			r.luas = append(r.luas, rueidis.NewLuaScript(s.body, rueidis.WithLoadSHA1(true)))
		} else {
			r.luas = append(r.luas, rueidis.NewLuaScript(s.body))
		}
	}
	dial := countingDialer(&r.w)
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

func (r *rueidisInst) single(ctx context.Context, k, i int) (int64, error) {
	if r.fcall {
		return r.c.Do(ctx, r.fcallCmd(i)).AsInt64()
	}
	return r.luas[k].Exec(ctx, r.c, benchKeys, argSlices[i]).AsInt64()
}

func (r *rueidisInst) pipeline(ctx context.Context, i0 int, out []int64, errs []error) {
	n := len(out)
	if r.fcall {
		r.cmds = r.cmds[:0]
		for j := range n {
			r.cmds = append(r.cmds, r.fcallCmd((i0+j)&(argCount-1)))
		}
		res := r.c.DoMulti(ctx, r.cmds...)
		for j := range out {
			out[j], errs[j] = res[j].AsInt64()
		}
		return
	}
	if cap(r.execs) < n {
		r.execs = make([]rueidis.LuaExec, n)
	}
	execs := r.execs[:n]
	for j := range execs {
		execs[j] = rueidis.LuaExec{Keys: benchKeys, Args: argSlices[(i0+j)&(argCount-1)]}
	}
	res := r.luas[0].ExecMulti(ctx, r.c, execs...)
	for j := range out {
		if j < len(res) {
			out[j], errs[j] = res[j].AsInt64()
		} else {
			errs[j] = fmt.Errorf("rueidis: %d results for %d calls", len(res), n)
		}
	}
}

func (r *rueidisInst) wire() (int64, int64) { return r.w.bytes.Load(), r.w.trips.Load() }

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
