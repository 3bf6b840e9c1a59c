package fuzz_test

// FCALL and FCALL_RO in the differential fuzzer: the libraries, the model
// of what the hook believes each server holds, and the reference's side of
// the oracle (see the header of fuzz_test.go, "Functions").

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/testkit"
)

// fzLib is a function library a program uses.
type fzLib struct {
	name, code string
	// registered: given to RegisterLibrary (else only the caller loads it).
	registered bool
	// forge, echoes: the hook's forge rule (README): code holding "not
	// found" is never repaired; code holding "err" is not repaired for a
	// call whose keys or arguments hold "not found".
	forge, echoes bool
}

func newFzLib(name string, registered bool, body ...string) *fzLib {
	code := "#!lua name=" + name + "\n" + strings.Join(body, "\n")
	return &fzLib{name: name, code: code, registered: registered,
		forge: strings.Contains(strings.ToLower(code), "not found"), echoes: strings.Contains(code, "err")}
}

var (
	// fzFnLib: a write, a read (no-writes), a runtime error, and a write
	// followed by an error reply (a retry of it would show).
	fzFnLib = newFzLib("fzlib", true,
		"redis.register_function('fz_incr', function(keys, args) return redis.call('INCR', keys[1]) end)",
		"redis.register_function{function_name='fz_get', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}",
		"redis.register_function('fz_rterr', function(keys, args) return nosuchglobal.x end)",
		"redis.register_function('fz_incrfail', function(keys, args) redis.call('INCR', keys[1]) return redis.error_reply('ERR incremented, then failed') end)")
	// fzFnLibV2 is the caller's own version of fzlib: fz_incr adds 2.
	fzFnLibV2 = newFzLib("fzlib", false,
		"redis.register_function('fz_incr', function(keys, args) return redis.call('INCRBY', keys[1], 2) end)",
		"redis.register_function{function_name='fz_get', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}",
		"redis.register_function('fz_rterr', function(keys, args) return nosuchglobal.x end)",
		"redis.register_function('fz_incrfail', function(keys, args) redis.call('INCR', keys[1]) return redis.error_reply('ERR incremented, then failed') end)")
	// fzForgeLib's replies read like the server's "Function not found"
	// (after a write), or merely contain "not found".
	fzForgeLib = newFzLib("fzforge", true,
		"redis.register_function('fzf_nf', function(keys) redis.call('INCR', keys[1]) return redis.error_reply('ERR Function not found') end)",
		"redis.register_function('fzf_keynf', function(keys) return redis.error_reply('ERR key not found') end)")
	// fzEchoLib answers, after a write, the error its argument spells.
	fzEchoLib = newFzLib("fzecho", true,
		"redis.register_function('fze_echo', function(keys, args) redis.call('INCR', keys[1]) return redis.error_reply(args[1] or 'ERR no argument') end)")
	// fzPlainLib is never registered: the caller loads it.
	fzPlainLib = newFzLib("fzplain", false,
		"redis.register_function('fzp_hello', function(keys, args) return 'hello' end)")

	fzRegisteredLibs = []*fzLib{fzFnLib, fzForgeLib, fzEchoLib}
)

// fzFn is a function a program calls.
type fzFn struct {
	name string // as the caller spells it
	lib  *fzLib // nil: no library has it
}

var fzFns = []fzFn{
	{"fz_incr", fzFnLib}, {"fz_get", fzFnLib}, {"fz_rterr", fzFnLib}, {"fz_incrfail", fzFnLib},
	{"FZ_Incr", fzFnLib}, // function names ignore case
	{"fzf_nf", fzForgeLib}, {"fzf_keynf", fzForgeLib},
	{"fze_echo", fzEchoLib},
	{"fzp_hello", fzPlainLib},
	{"fz_nosuch", nil},
}

// fzNotFoundArg is an argument fze_echo answers as the server's text.
const fzNotFoundArg = "ERR Function not found"

// fzFCall is what the oracle needs to know of an FCALL op.
type fzFCall struct {
	fn fzFn
	// forge: the hook's forge rule applies to this call.
	forge bool
	// region: inside a MULTI the caller wrote in the same batch.
	region bool
}

// registeredLib is the registered library of the call, or nil.
func (c *fzFCall) registeredLib() *fzLib {
	if c == nil || c.fn.lib == nil || !c.fn.lib.registered {
		return nil
	}
	return c.fn.lib
}

// fzFnChange is a caller's own FUNCTION LOAD, DELETE or FLUSH.
type fzFnChange struct {
	sub string // "load", "delete", "flush"
	lib *fzLib // load, delete
}

// fnOp decodes an FCALL/FCALL_RO or a caller's FUNCTION command.
func (run *fzRun) fnOp(r *fzReader, k byte, where int) fzOp {
	kb := r.next()
	key := fzKeys[int(kb)%len(fzKeys)]
	spell := kb >> 2
	if k >= 12 {
		return run.fnChangeOp(r.next(), spell)
	}
	fn := fzFns[int(r.next())%len(fzFns)]
	cmd := "fcall"
	if k&1 == 1 {
		cmd = "fcall_ro"
	}
	args := []interface{}{fzName(cmd, spell), fn.name, 1, key}
	arg := "a-" + fzSecret
	if fn.lib == fzEchoLib {
		// In one batch every fze_echo call has the same kind of argument
		// (the first one's): see the header, "no exact oracle".
		forgeArg := kb&0x80 != 0
		if run.echoKind != 0 {
			forgeArg = run.echoKind == 2
		} else if where >= wherePipe {
			run.echoKind = 1 + map[bool]int{false: 0, true: 1}[forgeArg]
		}
		arg = "ERR fine"
		if forgeArg {
			arg = fzNotFoundArg
		}
	}
	args = append(args, arg)
	call := &fzFCall{fn: fn, region: run.multi == multiBatch}
	if l := fn.lib; l != nil {
		call.forge = l.forge || l.echoes && strings.Contains(strings.ToLower(arg), "not found")
	}
	return fzOp{hook: args, ref: args, desc: fzDescribe(args), fcall: call}
}

// fnChangeOp is the caller's FUNCTION LOAD [REPLACE], DELETE or FLUSH
// [SYNC], with the subcommand spelled as the input says. In sub-batches
// (variantSplit) one inside a MULTI the caller wrote is ECHO instead: the
// oracle follows what the server holds from sub-batch to sub-batch, and a
// queued FUNCTION command takes effect only at an EXEC.
func (run *fzRun) fnChangeOp(c, spell byte) fzOp {
	if run.variant == variantSplit && run.multi != multiNone {
		args := []interface{}{"echo", "function " + fzSecret}
		return fzOp{hook: args, ref: args, desc: fzDescribe(args)}
	}
	var args []interface{}
	ch := &fzFnChange{}
	switch c % 9 {
	case 0, 1, 2, 3, 4:
		ch.sub = "load"
		lib := []*fzLib{fzFnLib, fzFnLibV2, fzFnLib, fzPlainLib, fzEchoLib}[c%9]
		ch.lib = lib
		args = []interface{}{fzName("function", spell), fzName("load", spell>>2)}
		if c%9 != 2 {
			args = append(args, fzName("replace", spell>>4))
		}
		args = append(args, lib.code)
	case 5, 6:
		ch.sub = "delete"
		ch.lib = []*fzLib{fzFnLib, fzPlainLib}[c%9-5]
		args = []interface{}{fzName("function", spell), fzName("delete", spell>>2), ch.lib.name}
	default:
		ch.sub = "flush"
		args = []interface{}{fzName("function", spell), fzName("flush", spell>>2)}
		if c%9 == 8 {
			args = append(args, fzName("sync", spell>>4))
		}
	}
	desc := fzDescribe(args)
	if ch.lib != nil && ch.sub == "load" {
		desc = fmt.Sprintf("%v %v ... <%s code>", args[0], args[1], ch.lib.name)
		if ch.lib == fzFnLibV2 {
			desc = fmt.Sprintf("%v %v ... <fzlib v2 code>", args[0], args[1])
		}
	}
	return fzOp{hook: args, ref: args, desc: desc, fnChange: ch}
}

// applyFnChange is what the hook records of the caller's successful
// FUNCTION command (its reply, QUEUED included, was no error): a load of a
// registered library's name makes it believe the server holds that library
// (in whatever version the caller loaded), a delete that it does not, a
// flush that it holds none.
func (run *fzRun) applyFnChange(ch *fzFnChange) {
	switch ch.sub {
	case "load":
		if slices.ContainsFunc(fzRegisteredLibs, func(l *fzLib) bool { return l.name == ch.lib.name }) {
			run.fnBelief[ch.lib.name] = true
		}
	case "delete":
		run.fnBelief[ch.lib.name] = false
	default:
		run.resetBeliefs()
	}
}

func (run *fzRun) resetBeliefs() {
	for k := range run.fnBelief {
		run.fnBelief[k] = false
	}
}

// fnLacks reports, for every registered library, whether the hooked server
// lacks one of its functions now (no library there registers it).
func (run *fzRun) fnLacks() map[string]bool {
	libs, err := run.e.hkAdmin.FunctionList(run.ctx, redis.FunctionListQuery{}).Result()
	if err != nil {
		panic(err)
	}
	have := map[string]bool{}
	for _, l := range libs {
		for _, f := range l.Functions {
			have[strings.ToLower(f.Name)] = true
		}
	}
	out := map[string]bool{}
	for _, fn := range fzFns {
		if l := fn.lib; l != nil && l.registered && !have[strings.ToLower(fn.name)] {
			out[l.name] = true
		}
	}
	return out
}

// refLoad loads lib on the reference server as another client, as the hook
// promises it is there.
func (run *fzRun) refLoad(t *testing.T, lib *fzLib) {
	if err := run.e.refAdmin.FunctionLoadReplace(run.ctx, lib.code).Err(); err != nil {
		t.Fatal(err)
	}
}

// singleFn is the oracle of a single FCALL of a registered library's
// function, outside a MULTI the caller opened: the hook loads the library
// first unless it believes the server holds it (preload), and repairs a
// "Function not found" unless the forge rule applies (ifRepaired: the
// reference loads it first if the hook did repair, which the caller
// decides by the hook's Stats; a call refused before the server looks the
// function up, NOPERM for a key, is not repaired and must not be). Where
// the hook believes the server holds it, the server lacks it and the forge
// rule applies, the caller gets the server's reply: the reference loads
// nothing. Afterwards the hook believes the server holds it.
func (run *fzRun) singleFn(t *testing.T, call *fzFCall) (preload, ifRepaired *fzLib) {
	l := call.registeredLib()
	if l == nil {
		return nil, nil
	}
	lacks := run.fnLacks()[l.name]
	if run.hookOpen > 0 {
		// A MULTI of the caller's is open (on another connection):
		// nothing goes ahead of the call, but a miss proves it was not
		// queued, and is repaired.
		if lacks && !call.forge {
			run.fnBelief[l.name], run.fnPrimary = true, true
			return nil, l
		}
		return nil, nil
	}
	held := run.fnBelief[l.name]
	run.fnBelief[l.name] = true
	switch {
	case !held:
		run.fnPrimary = true
		return l, nil
	case lacks && !call.forge:
		run.fnPrimary = true
		return nil, l
	}
	return nil, nil
}

// batchFn is the oracle of the functions in a pipeline (tx false) or a
// transaction, given the hooked side's commands (already run). It returns
// the loads the reference's batch carries (insert[i]: just before op i)
// and the libraries the reference loads (as another client) after it.
//
// A pipeline is followed sub-batch by sub-batch, as the hook sends them
// (variantSplit: 3 commands, longer to keep a caller's MULTI with its
// EXEC; else one). In a sub-batch without a caller's FUNCTION command, sent
// while the hook believes no MULTI of the caller open: a library the hook
// does not believe held is loaded just before its first call (or before
// the MULTI the call is inside). One it believes held that the server
// lacks meets "Function not found": the hook retries after the sub-batch
// when nothing that may have taken effect follows the first miss (the
// reference: the load just before that library's first call outside a
// caller's MULTI), else the caller gets the miss (the reference loads
// nothing), which the oracle accepts only when the retry was not allowed.
// With a caller's FUNCTION command in the sub-batch, the calls before the
// first one get the load as above, those after it nothing, and no miss is
// retried.
//
// Transactions: once the server has accepted one of the hook's loads
// (fnPlan's txMayLoadFns), the load of each library the hook does not
// believe held goes inside, before its first call; otherwise nothing is
// added inside; the libraries called that the hook does not believe held,
// or that met a repairable miss, are loaded after it (unless it holds a caller's FUNCTION command, which makes the hook
// believe the server holds none).
func (run *fzRun) batchFn(t *testing.T, ops []fzOp, got []redis.Cmder, tx bool) (insert map[int][]*fzLib, after []*fzLib) {
	nf := func(i int) bool { return i < len(got) && testkit.ErrText(got[i].Err()) == "ERR Function not found" }
	// relevant: a call the hook repairs when it misses; a call refused
	// before the server looks the function up (NOPERM for a key) does not
	// count: it gets the same reply with or without the library, and
	// nothing is loaded for it.
	relevant := func(i int, l *fzLib) bool {
		c := ops[i].fcall
		return c.registeredLib() == l && !c.forge && !c.region &&
			(i >= len(got) || !strings.HasPrefix(testkit.ErrText(got[i].Err()), "NOPERM"))
	}
	if tx {
		fnChange := slices.ContainsFunc(ops, func(op fzOp) bool { return op.fnChange != nil })
		if run.fnPrimary && run.hookOpen == 0 {
			// Inside the MULTI, just before the first call of each
			// library the hook does not believe held (before the
			// caller's first FUNCTION command: none after it).
			stop := slices.IndexFunc(ops, func(op fzOp) bool { return op.fnChange != nil })
			if stop < 0 {
				stop = len(ops)
			}
			// An aborted transaction (EXECABORT: a command refused while
			// queued) took the load with it: the hook then believes
			// nothing new, and loads after it as below.
			aborted := slices.ContainsFunc(got, func(c redis.Cmder) bool {
				return strings.HasPrefix(testkit.ErrText(c.Err()), "EXECABORT") || errors.Is(c.Err(), redis.TxFailedErr)
			})
			insert = map[int][]*fzLib{}
			for _, l := range fzRegisteredLibs {
				if run.fnBelief[l.name] {
					continue
				}
				for i, op := range ops[:stop] {
					if op.fcall.registeredLib() == l {
						insert[i] = append(insert[i], l)
						run.fnBelief[l.name] = !aborted
						break
					}
				}
			}
		}
		for _, l := range fzRegisteredLibs {
			called, missed := false, false
			for i, op := range ops {
				called = called || op.fcall.registeredLib() == l
				missed = missed || relevant(i, l) && nf(i)
			}
			if !called {
				continue
			}
			if missed {
				run.fnBelief[l.name] = false
			}
			if !fnChange && !run.fnBelief[l.name] {
				after = append(after, l)
				run.fnBelief[l.name], run.fnPrimary = true, true
			}
		}
		if fnChange {
			run.resetBeliefs()
		}
		return insert, after
	}
	lacks := run.fnLacking
	insert = map[int][]*fzLib{}
	for _, ch := range run.chunks(ops) {
		open := run.hookOpen > 0
		fnChange := false
		for i := ch[0]; i < ch[1]; i++ {
			fnChange = fnChange || ops[i].fnChange != nil
			if fzIsExecOrDiscard(ops[i]) && ops[i].regionAt < 0 && run.hookOpen > 0 {
				run.hookOpen-- // it ends a MULTI the caller opened before
			}
		}
		if !open && fnChange {
			// The calls before the caller's first FUNCTION command get
			// the load ahead of them as in any pipeline; those after it
			// go as written; no miss is retried.
			stop := ch[1]
			for i := ch[0]; i < ch[1]; i++ {
				if ops[i].fnChange != nil {
					stop = i
					break
				}
			}
			for _, l := range fzRegisteredLibs {
				if run.fnBelief[l.name] {
					continue
				}
				for i := ch[0]; i < stop; i++ {
					if ops[i].fcall.registeredLib() == l {
						at := i
						if ops[i].regionAt >= 0 {
							at = ops[i].regionAt
						}
						insert[at] = append(insert[at], l)
						run.fnBelief[l.name], lacks[l.name], run.fnPrimary = true, false, true
						break
					}
				}
			}
		}
		if open || fnChange {
			for _, l := range fzRegisteredLibs {
				for i := ch[0]; i < ch[1]; i++ {
					if relevant(i, l) && nf(i) {
						run.fnBelief[l.name] = false
					}
				}
			}
		} else {
		libs:
			for _, l := range fzRegisteredLibs {
				first, firstRel := -1, -1
				for i := ch[0]; i < ch[1]; i++ {
					if ops[i].fcall.registeredLib() == l && first < 0 {
						first = i
						if ops[i].regionAt >= 0 {
							first = ops[i].regionAt
						}
					}
					if relevant(i, l) && firstRel < 0 {
						firstRel = i
					}
				}
				switch {
				case first < 0:
					continue
				case !run.fnBelief[l.name]:
					insert[first] = append(insert[first], l)
					run.fnBelief[l.name], lacks[l.name], run.fnPrimary = true, false, true
					continue
				case !lacks[l.name] || firstRel < 0:
					continue // held; or only calls the hook never repairs
				case !nf(firstRel):
					insert[firstRel] = append(insert[firstRel], l) // retried
					lacks[l.name], run.fnPrimary = false, true
					continue
				}
				run.fnBelief[l.name] = false
				// The caller got the miss: allowed only when something
				// after the first miss in the sub-batch may have taken
				// effect (README: the retry must not reorder): a command
				// that succeeded, or a script or function call (its error
				// reply may follow writes) other than a repairable miss.
				for j := firstRel + 1; j < ch[1]; j++ {
					missed := ops[j].fcall.registeredLib() != nil && !ops[j].fcall.forge && !ops[j].fcall.region && nf(j)
					if missed {
						continue
					}
					if err := got[j].Err(); err == nil || err == redis.Nil || fzScriptOrFn(ops[j]) {
						continue libs
					}
				}
				run.fail(t, "a pipeline's repairable Function not found reached the caller with nothing after it that took effect", testkit.RenderAll(got, nil), "a retry")
			}
		}
		// The caller's FUNCTION commands (none inside a MULTI in
		// variantSplit), in order.
		for i := ch[0]; i < ch[1]; i++ {
			op := ops[i]
			if op.fnChange == nil || i >= len(got) || got[i].Err() != nil {
				continue
			}
			if op.regionAt < 0 {
				run.applyFnChange(op.fnChange)
			}
			switch ch := op.fnChange; {
			case ch.sub == "flush":
				for k := range lacks {
					lacks[k] = true
				}
				for _, l := range fzRegisteredLibs {
					lacks[l.name] = true
				}
			case ch.sub == "delete" && ch.lib == fzFnLib:
				lacks[fzFnLib.name] = true
			case ch.sub == "load" && ch.lib != fzPlainLib:
				lacks[ch.lib.name] = false
			}
		}
	}
	return insert, nil
}

// chunks are the sub-batches the hook sends a pipeline of ops as.
func (run *fzRun) chunks(ops []fzOp) [][2]int {
	const n = 3 // WithMaxBatchSize in variantSplit
	if run.variant != variantSplit || len(ops) <= n {
		return [][2]int{{0, len(ops)}}
	}
	var out [][2]int
	for start := 0; start < len(ops); {
		end := min(start+n, len(ops))
		for end < len(ops) && ops[end].regionAt >= 0 && ops[end].regionAt < end {
			end++
		}
		out = append(out, [2]int{start, end})
		start = end
	}
	return out
}

// fzRegions sets each op's regionAt as the hook reads a batch: the index of
// the MULTI the caller wrote in it that the op is inside (the MULTI and its
// EXEC or DISCARD included; a MULTI inside an open one opens none), or -1.
func fzRegions(ops []fzOp) {
	region := -1
	for i := range ops {
		ops[i].regionAt = -1
		switch name := fzOpName(ops[i]); name {
		case "multi":
			if region < 0 {
				region = i
			}
			ops[i].regionAt = region
		case "exec", "discard":
			ops[i].regionAt = region
			region = -1
		default:
			ops[i].regionAt = region
		}
		if c := ops[i].fcall; c != nil {
			c.region = ops[i].regionAt >= 0
		}
	}
}

func fzOpName(op fzOp) string {
	if len(op.hook) == 0 {
		return ""
	}
	return strings.ToLower(testkit.Text(op.hook[0]))
}

func fzIsExecOrDiscard(op fzOp) bool {
	name := fzOpName(op)
	return name == "exec" || name == "discard"
}

// noteHookMulti follows the hook's count of MULTIs the caller opened, from
// a single command and what it got.
func (run *fzRun) noteHookMulti(op fzOp, err error) {
	switch fzOpName(op) {
	case "multi":
		if err == nil {
			run.hookOpen++
		}
	case "exec", "discard":
		if run.hookOpen > 0 {
			run.hookOpen--
		}
	}
}

// registerFzLibs gives the hook the registered libraries.
func registerFzLibs(t *testing.T, h *scripthook.Hook) {
	for _, l := range fzRegisteredLibs {
		if _, err := h.RegisterLibrary(l.code); err != nil {
			t.Fatal(err)
		}
	}
}

// fzFunctionState renders the libraries a server holds, with their code.
func fzFunctionState(ctx context.Context, c *redis.Client) string {
	libs, err := c.FunctionList(ctx, redis.FunctionListQuery{WithCode: true}).Result()
	if err != nil {
		return "FUNCTION LIST: " + err.Error()
	}
	out := make([]string, 0, len(libs))
	for _, l := range libs {
		out = append(out, l.Name+"="+fmt.Sprintf("%q", l.Code))
	}
	slices.Sort(out)
	return " functions=" + strings.Join(out, ",")
}

// fzScriptOrFn reports a script or function command (EVAL*, EVALSHA*,
// FCALL*), as the caller wrote it.
func fzScriptOrFn(op fzOp) bool {
	if len(op.hook) == 0 {
		return false
	}
	name := fzOpName(op)
	return strings.HasPrefix(name, "eval") || strings.HasPrefix(name, "fcall")
}
