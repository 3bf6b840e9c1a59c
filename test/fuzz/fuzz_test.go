package fuzz_test

// Differential fuzzing: a program of script and plain commands, decoded from
// the fuzz input, runs through a client with the hook on one redis-server and
// through a plain client on another. Every reply, every error and the final
// data must be the same.
//
// The seed corpus (testdata/fuzz/FuzzDifferential) runs with every `go test`.
// To fuzz (the command CI may run for a short time):
//
//	go test -run '^$' -fuzz '^FuzzDifferential$' -fuzztime 30s .
//
// A failing input is written to testdata/fuzz/FuzzDifferential by go test;
// the failure message prints the program in readable form.
//
// What "the same" means. The hook's only deliberate difference from plain
// Redis is that it repairs NOSCRIPT for a caller's EVALSHA whose body it knows
// (learned from an earlier well-formed EVAL/EVAL_RO, or given to Register).
// For such an EVALSHA the reference client sends the EVAL (EVAL_RO) of that
// body instead: that is what the hook promises. One refinement: inside a
// pipeline or transaction a known body that does not compile gets NOSCRIPT,
// exactly as plain EVALSHA would (the hook's SCRIPT LOAD ahead of it fails),
// so there the reference keeps the plain EVALSHA. Everything else (EVAL in
// every form, unknown SHA1s, malformed commands, plain commands) must match
// plain Redis byte for byte.
//
// The first input byte picks RESP2 or RESP3 and one of four hooks: the
// default; WithMaxBatchSize(3) (pipelines go as sub-batches); tracing and
// metrics recording into an in-memory SDK with query text on (and nothing
// exported may contain an argument); WithCacheSize(2) (constant eviction).
// Its high bits pick the ACL user both clients log in as (default, or one
// without SCRIPT, EVALSHA, EVAL, or all keys but k1 and h), an OnConnect
// that runs a script through the client's hooks, and a pool of one
// connection.
//
// Programs draw from EVAL, EVAL_RO, EVALSHA(_RO) of known, unknown,
// upper-case and non-SHA1 arguments, numkeys of every malformed kind,
// string, []byte, integer and nil bodies, compile and runtime errors (short
// and longer than a SHA1), error replies that read like NOSCRIPT (after an
// INCR, so a second run shows) and one that echoes an argument that may be
// the server's NOSCRIPT text, empty, binary and 1 MB bodies, bodies made
// of input bytes, typed commands (StringCmd, IntCmd), plain
// SET/GET/INCR/HSET/DEL/ECHO, SCRIPT LOAD and SCRIPT FLUSH [SYNC] sent by
// the caller with string or []byte names and subcommands, MULTI, EXEC,
// DISCARD, WATCH and UNWATCH written by the caller (in pipelines and on
// sticky connections; a MULTI left open is closed at the end of its group),
// and SCRIPT FLUSH from another client between operations; singly, on a
// sticky connection (rdb.Conn()), in pipelines and in transactions
// (TxPipelined).
//
// Where the oracle is not "the same command": inside a MULTI the caller
// opened outside the batch at hand, and for a script whose error reply
// could read like NOSCRIPT (README, "A script never runs twice"), an
// EVALSHA is not repaired, so the reference sends it as written; for the
// user who may not run EVAL the reference loads the body (as another
// client) just before its plain EVALSHA.
//
// Optimistic pipeline mode is not fuzzed: it documents that NOSCRIPT may
// reach the caller, so it has no exact oracle.
//
// Functions (functions_test.go). The hook has three libraries registered
// with RegisterLibrary: fzlib (a write, a no-writes read, a runtime error,
// a write followed by an error reply), fzforge (replies that read like, or
// contain, "Function not found") and fzecho (a write, then the error its
// argument spells); a fourth, fzplain, only the caller loads. Programs
// call their functions (FCALL, FCALL_RO, names in any case), an unknown
// function, and send their own FUNCTION LOAD [REPLACE] (of a registered
// library, of the caller's own version of fzlib, of fzplain), FUNCTION
// DELETE and FUNCTION FLUSH [SYNC]; another client's FUNCTION FLUSH of both
// servers may come between groups. The hook's promise for a registered
// library is "as if the server held the registered code": so the
// reference loads it (FUNCTION LOAD REPLACE, as another client) where the
// hook promises the call finds it, and nowhere else. Where that is depends
// on what the hook believes the server holds, which the fuzzer models
// (fzRun.fnBelief): after the hook loads a library, or the caller's own
// successful FUNCTION LOAD of a registered library's name (then the
// caller's version stands: the hook does not replace it), it believes the
// server holds it; the caller's DELETE, FLUSH, any FUNCTION command inside
// a transaction, or a repairable miss in a batch make it believe not;
// another client's flush is not seen. The exact oracle:
//
//   - Unregistered functions, calls inside a MULTI the
//     caller opened earlier, and the caller's FUNCTION commands: as
//     written, on both sides.
//   - A single call of a registered function: the reference loads first
//     when the hook does not believe the server holds the library (the
//     hook loads before the call), or when the server lacks it and the
//     forge rule does not apply (the hook repairs the miss once). When the
//     hook believes it held, the server lacks it and the forge rule
//     applies (code holding "not found", or code holding "err" called
//     with an argument holding "not found"), the caller gets the server's
//     "Function not found": the reference loads nothing.
//   - A pipeline without FUNCTION commands of the caller: a library the
//     hook does not believe held is loaded just before its first call (or
//     before the MULTI the caller wrote around it). For one it
//     believes held that the server lacks, the hook's retry (when allowed)
//     is the reference's load just before that library's first call
//     outside a MULTI the caller wrote in the batch; the oracle takes the
//     alternative from the hooked side (every such call answered "Function
//     not found": no retry, else the retry) and accepts "no retry" only
//     when the retry was not allowed (a command that succeeded, or a
//     script or function call, follows the first miss). With a FUNCTION
//     command of the caller in the batch, or a MULTI the caller opened
//     before it (as the hook counts them: fzRun.hookOpen), nothing is
//     added.
//   - A transaction: nothing is added inside it (calls of a library the
//     server lacks get the server's error); afterwards the reference loads
//     (as the hook's MULTI/FUNCTION LOAD/EXEC after the EXEC does) every
//     registered library the transaction called that the hook did not
//     believe held or that met a repairable miss, unless the transaction
//     held a FUNCTION command of the caller.
//
// In sub-batches (variantSplit) the oracle follows the hook sub-batch by
// sub-batch (a miss in one, the load in the next), and what the server
// holds between them; there a caller's FUNCTION command inside a MULTI it
// wrote (which takes effect only at EXEC) is ECHO instead. No exact
// oracle, and what the fuzzer does instead: fze_echo calls with and
// without a "not found" argument in one batch (one retried, the other
// not, which no single load in the reference reproduces), so a batch's
// fze_echo calls all take the first one's kind of argument. A user who may
// not run FUNCTION LOAD is not fuzzed (TestFunctionLoadNoPermReal). The
// final state compared includes the libraries and their code (FUNCTION
// LIST WITHCODE).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// fzBodies are the script bodies a program chooses from. Whether each
// compiles is asked of a third server, never assumed.
var fzBodies = []string{
	"redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[1])", // 0: counter (registered)
	"return {KEYS[1], ARGV[1], #KEYS, #ARGV}",                       // 1: echo
	"return +",              // 2: compile error
	"return nosuchglobal.x", // 3: runtime error
	"return redis.error_reply('MYERR custom')", // 4: error reply
	"", // 5: empty
	"-- \x00\xff\xfe\r\n\nreturn 'bin\x01\x00\x02'",          // 6: binary
	"return redis.call('GET', KEYS[1])",                      // 7: read
	"return redis.call('SET', KEYS[1], ARGV[1] or 'x')",      // 8: write (fails under EVAL_RO)
	"redis.setresp(3) return redis.call('HGETALL', KEYS[1])", // 9: RESP3 map
	"return {1, 'two', {3, redis.status_reply('FINE')}, 3.99, true, false, 'cut'}",
	"this is not lua", // 11: compile error
	"return redis.call('HSET', KEYS[1], 'f', ARGV[1] or 'v')", // 12: wrongtype on a string
	"return redis.pcall('INCR', KEYS[1])",                     // 13: error as a table
	"return redis.call('GET', KEYS[2])",                       // 14: nil argument error
	"return redis.call('SCRIPT', 'FLUSH')",                    // 15: not allowed from scripts
	// 16, 17: error replies that read like NOSCRIPT, after a write: a
	// repair or retry of either would show as a double increment.
	"redis.call('INCR', KEYS[1]) return redis.error_reply('NOSCRIPT pretend')",
	"redis.call('INCR', KEYS[1]) return redis.error_reply('NOSCRIPT No matching script. Please use EVAL.')",
	"-- echoes its argument\nreturn redis.error_reply(ARGV[1] or 'no argument given')", // 18
	fzConnectBody, // 19: also run by the OnConnect variant
	"-- longer than a SHA1, and it does not compile\nreturn +",          // 20
	"-- a runtime error, longer than a SHA1\nreturn nosuchglobal.field", // 21
}

// fzConnectBody is the script the OnConnect variant runs on every new
// connection, through the client's hooks.
const fzConnectBody = "-- run by OnConnect too\nreturn {KEYS[1], ARGV[1], #KEYS, #ARGV, 'connected'}"

// fzNoScriptText is the server's reply to an EVALSHA it lacks, as an
// argument a script may echo.
const fzNoScriptText = "NOSCRIPT No matching script. Please use EVAL."

// fzUsers are the ACL users a program may run as (besides the default
// user), created alike on both servers. Each lacks something the hook's own
// commands may need, or a key.
var fzUsers = []struct{ name, rules string }{
	{"fz-noscript", "+@all -script"},
	{"fz-noevalsha", "+@all -evalsha -evalsha_ro"},
	{"fz-keys", "+@all"}, // keys: only k1 and h (see newFzEnv)
	{"fz-noeval", "+@all -eval -eval_ro"},
}

// fzRegistered are the bodies given to Register: always known. A
// registered body that does not compile is left out: Register promises its
// calls behave as if the server had it, so its EVALSHA may get the compile
// error where plain EVALSHA gets NOSCRIPT (README; TestRegisteredCompileError).
var fzRegistered = []int{0}

// fzBigBody is a 1 MB body, built once.
var fzBigBody = strings.Repeat("-- padding to one megabyte of script ----------------------------------\n", 1<<20/72) + "return #ARGV"

var fzKeys = []string{"k1", "k2", "h"}

// fzEnv is what one fuzz target starts once: a server for the plain client,
// one for the hook's, and one to ask whether a body compiles.
type fzEnv struct {
	ref, hooked, lint *redistest.Server
	refAdmin, hkAdmin *redis.Client
	lintc             *redis.Client

	mu       sync.Mutex
	compiles map[string]bool
}

// fzConfig is what the first input byte chooses besides the hook's variant:
// the protocol, the ACL user (0: default, else fzUsers[user-1]), whether
// OnConnect runs a script, and a pool of one connection.
type fzConfig struct {
	proto, user int
	onConnect   bool
	tinyPool    bool
}

func newFzEnv(tb testing.TB) *fzEnv {
	e := &fzEnv{
		ref:      redistest.Start(tb),
		hooked:   redistest.Start(tb),
		lint:     redistest.Start(tb),
		compiles: map[string]bool{},
	}
	mk := func(addr string) *redis.Client {
		c := redis.NewClient(fzOptions(addr, fzConfig{proto: 2}))
		tb.Cleanup(func() { _ = c.Close() })
		return c
	}
	e.refAdmin, e.hkAdmin, e.lintc = mk(e.ref.Addr), mk(e.hooked.Addr), mk(e.lint.Addr)
	ctx := context.Background()
	for _, c := range []*redis.Client{e.refAdmin, e.hkAdmin} {
		for _, u := range fzUsers {
			args := []interface{}{"acl", "setuser", u.name, "reset", "on", ">pw", "&*"}
			if u.name == "fz-keys" {
				args = append(args, "~k1", "~h")
			} else {
				args = append(args, "~*")
			}
			for _, rule := range strings.Fields(u.rules) {
				args = append(args, rule)
			}
			if err := c.Do(ctx, args...).Err(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	return e
}

// fzOptions are the options of every client of the fuzz target. A command
// that reads a reply into the wrong type can desynchronize a go-redis
// connection (with or without the hook); a short read timeout and no
// retries keep such an input from costing tens of seconds.
func fzOptions(addr string, cfg fzConfig) *redis.Options {
	o := &redis.Options{Addr: addr, Protocol: cfg.proto, MaxRetries: -1, ReadTimeout: 500 * time.Millisecond}
	if cfg.user > 0 {
		o.Username, o.Password = fzUsers[cfg.user-1].name, "pw"
	}
	if cfg.onConnect {
		// Through the client's hooks: the hook's own first use of a script
		// may be on a connection that is still being set up.
		o.OnConnect = func(ctx context.Context, cn *redis.Conn) error {
			_ = cn.Eval(ctx, fzConnectBody, []string{"k1"}, "c").Err()
			return nil
		}
	}
	if cfg.tinyPool {
		o.PoolSize = 1
		o.PoolTimeout = 2 * time.Second
	}
	return o
}

// compiled reports whether Redis compiles body, asking the lint server once.
func (e *fzEnv) compiled(ctx context.Context, body string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	ok, seen := e.compiles[body]
	if !seen {
		err := e.lintc.ScriptLoad(ctx, body).Err()
		ok = err == nil
		e.compiles[body] = ok
		_ = e.lintc.ScriptFlush(ctx).Err()
	}
	return ok
}

// reset gives both servers the same empty state.
func (e *fzEnv) reset(t *testing.T, ctx context.Context) {
	for _, c := range []*redis.Client{e.refAdmin, e.hkAdmin} {
		if err := c.FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := c.FunctionFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

func FuzzDifferential(f *testing.F) {
	e := newFzEnv(f)
	// A few seeds in code as well, so the target is useful even without the
	// committed corpus.
	for _, seed := range fzSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		runDifferential(t, e, data)
	})
}

// fzReader hands out the input's bytes, then zeros.
type fzReader struct{ b []byte }

func (r *fzReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fzReader) done() bool { return len(r.b) == 0 }

const (
	fzMaxGroups = 16
	fzMaxBatch  = 8
)

// Hook variants chosen by the first byte.
const (
	variantDefault   = iota // tracing off, strict pipelines
	variantSplit            // WithMaxBatchSize(3): pipelines go as sub-batches
	variantTraced           // tracing and metrics into an in-memory SDK, query text on
	variantTinyCache        // WithCacheSize(2): scripts are evicted all the time
)

// fzOp is one command of a program: what the hook's client sends and what
// the reference client sends.
type fzOp struct {
	hook, ref []interface{}
	// typed: 0 *redis.Cmd (Do), 1 *redis.StringCmd, 2 *redis.IntCmd. (Not
	// SliceCmd: in RESP2 go-redis reads an integer reply ":1" into it as an
	// array of one and desynchronizes the connection, with or without the
	// hook, which only costs read timeouts.)
	typed int
	desc  string
	// preload: a body the reference server is given by SCRIPT LOAD (from
	// another client) just before the reference command.
	preload string
	// fcall: an FCALL/FCALL_RO; fnChange: the caller's FUNCTION command;
	// region: in a batch, inside a MULTI the caller wrote in it.
	fcall    *fzFCall
	fnChange *fzFnChange
	regionAt int
}

// fzUserOf is the ACL user of a configuration.
func fzUserOf(cfg fzConfig) string {
	if cfg.user == 0 {
		return "default"
	}
	return fzUsers[cfg.user-1].name
}

// preload gives the reference server the bodies ops need loaded.
func (run *fzRun) preload(ops ...fzOp) {
	for _, op := range ops {
		if op.preload != "" {
			_ = run.e.refAdmin.ScriptLoad(run.ctx, op.preload).Err()
		}
	}
}

// fzRun is one program being run.
type fzRun struct {
	e       *fzEnv
	ctx     context.Context
	variant int
	cfg     fzConfig
	// learned: bodies the hook knows (by content). In the tiny-cache
	// variant only registered bodies are certain to be known.
	learned map[string]bool
	fuzzed  string // the last fuzz-derived body
	log     []string
	// multi is where a MULTI the caller wrote is open: multiNone, or opened
	// by a single command on a sticky connection (multiSingle), or inside
	// the batch being decoded (multiBatch). flushedInMulti: the caller's
	// SCRIPT FLUSH came after that MULTI in the same batch.
	multi          int
	flushedInMulti bool
	// flushedInBatch: the batch being decoded has the caller's SCRIPT
	// FLUSH in it.
	flushedInBatch bool
	// fnBelief: whether the hook believes the hooked server holds each
	// registered library (by name); fnLacking: registered libraries the
	// hooked server lacks at the start of the batch being decoded;
	// echoKind: the argument kind of fze_echo calls in that batch (0: none
	// yet, 1: plain, 2: "not found").
	fnBelief  map[string]bool
	fnLacking map[string]bool
	echoKind  int
	// fnPrimary: the hooked server has accepted one of the hook's loads
	// (the hook's knownPrimary): from then on a transaction carries the
	// load of a library the hook does not believe held inside its MULTI.
	fnPrimary bool
	// h is the hook under test (its Stats tell whether it repaired).
	h *scripthook.Hook
	// hookOpen follows the hook's count of MULTIs the caller opened (by
	// its rules, which can differ from the server's: a MULTI refused as
	// nested inside a batch still opens a region there).
	hookOpen int
}

const (
	multiNone = iota
	multiSingle
	multiBatch
)

// Where a command of a program goes (the oracle differs).
const (
	wherePooled = iota // a single command through the client
	whereSticky        // a single command on a sticky connection (rdb.Conn())
	wherePipe          // in a pipeline
	whereTx            // in a transaction (TxPipelined)
)

// fzTarget is what a program's commands go through: the client, or a
// sticky connection of it.
type fzTarget interface {
	Process(ctx context.Context, cmd redis.Cmder) error
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
	TxPipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

func runDifferential(t *testing.T, e *fzEnv, data []byte) {
	ctx := t.Context()
	r := &fzReader{b: data}
	cfgByte := r.next()
	cfg := fzConfig{proto: 2 + int(cfgByte&1), onConnect: cfgByte&0x40 != 0, tinyPool: cfgByte&0x80 != 0}
	if u := int(cfgByte>>3) & 7; u >= 4 {
		cfg.user = u - 3
	}
	run := &fzRun{e: e, ctx: ctx, variant: int(cfgByte>>1) & 3, cfg: cfg, learned: map[string]bool{}}
	run.log = append(run.log, fmt.Sprintf("RESP%d variant %d user %s onConnect %v pool-of-one %v",
		cfg.proto, run.variant, fzUserOf(cfg), cfg.onConnect, cfg.tinyPool))

	e.reset(t, ctx)
	opts := []scripthook.Option{scripthook.WithTracing(false)}
	var spans *tracetest.SpanRecorder
	var reader *sdkmetric.ManualReader
	switch run.variant {
	case variantSplit:
		opts = append(opts, scripthook.WithMaxBatchSize(3))
	case variantTraced:
		spans = tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
		reader = sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		defer func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) }()
		opts = []scripthook.Option{scripthook.WithTracerProvider(tp), scripthook.WithMeterProvider(mp),
			scripthook.WithQueryText(true), scripthook.WithMaxChildSpans(3)}
	case variantTinyCache:
		opts = append(opts, scripthook.WithCacheSize(2))
	}
	h := scripthook.New(opts...)
	run.h = h
	for _, i := range fzRegistered {
		h.Register(fmt.Sprint("reg", i), fzBodies[i])
		run.learned[fzBodies[i]] = true
	}
	registerFzLibs(t, h)
	run.fnBelief = map[string]bool{}
	for _, l := range fzRegisteredLibs {
		run.fnBelief[l.name] = false
	}
	hc := redis.NewClient(fzOptions(e.hooked.Addr, cfg))
	defer hc.Close()
	hc.AddHook(h)
	// The reference client is new too: its OnConnect must run on the
	// program's own first dial, as the hooked client's does.
	pc := redis.NewClient(fzOptions(e.ref.Addr, cfg))
	defer pc.Close()
	if cfg.onConnect {
		// Dial now, so that the hook has seen the OnConnect script before
		// the program's first command (else whether it knows it would
		// depend on that command).
		if got, want := testkit.ErrText(hc.Ping(ctx).Err()), testkit.ErrText(pc.Ping(ctx).Err()); got != want {
			t.Fatalf("PING after OnConnect differs: hook %s, ref %s", got, want)
		}
		run.learn(fzConnectBody)
	}

	for g := 0; g < fzMaxGroups && !r.done(); g++ {
		sel := r.next()
		switch {
		case sel%8 <= 3:
			run.single(t, hc, pc, r, wherePooled)
		case sel%8 <= 6:
			run.batch(t, hc, pc, r, sel%8 == 6)
		case sel&0x80 != 0:
			run.sticky(t, hc, pc, r)
		case sel&0x40 != 0:
			// Another client flushes the function libraries of both
			// servers: the hook still believes its libraries are loaded.
			run.otherFunctionFlush(t)
		default:
			// Another client flushes the script cache of both servers: the
			// hook still believes its scripts are loaded.
			run.otherFlush(t)
		}
	}

	// The data and the script cache must have ended up the same.
	got, want := fzState(ctx, e.hkAdmin), fzState(ctx, e.refAdmin)
	if got != want {
		run.fail(t, "final state differs", got, want)
	}
	if spans != nil {
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(ctx, &rm); err != nil {
			t.Fatal(err)
		}
		exported := fmt.Sprintf("%+v", rm)
		for _, s := range spans.Ended() {
			exported += s.Name() + fmt.Sprint(s.Attributes(), s.Events(), s.Status())
		}
		if strings.Contains(exported, fzSecret) {
			t.Fatalf("an argument reached the telemetry\nprogram:\n  %s", strings.Join(run.log, "\n  "))
		}
	}
}

func (run *fzRun) fail(t *testing.T, what string, got, want interface{}) {
	t.Helper()
	t.Fatalf("%s\nprogram:\n  %s\nhook: %q\nref:  %q", what, strings.Join(run.log, "\n  "), got, want)
}

// otherFlush is SCRIPT FLUSH on both servers from another client.
func (run *fzRun) otherFlush(t *testing.T) {
	run.log = append(run.log, "SCRIPT FLUSH (both servers, from another client)")
	for _, c := range []*redis.Client{run.e.refAdmin, run.e.hkAdmin} {
		if err := c.ScriptFlush(run.ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// otherFunctionFlush is FUNCTION FLUSH on both servers from another client.
func (run *fzRun) otherFunctionFlush(t *testing.T) {
	run.log = append(run.log, "FUNCTION FLUSH (both servers, from another client)")
	for _, c := range []*redis.Client{run.e.refAdmin, run.e.hkAdmin} {
		if err := c.FunctionFlush(run.ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// single runs one command through both targets.
func (run *fzRun) single(t *testing.T, hook, ref fzTarget, r *fzReader, where int) {
	op := run.decodeOp(r, where)
	run.log = append(run.log, "single "+op.desc)
	fnLoad, ifRepaired := run.singleFn(t, op.fcall)
	loads := run.h.Stats().FunctionLoads
	got, cmd := fzRunSingleCmd(run.ctx, hook, op, false)
	if ifRepaired != nil {
		switch {
		case run.h.Stats().FunctionLoads > loads:
			fnLoad = ifRepaired
		case testkit.ErrText(cmd.Err()) == "ERR Function not found":
			run.fail(t, "a repairable Function not found reached the caller", got, "a repair")
		}
	}
	if op.fnChange != nil && cmd.Err() == nil {
		run.applyFnChange(op.fnChange)
	}
	run.noteHookMulti(op, cmd.Err())
	run.preload(op)
	if fnLoad != nil {
		run.log[len(run.log)-1] += " ≡ " + fnLoad.name + " loaded first"
		run.refLoad(t, fnLoad)
	}
	if want := fzRunSingle(run.ctx, ref, op, true); got != want {
		run.fail(t, "single command differs", got, want)
	}
}

// batch runs a pipeline or a transaction through both targets. A MULTI
// the pipeline opens is closed at its end (a connection must not go back
// to the pool inside a MULTI), by EXEC or DISCARD as the input says.
func (run *fzRun) batch(t *testing.T, hook, ref fzTarget, r *fzReader, tx bool) {
	n := 1 + int(r.next())%fzMaxBatch
	where := wherePipe
	if tx {
		where = whereTx
	}
	ops := make([]fzOp, 0, n+1)
	desc := make([]string, 0, n+1)
	run.flushedInBatch = false
	run.fnLacking, run.echoKind = run.fnLacks(), 0
	for i := 0; i < n; i++ {
		op := run.decodeOp(r, where)
		ops, desc = append(ops, op), append(desc, op.desc)
	}
	if run.multi == multiBatch {
		op := run.closeMulti(r.next()&1 == 0)
		ops, desc = append(ops, op), append(desc, op.desc)
	}
	if run.multi == multiNone {
		run.flushedInMulti = false
	}
	// A typed command whose reply go-redis cannot parse (a table read into
	// an IntCmd) ends the batch's reading there and closes the connection,
	// so whether the server ran the commands after it depends on how much
	// of the batch it had read by then (a 1 MB body), with or without the
	// hook: only the batch's last command may be typed.
	for i := range ops[:max(len(ops)-1, 0)] {
		if ops[i].typed != 0 {
			ops[i].typed = 0
			ops[i].desc = strings.TrimPrefix(strings.TrimPrefix(ops[i].desc, "(IntCmd) "), "(StringCmd) ")
			desc[i] = ops[i].desc
		}
	}
	if !tx {
		fzRegions(ops)
	}
	kind := "pipeline"
	if tx {
		kind = "tx"
	}
	run.log = append(run.log, kind+" ["+strings.Join(desc, "; ")+"]")
	cmds, err := runFzBatchCmds(run.ctx, hook, ops, tx, false)
	got := testkit.RenderAll(cmds, err)
	insert, after := run.batchFn(t, ops, cmds, tx)
	run.preload(ops...)
	// The reference's batch, with the loads the hook's retry stands for.
	refOps := make([]fzOp, 0, len(ops)+len(insert))
	var inserted []int
	for i, op := range ops {
		for _, l := range insert[i] {
			run.log[len(run.log)-1] += fmt.Sprintf(" ≡ %s loaded before op %d", l.name, i)
			inserted = append(inserted, len(refOps))
			args := []interface{}{"function", "load", "replace", l.code}
			refOps = append(refOps, fzOp{hook: args, ref: args})
		}
		refOps = append(refOps, op)
	}
	cmds, err = runFzBatchCmds(run.ctx, ref, refOps, tx, true)
	for j := len(inserted) - 1; j >= 0; j-- {
		cmds = slices.Delete(cmds, inserted[j], inserted[j]+1)
	}
	if want := testkit.RenderAll(cmds, err); !slices.Equal(got, want) {
		run.fail(t, kind+" differs", got, want)
	}
	for _, l := range after {
		run.log[len(run.log)-1] += " ≡ then " + l.name + " loaded"
		run.refLoad(t, l)
	}
}

// closeMulti is the EXEC or DISCARD that ends a MULTI the caller wrote.
func (run *fzRun) closeMulti(exec bool) fzOp {
	name := "discard"
	if exec {
		name = "exec"
	}
	run.multi = multiNone
	args := []interface{}{name}
	return fzOp{hook: args, ref: args, desc: name + " (closing)"}
}

// sticky runs a few groups on a sticky connection of each client (with a
// pool of one, the only connection), then releases both.
func (run *fzRun) sticky(t *testing.T, hc, pc *redis.Client, r *fzReader) {
	hconn, pconn := hc.Conn(), pc.Conn()
	defer func() {
		_ = hconn.Close()
		_ = pconn.Close()
	}()
	run.log = append(run.log, "sticky connection {")
	n := 1 + int(r.next())%4
	for i := 0; i < n && !r.done(); i++ {
		switch c := r.next() % 6; {
		case c <= 2:
			run.single(t, hconn, pconn, r, whereSticky)
		case c == 3:
			run.batch(t, hconn, pconn, r, false)
		case c == 4 && run.multi == multiNone:
			run.batch(t, hconn, pconn, r, true)
		default:
			run.otherFlush(t)
		}
	}
	if run.multi != multiNone {
		op := run.closeMulti(r.next()&1 == 0)
		run.log = append(run.log, "single "+op.desc)
		got, cmd := fzRunSingleCmd(run.ctx, hconn, op, false)
		run.noteHookMulti(op, cmd.Err())
		if want := fzRunSingle(run.ctx, pconn, op, true); got != want {
			run.fail(t, "closing EXEC/DISCARD differs", got, want)
		}
		run.flushedInMulti = false
	}
	run.log = append(run.log, "}")
}

// fzSecret is part of argument and key values; it must never be exported.
const fzSecret = "s3cr3t"

// fzAllSHAs are the SHA1s of every table body and the 1 MB body, computed
// once (testkit.SHA1 is plain Go, and the fuzzer runs a program many times).
var fzAllSHAs = sync.OnceValue(func() []string {
	shas := make([]string, 0, len(fzBodies)+1)
	for _, body := range append(slices.Clone(fzBodies), fzBigBody) {
		shas = append(shas, testkit.SHA1(body))
	}
	return shas
})

// fzState renders the keys programs touch and which scripts the server has.
func fzState(ctx context.Context, c *redis.Client) string {
	var b strings.Builder
	for _, k := range fzKeys {
		typ := c.Type(ctx, k).Val()
		fmt.Fprintf(&b, "%s:%s=", k, typ)
		switch typ {
		case "string":
			fmt.Fprintf(&b, "%q ", c.Get(ctx, k).Val())
		case "hash":
			fmt.Fprintf(&b, "%v ", c.HGetAll(ctx, k).Val())
		}
	}
	// Registered bodies are left out: Register's SCRIPT LOAD is a side
	// effect it documents (it can load one where the call is then refused,
	// a key the user may not touch, say).
	exists := c.ScriptExists(ctx, fzAllSHAs()...).Val()
	for _, i := range fzRegistered {
		if i < len(exists) {
			exists[i] = false
		}
	}
	fmt.Fprintf(&b, "scripts=%v", exists)
	b.WriteString(fzFunctionState(ctx, c))
	return b.String()
}

// decodeOp reads one command for where it will go (the oracle differs).
func (run *fzRun) decodeOp(r *fzReader, where int) fzOp {
	inBatch := where >= wherePipe
	b := r.next()
	k := b % 16
	if b >= 0xc0 {
		return run.fnOp(r, k, where)
	}
	switch {
	case k <= 3:
		return run.evalOp(r, k)
	case k <= 6:
		return run.evalShaOp(r, k == 6, where)
	case k == 15:
		return run.bigOp(r, inBatch)
	}
	kb := r.next()
	key := fzKeys[int(kb)%len(fzKeys)]
	spell := kb >> 2 // how command names are spelled, where it matters
	var args []interface{}
	switch k {
	case 7:
		args = []interface{}{"set", key, "v-" + fzSecret}
	case 8:
		args = []interface{}{"get", key}
	case 9:
		args = []interface{}{"incr", key}
	case 10:
		args = []interface{}{"hset", key, "f", fzSecret}
	case 11:
		args = []interface{}{"del", key, "k2"}
	case 12:
		args = []interface{}{fzName("script", spell), fzName("load", spell>>2), fzBodies[int(r.next())%len(fzBodies)]}
	case 13:
		args = []interface{}{fzName("script", spell), fzName("flush", spell>>2)}
		if spell&0x20 != 0 {
			args = append(args, fzName("sync", spell>>4))
		}
		if run.multi == multiBatch {
			run.flushedInMulti = true
		}
		run.flushedInBatch = run.flushedInBatch || inBatch
	case 14:
		args = run.txControl(r.next(), key, spell, where)
	}
	return fzOp{hook: args, ref: args, desc: fzDescribe(args)}
}

// txControl is MULTI, EXEC, DISCARD, WATCH or UNWATCH written by the
// caller, where a connection is certain (a pipeline, a sticky connection);
// elsewhere, and in go-redis's own transactions, ECHO. It tracks whether a
// MULTI is open, as the server does.
func (run *fzRun) txControl(c byte, key string, spell byte, where int) []interface{} {
	echo := []interface{}{"echo", []byte{0, 0xff, '\r', '\n', 's'}}
	if where == wherePooled || where == whereTx {
		return echo
	}
	switch c % 6 {
	case 1:
		if run.multi == multiNone {
			run.multi = multiSingle
			if where == wherePipe {
				run.multi = multiBatch
			}
			run.flushedInMulti = false
		}
		return []interface{}{fzName("multi", spell)}
	case 2, 3:
		run.multi = multiNone
		name := "exec"
		if c%6 == 3 {
			name = "discard"
		}
		return []interface{}{fzName(name, spell)}
	case 4:
		return []interface{}{fzName("watch", spell), key}
	case 5:
		return []interface{}{fzName("unwatch", spell)}
	}
	return echo
}

// body picks a script body: one of the table, or one made from the input.
func (run *fzRun) body(r *fzReader) string {
	sel := int(r.next()) % (len(fzBodies) + 1)
	if sel < len(fzBodies) {
		return fzBodies[sel]
	}
	raw := make([]byte, 1+int(r.next())%8)
	for i := range raw {
		raw[i] = r.next()
	}
	if raw[0]&1 == 0 {
		// A long string literal: compiles unless the bytes close it.
		run.fuzzed = "return [==[" + strings.ReplaceAll(string(raw[1:]), "]==]", "") + "]==]"
	} else {
		run.fuzzed = string(raw[1:]) // raw bytes as Lua: mostly compile errors
	}
	return run.fuzzed
}

// shape reads keys, arguments and numkeys; it reports whether parseScript
// would accept the numkeys (only then does the hook learn an EVAL's body).
func fzShape(r *fzReader) (rest []interface{}, wellFormed bool, desc string) {
	s, nk := r.next(), r.next()
	nKeys := int(s & 3 % 3)
	nArgs := int(s>>2) & 3
	var numkeys interface{}
	wellFormed = true
	switch nk % 12 {
	case 0:
		numkeys = nKeys
	case 1:
		numkeys = strconv.Itoa(nKeys)
	case 2:
		numkeys = int64(nKeys)
	case 3:
		numkeys, wellFormed = -1, false
	case 4:
		numkeys, wellFormed = "x", false
	case 5:
		numkeys, wellFormed = nKeys+nArgs+1, false // more keys than arguments
	case 6:
		numkeys, wellFormed = "0"+strconv.Itoa(nKeys), false // leading zero
	case 7:
		numkeys, wellFormed = "+"+strconv.Itoa(nKeys), false
	case 8:
		// go-redis writes 1.0 as "1", which Redis accepts; the hook does not
		// parse floats and passes the command through unlearned.
		numkeys, wellFormed = float64(nKeys), false
	case 9:
		numkeys = uint8(nKeys)
	case 10:
		numkeys = []byte(strconv.Itoa(nKeys))
	case 11:
		numkeys, wellFormed = "99999999999", false
	}
	rest = append(rest, numkeys)
	for i := 0; i < nKeys; i++ {
		rest = append(rest, fzKeys[(int(s>>4)+i)%len(fzKeys)])
	}
	for i := 0; i < nArgs; i++ {
		switch (int(s>>5) + i) % 5 {
		case 4:
			rest = append(rest, fzNoScriptText) // for a script that echoes it
		case 0:
			rest = append(rest, "a-"+fzSecret)
		case 1:
			rest = append(rest, i+7)
		case 2:
			rest = append(rest, []byte{0, 0xff, '\r', '\n'})
		case 3:
			rest = append(rest, "")
		}
	}
	return rest, wellFormed, fzDescribe(rest)
}

// fzName spells a command name or subcommand in one of a few cases, as a
// string or as []byte (go-redis accepts both).
func fzName(lower string, c byte) interface{} {
	switch c % 4 {
	case 1:
		return strings.ToUpper(lower)
	case 2:
		return strings.ToUpper(lower[:1]) + lower[1:]
	case 3:
		return []byte(strings.ToUpper(lower[:1]) + lower[1:])
	}
	return lower
}

// evalOp is EVAL or EVAL_RO, through Do or a typed command, with a string,
// []byte, integer or nil body.
func (run *fzRun) evalOp(r *fzReader, k byte) fzOp {
	body := run.body(r)
	extra := r.next()
	rest, wellFormed, desc := fzShape(r)
	cmd := "eval"
	if k == 2 {
		cmd = "eval_ro"
	}
	var b interface{} = body
	bdesc := "body " + fzShortBody(body)
	switch extra >> 4 % 6 {
	case 1:
		b = []byte(body)
		bdesc = "[]byte " + fzShortBody(body)
	case 2:
		b, wellFormed, bdesc = 42, false, "int 42"
	case 3:
		b, wellFormed, bdesc = nil, false, "nil"
	}
	args := append([]interface{}{fzName(cmd, extra), b}, rest...)
	if wellFormed {
		run.learn(body)
	}
	op := fzOp{hook: args, ref: args, desc: fmt.Sprintf("%s %s %s", args[0], bdesc, desc)}
	// Sub-batches (variantSplit) stop at a reply go-redis cannot parse (a
	// transport-level error), where one plain pipeline has already sent,
	// and the server run, everything after it: the replies match (the rest
	// gets the parse error either way) but the effects do not. A reply read
	// into the wrong type is a caller's bug; that variant does not make it.
	if k == 3 && run.variant != variantSplit {
		op.typed = 1 + int(extra&1)
		op.desc = [...]string{"", "(StringCmd) ", "(IntCmd) "}[op.typed] + op.desc
	}
	return op
}

// learn records that the hook now knows body.
func (run *fzRun) learn(body string) { run.learned[body] = true }

// known reports whether the hook certainly knows body, and whether it
// certainly does not; in the tiny-cache variant a learned body may have
// been evicted, and then neither holds.
func (run *fzRun) known(body string) (known, unknown bool) {
	registered := false
	for _, i := range fzRegistered {
		registered = registered || fzBodies[i] == body
	}
	if registered {
		return true, false
	}
	if run.variant == variantTinyCache {
		return false, !run.learned[body]
	}
	return run.learned[body], !run.learned[body]
}

// evalShaOp is EVALSHA or EVALSHA_RO of a known or unknown SHA1 (or of
// something that is no SHA1 at all).
func (run *fzRun) evalShaOp(r *fzReader, ro bool, where int) fzOp {
	inBatch := where >= wherePipe
	sel := int(r.next()) % (len(fzBodies) + 5)
	extra := r.next()
	rest, wellFormed, desc := fzShape(r)
	cmd := "evalsha"
	if ro {
		cmd = "evalsha_ro"
	}
	var sha, body string
	hasBody := false
	switch {
	case sel < len(fzBodies):
		body, hasBody = fzBodies[sel], true
	case sel == len(fzBodies):
		sha = testkit.SHA1("never sent by any program")
	case sel == len(fzBodies)+1:
		sha = strings.Repeat("z", 40) // 40 characters, not hex
	case sel == len(fzBodies)+2:
		sha = "abc"
	case sel == len(fzBodies)+3:
		sha = ""
	default:
		body, hasBody = run.fuzzed, true
	}
	if hasBody && where == whereTx && fzUserOf(run.cfg) == "fz-noeval" {
		// README: a user who may run EVALSHA but not EVAL can see NOPERM
		// for a known script's EVALSHA in a transaction (its first use
		// carries the body as EVAL). No exact oracle: an unknown SHA1.
		body, hasBody = "", false
		sha = testkit.SHA1("never sent by any program")
	}
	// A malformed EVALSHA goes through untouched: plain semantics.
	if hasBody {
		known, unknown := run.known(body)
		if !known && !unknown {
			// Learned but perhaps evicted: use a registered body instead
			// (known: the batch rules below apply to it).
			body = fzBodies[fzRegistered[int(extra)%len(fzRegistered)]]
			known = true
		}
		sha = testkit.SHA1(body)
		preloads := fzUserOf(run.cfg) == "fz-noeval" || fzUserOf(run.cfg) == "fz-noevalsha"
		registered := slices.Contains(fzRegistered, slices.Index(fzBodies, body))
		if known && inBatch && (!run.certainInBatch(body) || preloads && run.flushedInBatch ||
			where == whereTx && registered && fzUserOf(run.cfg) == "fz-noevalsha" ||
			where == wherePipe && registered && fzUserOf(run.cfg) == "fz-noscript") {
			// README: in a batch, your EVALSHA of a known script the
			// server lacks is repaired only when order allows. The
			// reference's "loaded first" (below) happens before the
			// batch, so the batch's own flush would undo it. For a user
			// who may run EVAL but not EVALSHA, a registered script's
			// EVALSHA in a transaction can run as EVAL. For a user who
			// may not SCRIPT LOAD, a pipeline before the server has
			// shown that can leave a registered script's EVALSHA its
			// NOSCRIPT (TestACLUsers checks the pipelines after). No
			// exact oracle: an unknown SHA1.
			body, hasBody = "", false
			sha = testkit.SHA1("never sent by any program")
		}
	}
	if extra&0x80 != 0 {
		sha = strings.ToUpper(sha) // Redis accepts an upper-case SHA1
	}
	args := append([]interface{}{fzName(cmd, extra), sha}, rest...)
	op := fzOp{hook: args, ref: args, desc: fmt.Sprintf("%s %s %s", args[0], fzShort(sha), desc)}
	if hasBody {
		op.desc += " (body " + fzShortBody(body) + ")"
		if known, _ := run.known(body); known && wellFormed && run.repairable(body, rest) {
			// The hook repairs NOSCRIPT: the reference runs the body. In a
			// batch a body that does not compile gets plain NOSCRIPT.
			switch {
			case where == whereTx && fzUserOf(run.cfg) == "fz-noscript" && !slices.Contains(fzRegistered, slices.Index(fzBodies, body)):
				// README: in a transaction the hook cannot repair for a
				// user who may not SCRIPT LOAD; the EVALSHA gets plain
				// NOSCRIPT (a registered script's first use carries its
				// body as EVAL). A pipeline's retry sends the body.
			case fzUserOf(run.cfg) == "fz-noevalsha":
				// The user may not run EVALSHA: its NOPERM is no NOSCRIPT,
				// and nothing is repaired. A registered script is loaded
				// first all the same (Register promises it is there).
				if slices.Contains(fzRegistered, slices.Index(fzBodies, body)) {
					op.preload = body
				}
			case fzUserOf(run.cfg) == "fz-noeval":
				// The user may not run EVAL: "as if the server had the
				// script" is the reference loading it (as another client)
				// just before its plain EVALSHA.
				op.preload = body
				op.desc += " ≡ loaded first"
			case !inBatch || run.e.compiled(run.ctx, body):
				evalName := "eval"
				if ro {
					evalName = "eval_ro"
				}
				op.ref = append([]interface{}{evalName, body}, rest...)
				op.desc += " ≡ " + evalName
			}
		}
	}
	return op
}

// certainInBatch reports whether the caller's EVALSHA of a known body,
// decoded for a batch, is certain to find the script (or be repaired
// whatever else the batch holds): the body is registered, or the hooked
// server has it now and the batch has no flush of its own before it. A
// body earlier in the same batch does not count (a refused EVAL loads
// nothing).
func (run *fzRun) certainInBatch(body string) bool {
	if slices.Contains(fzRegistered, slices.Index(fzBodies, body)) {
		return true
	}
	if run.flushedInBatch {
		return false
	}
	exists, err := run.e.hkAdmin.ScriptExists(run.ctx, testkit.SHA1(body)).Result()
	return err == nil && len(exists) == 1 && exists[0]
}

// repairable reports whether the hook may repair a NOSCRIPT for an EVALSHA
// of body with these keys and arguments (README, "A script never runs
// twice"): not when the script's own error reply could read like the
// server's refusal, and not inside a MULTI the caller opened outside this
// batch, or in this batch before a SCRIPT FLUSH of its own (the server's
// replies there are QUEUED, which prove nothing).
func (run *fzRun) repairable(body string, rest []interface{}) bool {
	forging := func(t string) bool {
		t = strings.ToLower(t)
		return strings.Contains(t, "noscript") || strings.Contains(t, "noperm")
	}
	if forging(body) {
		return false
	}
	if strings.Contains(body, "err") {
		for _, a := range rest[1:] {
			if t, ok := a.(string); ok && forging(t) {
				return false
			}
		}
	}
	switch run.multi {
	case multiSingle:
		return false
	case multiBatch:
		return !run.flushedInMulti
	}
	return true
}

// bigOp sends the 1 MB body, or runs it by SHA1.
func (run *fzRun) bigOp(r *fzReader, inBatch bool) fzOp {
	c := r.next()
	if c&1 == 0 {
		run.learn(fzBigBody)
		args := []interface{}{"eval", fzBigBody, 0, "a", "b"}
		return fzOp{hook: args, ref: args, desc: "eval <1 MB body> 0 a b"}
	}
	known, unknown := run.known(fzBigBody)
	if !known && !unknown || known && inBatch && !run.certainInBatch(fzBigBody) || fzUserOf(run.cfg) != "default" {
		// Perhaps evicted (tiny cache), or perhaps missing in a batch (see
		// evalShaOp), or an ACL user (evalShaOp has their rules): no
		// exact oracle for EVALSHA.
		args := []interface{}{"eval", fzBigBody, 0, "a"}
		return fzOp{hook: args, ref: args, desc: "eval <1 MB body> 0 a"}
	}
	sha := fzAllSHAs()[len(fzBodies)]
	args := []interface{}{"evalsha", sha, 0, "a"}
	op := fzOp{hook: args, ref: args, desc: "evalsha <1 MB body's SHA1> 0 a"}
	if known {
		op.ref = []interface{}{"eval", fzBigBody, 0, "a"}
		op.desc += " ≡ eval"
	}
	return op
}

func (op fzOp) args(ref bool) []interface{} {
	if ref {
		return op.ref
	}
	return op.hook
}

func (op fzOp) cmd(ctx context.Context, ref bool) redis.Cmder {
	args := op.args(ref)
	switch op.typed {
	case 1:
		return redis.NewStringCmd(ctx, args...)
	case 2:
		return redis.NewIntCmd(ctx, args...)
	}
	return redis.NewCmd(ctx, args...)
}

func fzRunSingle(ctx context.Context, c fzTarget, op fzOp, ref bool) string {
	s, _ := fzRunSingleCmd(ctx, c, op, ref)
	return s
}

func fzRunSingleCmd(ctx context.Context, c fzTarget, op fzOp, ref bool) (string, redis.Cmder) {
	cmd := op.cmd(ctx, ref)
	_ = c.Process(ctx, cmd)
	return testkit.Render(cmd), cmd
}

func runFzBatchCmds(ctx context.Context, c fzTarget, ops []fzOp, tx, ref bool) ([]redis.Cmder, error) {
	fn := func(p redis.Pipeliner) error {
		for _, op := range ops {
			_ = p.Process(ctx, op.cmd(ctx, ref))
		}
		return nil
	}
	if tx {
		return c.TxPipelined(ctx, fn)
	}
	return c.Pipelined(ctx, fn)
}

func fzShort(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func fzShortBody(body string) string {
	if len(body) > 24 {
		return strconv.Quote(body[:24]) + "…"
	}
	return strconv.Quote(body)
}

func fzDescribe(args []interface{}) string {
	parts := make([]string, len(args))
	for i, a := range args {
		switch v := a.(type) {
		case string:
			parts[i] = strconv.Quote(fzShort(v))
		case []byte:
			parts[i] = fmt.Sprintf("[]byte%q", fzShort(string(v)))
		default:
			parts[i] = fmt.Sprintf("%T(%v)", a, a)
		}
	}
	return strings.Join(parts, " ")
}

// fzSeeds are hand-written programs, encoded. Each says what it aims at.
func fzSeeds() [][]byte {
	// Op encodings (see decodeOp): an EVAL is {0, body, extra, shape, nk};
	// an EVALSHA {4, sha, extra, shape, nk}; a plain command {k, key...}.
	evalOp := func(body, extra, shape, nk byte) []byte { return []byte{0, body, extra, shape, nk} }
	shaOp := func(sel, extra, shape, nk byte) []byte { return []byte{4, sel, extra, shape, nk} }
	single := func(op []byte) []byte { return append([]byte{0}, op...) }
	batch := func(tx bool, ops ...[]byte) []byte {
		b := []byte{4, byte(len(ops) - 1)}
		if tx {
			b[0] = 6
		}
		for _, op := range ops {
			b = append(b, op...)
		}
		return b
	}
	const flush = 7
	cat := func(cfg byte, parts ...[]byte) []byte {
		b := []byte{cfg}
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	counter := evalOp(0, 0, 1, 0) // counter script, one key, numkeys int
	// An FCALL is {0xc0+k, key and spelling, function} (k odd: FCALL_RO);
	// the caller's FUNCTION command {0xcc, 0, which}; another client's
	// FUNCTION FLUSH the group 0x47.
	fcall := func(k, kb, fn byte) []byte { return []byte{0xc0 + k, kb, fn} }
	fnChange := func(c byte) []byte { return []byte{0xcc, 0, c} }
	fincr := fcall(0, 0, 0)
	const fnFlush = 0x47
	// Commands the caller writes to control a transaction: {14, key, which}.
	multi, exec, discard, watch := []byte{14, 0, 1}, []byte{14, 0, 2}, []byte{14, 0, 3}, []byte{14, 0, 4}
	// sticky runs up to four steps on a sticky connection; each step is
	// 0 (a single command) followed by the command, or 5 (a flush by
	// another client). The byte after the group says how an open MULTI ends.
	sticky := func(steps ...[]byte) []byte {
		b := []byte{0x87, byte(len(steps) - 1)}
		for _, st := range steps {
			if len(st) == 1 && st[0] == 5 {
				b = append(b, 5)
				continue
			}
			b = append(b, 0)
			b = append(b, st...)
		}
		return b
	}
	return [][]byte{
		// Warm, flush between calls, reload.
		cat(0, single(counter), single(counter), []byte{flush}, single(counter)),
		// Every body once, singly, RESP3.
		cat(1, single(evalOp(1, 0, 0x15, 1)), single(evalOp(2, 0, 0, 0)), single(evalOp(3, 0, 0, 0)),
			single(evalOp(4, 0, 0, 0)), single(evalOp(5, 0, 0, 0)), single(evalOp(6, 0, 0, 0)),
			single(evalOp(9, 0, 1, 0)), single(evalOp(10, 0, 0, 0)), single(evalOp(11, 0, 0, 0))),
		// EVALSHA: registered, known after EVAL, unknown, upper case, not hex.
		cat(0, single(shaOp(0, 0, 1, 0)), single(evalOp(1, 0, 0, 0)), single(shaOp(1, 0x80, 0, 0)),
			[]byte{flush}, single(shaOp(1, 0, 0, 0)), single(shaOp(7, 0, 1, 0)),
			single(shaOp(byte(len(fzBodies)+1), 0, 0, 0)), single(shaOp(2, 0, 0, 0))),
		// Malformed numkeys of every kind, and []byte, int and nil bodies.
		cat(0, single(evalOp(0, 0, 1, 3)), single(evalOp(0, 0, 1, 4)), single(evalOp(0, 0, 1, 5)),
			single(evalOp(0, 0, 1, 6)), single(evalOp(0, 0, 1, 7)), single(evalOp(0, 0, 1, 8)),
			single(evalOp(0, 0, 1, 11)), single(evalOp(0, 0x10, 1, 10)), single(evalOp(0, 0x20, 0, 0)),
			single(evalOp(0, 0x30, 0, 0))),
		// A pipeline mixing scripts and plain commands, cold and after a flush.
		cat(0, batch(false, []byte{7, 0}, counter, []byte{8, 0}, counter, evalOp(2, 0, 0, 0), evalOp(2, 0, 0, 0)),
			[]byte{flush},
			batch(false, counter, shaOp(0, 0, 1, 0), []byte{9, 0}, counter)),
		// The same as a transaction, with a compile error and EXECABORT-free
		// runtime errors, then a known EVALSHA of a body that does not compile.
		cat(0, batch(true, counter, evalOp(2, 0, 0, 0), []byte{10, 2}, evalOp(12, 0, 1, 0), counter),
			[]byte{flush},
			batch(true, shaOp(2, 0, 0, 0), evalOp(2, 0, 0, 0), counter)),
		// Sub-batches (variant 1) with EVAL_RO and writes refused there.
		cat(2, batch(false, counter, []byte{2, 8, 0, 1, 0}, []byte{2, 7, 0, 1, 0}, counter, counter, counter, []byte{8, 0}, counter)),
		// Traced (variant 2), with a reload and a pipeline.
		cat(4, single(counter), []byte{flush}, single(counter), batch(false, counter, shaOp(1, 0, 0, 0), evalOp(1, 0, 0x55, 0))),
		// Tiny cache (variant 3): more scripts than the cache holds.
		cat(6, single(evalOp(1, 0, 0, 0)), single(evalOp(7, 0, 1, 0)), single(evalOp(10, 0, 0, 0)),
			single(evalOp(1, 0, 0, 0)), single(shaOp(1, 0, 0, 0)), single(shaOp(0, 0, 1, 0))),
		// SCRIPT LOAD and SCRIPT FLUSH sent by the caller, inside batches too.
		cat(0, single([]byte{12, 0, 1}), single(shaOp(1, 0, 0, 0)),
			batch(false, counter, []byte{13, 0}, counter),
			batch(true, counter, []byte{13, 0}, counter)),
		// The 1 MB body, then by SHA1, in a pipeline.
		cat(0, single([]byte{15, 0}), batch(false, []byte{15, 1}, []byte{15, 0}, []byte{15, 1})),
		// A body made from input bytes, then its SHA1.
		cat(0, single([]byte{0, byte(len(fzBodies)), 4, 'x', 'y', 'z', 0, 0, 0}),
			single(shaOp(byte(len(fzBodies)+4), 0, 0, 0))),
		// MULTI, EXEC, DISCARD and WATCH written by the caller in pipelines:
		// [MULTI, EVAL, DISCARD, EVAL], [WATCH, INCR, MULTI, EVAL, EXEC]
		// (aborted), and a long body that does not compile inside a MULTI.
		cat(0, single(counter),
			batch(false, multi, counter, discard, counter),
			batch(false, watch, []byte{9, 0}, multi, counter, counter, exec),
			[]byte{flush},
			batch(false, counter, multi, evalOp(20, 0, 0, 0), evalOp(20, 0, 0, 0), counter, exec)),
		// On a sticky connection: EVAL; SCRIPT FLUSH; MULTI; EVAL; EXEC.
		cat(0, sticky(single(counter)[1:], single([]byte{13, 0})[1:], single(multi)[1:], single(counter)[1:]), []byte{0}),
		// Scripts whose error replies read like NOSCRIPT, after an INCR.
		cat(0, single(evalOp(16, 0, 1, 0)), single(evalOp(16, 0, 1, 0)), single(evalOp(17, 0, 1, 0)),
			single(evalOp(17, 0, 1, 0)), single(shaOp(16, 0, 1, 0)), single(shaOp(17, 0, 1, 0)), []byte{flush},
			single(shaOp(16, 0, 1, 0)), single(shaOp(17, 0, 1, 0)),
			batch(false, evalOp(16, 0, 1, 0), evalOp(17, 0, 1, 0), evalOp(16, 0, 1, 0), evalOp(17, 0, 1, 0)),
			// A script that echoes its argument, given the server's text.
			single(evalOp(18, 0, 0x84, 0)), single(evalOp(18, 0, 0x84, 0)), []byte{flush}, single(shaOp(18, 0, 0x84, 0))),
		// []byte command names and subcommands: SCRIPT FLUSH, SCRIPT LOAD.
		cat(0, single(counter), single(counter), single([]byte{13, 0xfc}), single(counter),
			batch(false, counter, []byte{13, 0xcc}, counter, counter), single([]byte{12, 0xfc, 0}), single(counter)),
		// ACL users: without SCRIPT, without EVALSHA, with keys k1 and h
		// only ([EVAL on k2, EVAL on k1]), without EVAL.
		cat(0x20, single(counter), single(counter), []byte{flush}, single(counter), single(shaOp(1, 0, 0, 0)),
			batch(false, counter, counter, shaOp(0, 0, 1, 0)), batch(true, counter, counter)),
		cat(0x28, single(counter), single(counter), single(counter), batch(false, counter, counter), batch(true, counter, counter)),
		cat(0x30, batch(false, evalOp(0, 0, 0x11, 0), counter), batch(false, evalOp(0, 0, 0x11, 0), counter, counter),
			single(evalOp(0, 0, 0x11, 0)), single(counter)),
		cat(0x38, single(shaOp(0, 0, 1, 0)), []byte{flush}, single(shaOp(0, 0, 1, 0)), batch(false, shaOp(0, 0, 1, 0), shaOp(0, 0, 1, 0))),
		// OnConnect runs a script; then a pool of one with a sticky connection.
		cat(0x40, single(evalOp(19, 0, 1, 0)), []byte{flush}, single(evalOp(19, 0, 1, 0)), batch(false, evalOp(19, 0, 1, 0), evalOp(19, 0, 1, 0))),
		cat(0xc0, sticky(single(evalOp(19, 0, 1, 0))[1:], []byte{5}, single(counter)[1:], single(counter)[1:]),
			single(counter), single(evalOp(19, 0, 1, 0))),
		// Functions (see functions_test.go). Registered calls singly: cold,
		// warm, after another client's FUNCTION FLUSH; FCALL_RO, an unknown
		// function, a name in another case, a runtime error, a write then
		// an error.
		cat(0, single(fincr), single(fincr), []byte{fnFlush}, single(fincr), single(fcall(1, 0, 1)),
			single(fcall(0, 0, 9)), single(fcall(0, 0, 4)), single(fcall(0, 0, 2)), single(fcall(0, 0, 3))),
		// Replies that read like "Function not found", cold and after a
		// flush; an echo of the server's text and of another.
		cat(0, single(fcall(0, 0, 5)), []byte{fnFlush}, single(fcall(0, 0, 5)), single(fcall(0, 0, 6)),
			single(fcall(0, 0x80, 7)), []byte{fnFlush}, single(fcall(0, 0x80, 7)), single(fcall(0, 0, 7))),
		// The caller's own FUNCTION LOAD (its own version), DELETE, LOAD of
		// a library the hook does not know, FLUSH, LOAD without REPLACE.
		cat(0, single(fnChange(1)), single(fincr), single(fnChange(5)), single(fincr), single(fnChange(3)),
			single(fcall(0, 0, 8)), single(fnChange(7)), single(fincr), single(fnChange(2)), single(fincr)),
		// Pipelines: cold; after a flush with nothing after the miss (the
		// retry); after a flush with a write after it (the miss stays).
		cat(0, batch(false, fincr, fcall(1, 0, 1), []byte{9, 0}, fcall(0, 0, 9)),
			[]byte{fnFlush}, batch(false, fincr, fincr),
			[]byte{fnFlush}, batch(false, fincr, []byte{9, 0}), batch(false, fincr)),
		// A retry after a script that wrote and then failed.
		cat(0, single(fincr), []byte{fnFlush}, batch(false, fincr, evalOp(16, 0, 1, 0))),
		// Transactions: cold (the load follows), warm, after a flush, with
		// the caller's FUNCTION FLUSH inside.
		cat(0, batch(true, fincr, fcall(0, 0, 3)), batch(true, fincr), []byte{fnFlush},
			batch(true, fincr, []byte{9, 0}), batch(true, fincr), batch(true, fnChange(7), fincr), single(fincr)),
		// Sub-batches (variant 1).
		cat(2, batch(false, fincr, fincr, fincr, fincr), []byte{fnFlush},
			batch(false, fincr, []byte{9, 0}, fincr, fincr, fincr), single(fincr)),
		// A MULTI the caller wrote, in a pipeline and on a sticky connection.
		cat(0, single(fincr), []byte{fnFlush}, batch(false, fincr, multi, fincr, exec),
			batch(false, multi, fincr, exec, fincr),
			sticky(multi, fincr, fcall(0, 0, 9)), []byte{0}, single(fincr)),
		// The caller's SCRIPT FLUSH queued inside its own MULTI: nothing of
		// the hook's goes into that transaction.
		cat(0, sticky(multi, []byte{13, 0}, fincr, shaOp(0, 0, 1, 0)), []byte{0}, single(fincr)),
	}
}

// TestWriteFuzzCorpus rewrites testdata/fuzz/FuzzDifferential from fzSeeds.
// Run it after changing the seeds:
//
//	SCRIPTHOOK_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus -timeout 60s .
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("SCRIPTHOOK_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("set SCRIPTHOOK_WRITE_FUZZ_CORPUS=1 to rewrite the committed seed corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDifferential")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, seed := range fzSeeds() {
		content := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", seed)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
