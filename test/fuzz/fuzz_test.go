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
// Programs draw from EVAL, EVAL_RO, EVALSHA(_RO) of known, unknown, upper-case
// and non-SHA1 arguments, numkeys of every malformed kind, string, []byte,
// integer and nil bodies, compile and runtime errors, empty, binary and 1 MB
// bodies, bodies made of input bytes, typed commands (StringCmd, IntCmd),
// plain SET/GET/INCR/HSET/DEL/ECHO, SCRIPT LOAD and SCRIPT FLUSH sent by the
// caller, and SCRIPT FLUSH from another client between operations; singly,
// in pipelines and in transactions (TxPipelined).
//
// Optimistic pipeline mode is not fuzzed: it documents that NOSCRIPT may
// reach the caller, so it has no exact oracle.

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
	plain             [2]*redis.Client // RESP2, RESP3

	mu       sync.Mutex
	compiles map[string]bool
}

func newFzEnv(tb testing.TB) *fzEnv {
	e := &fzEnv{
		ref:      redistest.Start(tb),
		hooked:   redistest.Start(tb),
		lint:     redistest.Start(tb),
		compiles: map[string]bool{},
	}
	mk := func(addr string, proto int) *redis.Client {
		c := redis.NewClient(fzOptions(addr, proto))
		tb.Cleanup(func() { _ = c.Close() })
		return c
	}
	e.refAdmin, e.hkAdmin, e.lintc = mk(e.ref.Addr, 2), mk(e.hooked.Addr, 2), mk(e.lint.Addr, 2)
	e.plain = [2]*redis.Client{mk(e.ref.Addr, 2), mk(e.ref.Addr, 3)}
	return e
}

// fzOptions are the options of every client of the fuzz target. A command
// that reads a reply into the wrong type can desynchronize a go-redis
// connection (with or without the hook); a short read timeout and no
// retries keep such an input from costing tens of seconds.
func fzOptions(addr string, proto int) *redis.Options {
	return &redis.Options{Addr: addr, Protocol: proto, MaxRetries: -1, ReadTimeout: 500 * time.Millisecond}
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
}

// fzRun is one program being run.
type fzRun struct {
	e       *fzEnv
	ctx     context.Context
	variant int
	// learned: bodies the hook knows (by content). In the tiny-cache
	// variant only registered bodies are certain to be known.
	learned map[string]bool
	fuzzed  string // the last fuzz-derived body
	log     []string
}

func runDifferential(t *testing.T, e *fzEnv, data []byte) {
	ctx := t.Context()
	r := &fzReader{b: data}
	cfg := r.next()
	proto := 2 + int(cfg&1)
	run := &fzRun{e: e, ctx: ctx, variant: int(cfg>>1) & 3, learned: map[string]bool{}}
	run.log = append(run.log, fmt.Sprintf("RESP%d variant %d", proto, run.variant))

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
	for _, i := range fzRegistered {
		h.Register(fmt.Sprint("reg", i), fzBodies[i])
		run.learned[fzBodies[i]] = true
	}
	hc := redis.NewClient(fzOptions(e.hooked.Addr, proto))
	defer hc.Close()
	hc.AddHook(h)
	pc := e.plain[proto-2]

	for g := 0; g < fzMaxGroups && !r.done(); g++ {
		sel := r.next()
		switch sel % 8 {
		case 0, 1, 2, 3:
			op := run.decodeOp(r, false)
			run.log = append(run.log, "single "+op.desc)
			got, want := fzRunSingle(ctx, hc, op, false), fzRunSingle(ctx, pc, op, true)
			if got != want {
				t.Fatalf("single command differs\nprogram:\n  %s\nhook: %s\nref:  %s", strings.Join(run.log, "\n  "), got, want)
			}
		case 4, 5, 6:
			tx := sel%8 == 6
			n := 1 + int(r.next())%fzMaxBatch
			ops := make([]fzOp, n)
			desc := make([]string, n)
			for i := range ops {
				ops[i] = run.decodeOp(r, true)
				desc[i] = ops[i].desc
			}
			kind := "pipeline"
			if tx {
				kind = "tx"
			}
			run.log = append(run.log, kind+" ["+strings.Join(desc, "; ")+"]")
			got, want := runFzBatch(ctx, hc, ops, tx, false), runFzBatch(ctx, pc, ops, tx, true)
			if !slices.Equal(got, want) {
				t.Fatalf("%s differs\nprogram:\n  %s\nhook: %q\nref:  %q", kind, strings.Join(run.log, "\n  "), got, want)
			}
		case 7:
			// Another client flushes the script cache of both servers: the
			// hook still believes its scripts are loaded.
			run.log = append(run.log, "SCRIPT FLUSH (both servers, from another client)")
			for _, c := range []*redis.Client{e.refAdmin, e.hkAdmin} {
				if err := c.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}

	// The data and the script cache must have ended up the same.
	got, want := fzState(ctx, e.hkAdmin), fzState(ctx, e.refAdmin)
	if got != want {
		t.Fatalf("final state differs\nprogram:\n  %s\nhook: %s\nref:  %s", strings.Join(run.log, "\n  "), got, want)
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

// fzSecret is part of argument and key values; it must never be exported.
const fzSecret = "s3cr3t"

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
	shas := make([]string, 0, len(fzBodies)+1)
	for _, body := range append(slices.Clone(fzBodies), fzBigBody) {
		shas = append(shas, testkit.SHA1(body))
	}
	fmt.Fprintf(&b, "scripts=%v", c.ScriptExists(ctx, shas...).Val())
	return b.String()
}

// decodeOp reads one command. inBatch matters for the oracle (see the file
// comment).
func (run *fzRun) decodeOp(r *fzReader, inBatch bool) fzOp {
	k := r.next() % 16
	switch {
	case k <= 3:
		return run.evalOp(r, k)
	case k <= 6:
		return run.evalShaOp(r, k == 6, inBatch)
	case k == 15:
		return run.bigOp(r, inBatch)
	}
	key := fzKeys[int(r.next())%len(fzKeys)]
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
		args = []interface{}{"script", "load", fzBodies[int(r.next())%len(fzBodies)]}
	case 13:
		args = []interface{}{"script", "flush"}
	case 14:
		args = []interface{}{"echo", []byte{0, 0xff, '\r', '\n', 's'}}
	}
	return fzOp{hook: args, ref: args, desc: fzDescribe(args)}
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
		switch (int(s>>6) + i) % 4 {
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

// name spells a command name in one of a few cases.
func fzName(lower string, c byte) string {
	switch c % 3 {
	case 1:
		return strings.ToUpper(lower)
	case 2:
		return strings.ToUpper(lower[:1]) + lower[1:]
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
func (run *fzRun) evalShaOp(r *fzReader, ro, inBatch bool) fzOp {
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
	// A malformed EVALSHA goes through untouched: plain semantics.
	if hasBody {
		known, unknown := run.known(body)
		if !known && !unknown {
			// Learned but perhaps evicted: use a registered body instead.
			body = fzBodies[fzRegistered[int(extra)%len(fzRegistered)]]
		}
		sha = testkit.SHA1(body)
	}
	if extra&0x80 != 0 {
		sha = strings.ToUpper(sha) // Redis accepts an upper-case SHA1
	}
	args := append([]interface{}{fzName(cmd, extra), sha}, rest...)
	op := fzOp{hook: args, ref: args, desc: fmt.Sprintf("%s %s %s", args[0], fzShort(sha), desc)}
	if hasBody {
		op.desc += " (body " + fzShortBody(body) + ")"
		if known, _ := run.known(body); known && wellFormed {
			// The hook repairs NOSCRIPT: the reference runs the body. In a
			// batch a body that does not compile gets plain NOSCRIPT.
			if !inBatch || run.e.compiled(run.ctx, body) {
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

// bigOp sends the 1 MB body, or runs it by SHA1.
func (run *fzRun) bigOp(r *fzReader, inBatch bool) fzOp {
	c := r.next()
	if c&1 == 0 {
		run.learn(fzBigBody)
		args := []interface{}{"eval", fzBigBody, 0, "a", "b"}
		return fzOp{hook: args, ref: args, desc: "eval <1 MB body> 0 a b"}
	}
	known, unknown := run.known(fzBigBody)
	if !known && !unknown {
		// Perhaps evicted (tiny cache): no exact oracle for EVALSHA.
		args := []interface{}{"eval", fzBigBody, 0, "a"}
		return fzOp{hook: args, ref: args, desc: "eval <1 MB body> 0 a"}
	}
	sha := testkit.SHA1(fzBigBody)
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

func fzRunSingle(ctx context.Context, c *redis.Client, op fzOp, ref bool) string {
	cmd := op.cmd(ctx, ref)
	_ = c.Process(ctx, cmd)
	return testkit.Render(cmd)
}

func runFzBatch(ctx context.Context, c *redis.Client, ops []fzOp, tx, ref bool) []string {
	fn := func(p redis.Pipeliner) error {
		for _, op := range ops {
			_ = p.Process(ctx, op.cmd(ctx, ref))
		}
		return nil
	}
	var cmds []redis.Cmder
	var err error
	if tx {
		cmds, err = c.TxPipelined(ctx, fn)
	} else {
		cmds, err = c.Pipelined(ctx, fn)
	}
	return testkit.RenderAll(cmds, err)
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
