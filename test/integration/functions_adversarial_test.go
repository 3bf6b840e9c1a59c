package integration_test

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
	"github.com/scripthook/scripthook/internal/redistest"
	"github.com/scripthook/scripthook/internal/testkit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Functions, adversarially: every case runs a hooked client on one server
// and a plain client on a twin server that holds the registered libraries,
// loaded by hand (what the hook promises: the library is there before the
// first call), and compares every reply, every error and the side effects
// (the data, FUNCTION LIST WITHCODE, the server's command counts).

// advLib has a function for every kind of reply a function can give. Each
// function first counts its run in KEYS[1], so the data shows how often it
// ran. (Its code never spells the server's missing-function text.)
const advLib = "#!lua name=adv\n" +
	"redis.register_function('fa_runs', function(keys, args) redis.call('INCR', keys[1]) return #args end)\n" +
	"redis.register_function('fa_nokeys', function(keys, args) return {#keys, #args} end)\n" +
	"redis.register_function('fa_boom', function(keys) redis.call('INCR', keys[1]) error('boom') end)\n" +
	"redis.register_function('fa_custom', function(keys) redis.call('INCR', keys[1]) return redis.error_reply('MYERR custom') end)\n" +
	"redis.register_function('fa_echo', function(keys, args) redis.call('INCR', keys[1]) return redis.error_reply(args[1]) end)\n" +
	"redis.register_function('fa_cat', function(keys, args) redis.call('INCR', keys[1]) return redis.error_reply(args[1] .. args[2]) end)\n" +
	"redis.register_function('fa_fromkey', function(keys) redis.call('INCR', keys[1]) return redis.error_reply(redis.call('GET', keys[2])) end)\n" +
	"redis.register_function('fa_wrongtype', function(keys) return redis.call('INCR', keys[1]) end)\n" +
	"redis.register_function('fa_status', function(keys) redis.call('INCR', keys[1]) return redis.status_reply('FINE') end)\n" +
	"redis.register_function{function_name='fa_ro', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}\n" +
	"redis.register_function('fa_rw', function(keys) return redis.call('INCR', keys[1]) end)\n" +
	"redis.register_function('fa_map', function(keys) redis.setresp(3) return redis.call('HGETALL', keys[1]) end)\n"

// forgerLib counts its run and answers with the server's own text.
const forgerLib = "#!lua name=forger\n" +
	"redis.register_function('fa_forge', function(keys) redis.call('INCR', keys[1]) return redis.error_reply('ERR Function not found') end)"

// otherLib is loaded by hand only, never registered.
const otherLib = "#!lua name=other\nredis.register_function('fa_other', function(keys) return redis.call('INCR', keys[1]) end)"

// fnTwin is a hooked client on one server and a plain client on a twin
// that holds the registered libraries.
type fnTwin struct {
	ref, hk *testkit.Rig
	h       *scripthook.Hook
	libs    []string
}

func newFnTwin(t *testing.T, base *redis.Options, libs ...string) *fnTwin {
	t.Helper()
	h := quiet()
	for _, l := range libs {
		_, err := h.RegisterLibrary(l)
		require.NoError(t, err)
	}
	w := &fnTwin{
		ref:  testkit.RigOn(t, redistest.Start(t), base, nil),
		hk:   testkit.RigOn(t, redistest.Start(t), base, h),
		h:    h,
		libs: libs,
	}
	w.loadRef(t)
	return w
}

// loadRef loads the registered libraries on the reference by hand.
func (w *fnTwin) loadRef(t *testing.T) {
	t.Helper()
	for _, l := range w.libs {
		require.NoError(t, w.ref.Admin.FunctionLoadReplace(context.Background(), l).Err())
	}
}

// flushBoth is another client's FUNCTION FLUSH on both servers; the
// reference gets its libraries back by hand (the hook promises to repair).
func (w *fnTwin) flushBoth(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, w.hk.Admin.FunctionFlush(ctx).Err())
	require.NoError(t, w.ref.Admin.FunctionFlush(ctx).Err())
	w.loadRef(t)
}

// same runs f with the reference's plain client and the hooked client and
// asserts the same results and the same data and functions afterwards.
func (w *fnTwin) same(t *testing.T, what string, f func(ctx context.Context, c *redis.Client) []string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := f(ctx, w.ref.Plain)
	got := f(ctx, w.hk.Hooked)
	assert.Equal(t, want, got, "%s: replies", what)
	w.sameState(t, what)
	return got
}

// sameState compares the data and the function libraries of the servers.
func (w *fnTwin) sameState(t *testing.T, what string) {
	t.Helper()
	assert.Equal(t, dataOf(t, w.ref.Admin), dataOf(t, w.hk.Admin), "%s: data", what)
	// The hook loads a library where one of its functions is called: each
	// library the hooked server holds is the one the reference holds.
	ref := map[string]string{}
	for _, l := range functionsOf(t, w.ref.Admin) {
		ref[strings.Fields(l)[0]] = l
	}
	for _, l := range functionsOf(t, w.hk.Admin) {
		assert.Equal(t, ref[strings.Fields(l)[0]], l, "%s: FUNCTION LIST", what)
	}
}

// dataOf renders every key of db 0 with its DUMP.
func dataOf(t *testing.T, c *redis.Client) []string {
	t.Helper()
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	require.NoError(t, err)
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		d, err := c.Dump(ctx, k).Result()
		require.NoError(t, err)
		out = append(out, k+"="+hex.EncodeToString([]byte(d)))
	}
	return out
}

// functionsOf renders FUNCTION LIST WITHCODE.
func functionsOf(t *testing.T, c *redis.Client) []string {
	t.Helper()
	libs, err := c.FunctionList(context.Background(), redis.FunctionListQuery{WithCode: true}).Result()
	require.NoError(t, err)
	var out []string
	for _, l := range libs {
		var fs []string
		for _, f := range l.Functions {
			fs = append(fs, fmt.Sprintf("%s%v", f.Name, f.Flags))
		}
		sort.Strings(fs)
		out = append(out, fmt.Sprintf("%s %s %v %q", l.Name, l.Engine, fs, l.Code))
	}
	sort.Strings(out)
	return out
}

func do(ctx context.Context, c *redis.Client, args ...interface{}) string {
	return testkit.Render(c.Do(ctx, args...))
}

func fnLoads(t *testing.T, r *testkit.Rig) int64 { return r.Calls(t, "function|load") }

// 1. FCALL and FCALL_RO in every spelling go-redis can write: command and
// function names in any case, as []byte; one load, before the first.
func TestFnAdvSpellings(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib, advLib)
	w.same(t, "spellings", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			do(ctx, c, "FcAlL", "FINCR", 1, "k", 1),
			do(ctx, c, []byte("fcall"), []byte("fIncr"), "1", []byte("k"), 2),
			do(ctx, c, "FCALL_RO", "FGET", 1, "k"),
			do(ctx, c, []byte("fCaLl_rO"), "fget", int64(1), "k"),
			testkit.Render(c.FCall(ctx, "FA_RUNS", []string{"runs"}, "a", "b")),
			testkit.Render(c.FCallRO(ctx, "Fa_Ro", []string{"k"})),
		}
	})
	assert.Equal(t, int64(2), fnLoads(t, w.hk), "one load per library")
	assert.Equal(t, int64(0), w.h.Stats().FunctionNotFoundPassed)
}

// 2. Malformed numkeys: the server looks the function up first, so with the
// library loaded the caller gets the server's numkeys error, also when it is
// the first call on the server.
func TestFnAdvMalformedNumKeys(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	w.same(t, "malformed", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			do(ctx, c, "fcall", "fincr", -1, "k", 1),
			do(ctx, c, "fcall", "fincr", "abc", "k", 1),
			do(ctx, c, "fcall", "fincr", 5, "k", 1),
			do(ctx, c, "fcall", "fincr", "1", "k", 1),
			do(ctx, c, "fcall", "fincr", int64(1)<<40, "k"),
			do(ctx, c, "fcall_ro", "fget", -1),
			do(ctx, c, "fcall", "fincr"),
		}
	})
	// In a pipeline on a fresh server too.
	w2 := newFnTwin(t, nil, counterLib)
	w2.same(t, "malformed pipeline", func(ctx context.Context, c *redis.Client) []string {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.Do(ctx, "fcall", "fincr", -1, "k", 1)
			p.Do(ctx, "fcall", "fincr", "x", "k", 1)
			return nil
		})
		return testkit.RenderAll(cmds, err)
	})
}

// 3. Zero keys, nil keys, no arguments.
func TestFnAdvZeroKeys(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, advLib)
	w.same(t, "zero keys", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			testkit.Render(c.FCall(ctx, "fa_nokeys", nil)),
			testkit.Render(c.FCall(ctx, "fa_nokeys", []string{}, "a")),
			do(ctx, c, "fcall", "fa_nokeys", 0),
			do(ctx, c, "fcall_ro", "fa_nokeys", 0, "x", "y"),
		}
	})
}

// 4. Functions that fail at run time: each error is the function's, given
// once; the function ran once; nothing is loaded again.
func TestFnAdvRuntimeErrors(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, advLib)
	ctx := t.Context()
	require.NoError(t, w.hk.Admin.HSet(ctx, "h", "f", "v").Err())
	require.NoError(t, w.ref.Admin.HSet(ctx, "h", "f", "v").Err())
	got := w.same(t, "runtime errors", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			testkit.Render(c.FCall(ctx, "fa_boom", []string{"n"})),
			testkit.Render(c.FCall(ctx, "fa_custom", []string{"n"})),
			testkit.Render(c.FCall(ctx, "fa_wrongtype", []string{"h"})),
			testkit.Render(c.FCall(ctx, "fa_status", []string{"n"})),
			testkit.Render(c.FCallRO(ctx, "fa_rw", []string{"n"})), // a write under FCALL_RO
			testkit.Render(c.FCall(ctx, "fa_echo", []string{"n"}, "ERR function not found")),
			testkit.Render(c.FCall(ctx, "fa_echo", []string{"n"}, "Function not found")),
		}
	})
	assert.Contains(t, got[0], "boom")
	assert.Equal(t, "5", w.hk.Admin.Get(ctx, "n").Val())
	assert.Equal(t, int64(1), fnLoads(t, w.hk))
	st := w.h.Stats()
	assert.Equal(t, int64(0), st.FunctionRepaired+st.FunctionNotFoundPassed, "%+v", st)
}

// 5. A function whose own reply is the server's text is never repaired or
// retried: it runs exactly once per call, also right after another client's
// flush (where the hook cannot tell: the caller gets the server's reply).
func TestFnAdvForgedRunsOnce(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, forgerLib)
	ctx := t.Context()
	w.same(t, "forged", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			testkit.Render(c.FCall(ctx, "fa_forge", []string{"runs"})),
			testkit.Render(c.FCall(ctx, "fa_forge", []string{"runs"})),
			testkit.Render(c.Do(ctx, "FCALL", "FA_FORGE", 1, "runs")),
		}
	})
	assert.Equal(t, "3", w.hk.Admin.Get(ctx, "runs").Val())
	assert.Equal(t, int64(1), fnLoads(t, w.hk))
	assert.Equal(t, int64(3), w.hk.Calls(t, "fcall"))
	cmds, err := w.hk.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fa_forge", []string{"runs"})
		p.FCall(ctx, "fa_forge", []string{"runs"})
		return nil
	})
	require.Error(t, err)
	assert.Equal(t, []string{"<nil> | " + noFunction, "<nil> | " + noFunction, "exec: " + noFunction}, testkit.RenderAll(cmds, err))
	assert.Equal(t, "5", w.hk.Admin.Get(ctx, "runs").Val(), "a pipeline retried nothing")
	st := w.h.Stats()
	assert.Equal(t, int64(0), st.FunctionRepaired)
}

// 6. A function that echoes strings into its error reply: a call that makes
// it answer the server's text runs once, however the text reaches it (one
// argument, two arguments joined, a key's value), singly and in pipelines,
// each right after a call that showed the library is there.
func TestFnAdvEchoedRunsOnce(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, advLib)
	ctx := t.Context()
	for _, c := range []*redis.Client{w.ref.Admin, w.hk.Admin} {
		require.NoError(t, c.Set(ctx, "msg", noFunction, 0).Err())
	}
	type forgingCall struct {
		name string
		call func(ctx context.Context, p redis.Cmdable) redis.Cmder
	}
	forging := []forgingCall{
		{"one argument", func(ctx context.Context, p redis.Cmdable) redis.Cmder {
			return p.FCall(ctx, "fa_echo", []string{"e"}, noFunction)
		}},
		{"bytes", func(ctx context.Context, p redis.Cmdable) redis.Cmder {
			return p.FCall(ctx, "fa_echo", []string{"e"}, []byte(noFunction))
		}},
		{"joined", func(ctx context.Context, p redis.Cmdable) redis.Cmder {
			return p.FCall(ctx, "fa_cat", []string{"e"}, "ERR Function not", " found")
		}},
		{"from a key", func(ctx context.Context, p redis.Cmdable) redis.Cmder {
			return p.FCall(ctx, "fa_fromkey", []string{"e", "msg"})
		}},
	}
	for _, fc := range forging {
		name, call := fc.name, fc.call
		for _, batch := range []bool{false, true} {
			what := fmt.Sprintf("%s batch=%v", name, batch)
			w.same(t, what, func(ctx context.Context, c *redis.Client) []string {
				out := []string{testkit.Render(c.FCall(ctx, "fa_runs", []string{"r"}))}
				if !batch {
					return append(out, testkit.Render(call(ctx, c)))
				}
				cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
					call(ctx, p)
					return nil
				})
				return append(out, testkit.RenderAll(cmds, err)...)
			})
		}
	}
	assert.Equal(t, "8", w.hk.Admin.Get(ctx, "e").Val(), "each forging call ran once")
	// A forged miss in a pipeline leaves the library unsure: the next call
	// loads it again (one per pipeline case); a single call's is checked
	// at once.
	assert.LessOrEqual(t, fnLoads(t, w.hk), int64(1+4))
	assert.Equal(t, int64(0), w.h.Stats().FunctionRepaired)
	// A real miss of such a library is still repaired.
	w.flushBoth(t)
	w.same(t, "flushed", func(ctx context.Context, c *redis.Client) []string {
		out := []string{testkit.Render(c.FCall(ctx, "fa_runs", []string{"r"}))}
		require.NoError(t, w.hk.Admin.FunctionFlush(ctx).Err())
		if c == w.ref.Plain {
			w.loadRef(t)
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fa_runs", []string{"r"})
			return nil
		})
		return append(out, testkit.RenderAll(cmds, err)...)
	})
	assert.Equal(t, int64(1), w.h.Stats().FunctionRepaired, "the pipeline's miss")
}

// 6b. A pipeline's retry never reorders: a function that wrote and then
// failed, after the miss, took effect, so the miss is not re-sent after it.
func TestFnAdvPipelineRetryOrder(t *testing.T) {
	t.Parallel()
	h := quiet()
	for _, l := range []string{counterLib, advLib} {
		_, err := h.RegisterLibrary(l)
		require.NoError(t, err)
	}
	r := testkit.NewRig(t, h)
	ctx := t.Context()
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"x"}, 1).Err())
	require.NoError(t, r.Hooked.FCall(ctx, "fa_runs", []string{"x"}).Err())
	// Another client deletes one library; the hook believes it is there.
	require.NoError(t, r.Admin.FunctionDelete(ctx, "counter").Err())
	require.NoError(t, r.Admin.Set(ctx, "n", 0, 0).Err())
	cmds, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"n"}, 10)
		p.FCall(ctx, "fa_boom", []string{"n"}) // INCR n, then an error
		return nil
	})
	require.Error(t, err)
	assert.EqualError(t, cmds[0].Err(), noFunction, "not re-sent after a call that took effect")
	assert.Contains(t, cmds[1].Err().Error(), "boom")
	assert.Equal(t, "1", r.Admin.Get(ctx, "n").Val())
	n, err := r.Hooked.FCall(ctx, "fincr", []string{"n"}, 10).Int64()
	require.NoError(t, err, "the next call loads it")
	assert.Equal(t, int64(11), n)
}

// 7. A function of a library the hook was not given reaches the caller as
// without the hook, before and after a flush; the hook loads nothing for it
// and counts nothing.
func TestFnAdvUnregisteredLibrary(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	ctx := t.Context()
	for _, c := range []*redis.Client{w.ref.Admin, w.hk.Admin} {
		require.NoError(t, c.FunctionLoad(ctx, otherLib).Err())
	}
	w.hk.ResetStats(t)
	w.same(t, "other", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCall(ctx, "fa_other", []string{"o"}))}
	})
	assert.Equal(t, int64(0), fnLoads(t, w.hk))
	require.NoError(t, w.hk.Admin.FunctionFlush(ctx).Err())
	require.NoError(t, w.ref.Admin.FunctionFlush(ctx).Err())
	w.loadRef(t)
	w.same(t, "other flushed", func(ctx context.Context, c *redis.Client) []string {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fa_other", []string{"o"})
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		return append(testkit.RenderAll(cmds, err), testkit.Render(c.FCall(ctx, "fa_other", []string{"o"})))
	})
	assert.Equal(t, int64(0), w.h.Stats().FunctionNotFoundPassed)
}

// 8. Two registered libraries, called singly, in pipelines and in
// transactions; one load each.
func TestFnAdvTwoLibraries(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib, advLib)
	w.same(t, "two", func(ctx context.Context, c *redis.Client) []string {
		out := []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fa_runs", []string{"r"})
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.FCallRO(ctx, "fa_ro", []string{"k"})
			return nil
		})
		out = append(out, testkit.RenderAll(cmds, err)...)
		cmds, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fa_runs", []string{"r"})
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		return append(out, testkit.RenderAll(cmds, err)...)
	})
	assert.Equal(t, int64(2), fnLoads(t, w.hk))
}

// 9. RegisterLibrary accepts what the server loads and refuses what the
// server refuses, header-wise (the code of each has a literal function).
func TestFnAdvRegisterHeaders(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	admin := testkit.Client(t, srv, nil)
	ctx := t.Context()
	body := "\nredis.register_function('hf_%d', function() return 1 end)"
	headers := []string{
		"#!lua name=h_plain",
		"#!LUA name=h_upper_engine",
		"#!Lua    name=h_spaces   ",
		"#!lua NAME=h_upper_param",
		"#!lua Name=h_mixed_param",
		"#! lua name=h_space_engine",
		"#!lua name=a name=b",
		"#!lua name=h-dash",
		"#!lua name=",
		"#!lua",
		"#!lua name=h_x extra=1",
		"#!lua name=h_cr\r",
		"#!lua\tname=h_tab",
		"#!js name=h_js",
		"#!lua name=h_ünï",
	}
	for i, hd := range headers {
		code := hd + fmt.Sprintf(body, i)
		serverErr := admin.FunctionLoad(ctx, code).Err()
		h := quiet()
		_, hookErr := h.RegisterLibrary(code)
		assert.Equal(t, serverErr == nil, hookErr == nil, "%q: server %v, hook %v", hd, serverErr, hookErr)
	}
}

// 10. RegisterLibrary's other edge inputs.
func TestFnAdvRegisterEdges(t *testing.T) {
	t.Parallel()
	h := quiet()
	// No literal function name.
	_, err := h.RegisterLibrary("#!lua name=nolit\nlocal n = 'x'\nredis.register_function(n, function() return 1 end)")
	assert.Error(t, err)
	// Flags, table form, name after the callback.
	name, err := h.RegisterLibrary("#!lua name=tbl\nredis.register_function{callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}, function_name='tbl_get'}")
	require.NoError(t, err)
	assert.Equal(t, "tbl", name)
	// The same function name in another library, in another case.
	_, err = h.RegisterLibrary("#!lua name=dup\nredis.register_function('TBL_GET', function() return 1 end)")
	assert.Error(t, err)
	// The same code again; changed code; changed code that drops a function
	// and adds another: the dropped one is free for another library.
	code1 := "#!lua name=ver\nredis.register_function('ver_a', function() return 'a1' end)"
	code2 := "#!lua name=ver\nredis.register_function('ver_b', function() return 'b2' end)"
	for _, c := range []string{code1, code1, code2} {
		name, err = h.RegisterLibrary(c)
		require.NoError(t, err)
		assert.Equal(t, "ver", name)
	}
	_, err = h.RegisterLibrary("#!lua name=ver2\nredis.register_function('ver_a', function() return 'a2' end)")
	assert.NoError(t, err, "ver_a is no longer ver's")
	// Library names differ by case: two libraries.
	_, err = h.RegisterLibrary("#!lua name=VER\nredis.register_function('ver_c', function() return 'c' end)")
	assert.NoError(t, err)

	r := testkit.NewRig(t, h)
	ctx := t.Context()
	assert.Equal(t, "b2", r.Hooked.FCall(ctx, "ver_b", nil).Val())
	assert.Equal(t, "a2", r.Hooked.FCall(ctx, "ver_a", nil).Val())
	assert.Equal(t, "c", r.Hooked.FCall(ctx, "VER_C", nil).Val())
	assert.EqualError(t, r.Hooked.FCall(ctx, "ver_nope", nil).Err(), noFunction)
}

// 11. Changed code replaces the library before the next call, singly and in
// a pipeline; FUNCTION LIST WITHCODE shows the new code, as on a server the
// new code was loaded on by hand.
func TestFnAdvChangedCode(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	ctx := t.Context()
	w.same(t, "v1", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
	})
	_, err := w.h.RegisterLibrary(counterLibV2)
	require.NoError(t, err)
	w.libs = []string{counterLibV2}
	w.loadRef(t)
	w.same(t, "v2 pipeline", func(ctx context.Context, c *redis.Client) []string {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		return testkit.RenderAll(cmds, err)
	})
	_, err = w.h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	w.libs = []string{counterLib}
	w.loadRef(t)
	w.same(t, "v1 again, single", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
	})
	_ = ctx
	assert.Equal(t, int64(3), fnLoads(t, w.hk))
}

// 12. RESP3 clients.
func TestFnAdvRESP3(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, &redis.Options{Protocol: 3}, advLib, counterLib)
	ctx := t.Context()
	for _, c := range []*redis.Client{w.ref.Admin, w.hk.Admin} {
		require.NoError(t, c.HSet(ctx, "hm", "a", "1").Err())
	}
	w.same(t, "resp3", func(ctx context.Context, c *redis.Client) []string {
		out := []string{
			testkit.Render(c.FCall(ctx, "fa_map", []string{"hm"})),
			testkit.Render(c.FCall(ctx, "fa_custom", []string{"n"})),
			testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)),
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fa_map", []string{"hm"})
			p.FCallRO(ctx, "fget", []string{"k"})
			return nil
		})
		return append(out, testkit.RenderAll(cmds, err)...)
	})
	w.flushBoth(t)
	w.same(t, "resp3 flushed", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
	})
}

// 13. An OnConnect that calls a registered function: on a fresh server the
// first connection's OnConnect works as with the library loaded, also when
// the connection is the one the hook's own load dials.
func TestFnAdvOnConnect(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	base := &redis.Options{
		PoolSize: 2,
		OnConnect: func(ctx context.Context, cn *redis.Conn) error {
			err := cn.FCall(ctx, "fincr", []string{"onconnect"}, 1).Err()
			mu.Lock()
			seen = append(seen, testkit.ErrText(err))
			mu.Unlock()
			return err
		},
	}
	w := newFnTwin(t, nil, counterLib)
	// Only the clients under test have the OnConnect.
	w.ref.Plain = testkit.Client(t, w.ref.Srv, base)
	w.hk.Hooked = testkit.Client(t, w.hk.Srv, base)
	w.hk.Hooked.AddHook(w.h)
	w.same(t, "onconnect", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)),
			testkit.Render(c.Get(ctx, "onconnect")),
		}
	})
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		assert.Equal(t, "<nil>", s, "every OnConnect's FCALL: %v", seen)
	}
}

// rewriteHook lower-cases a command's function name (before scripthook) or
// records what reaches the wire (after it).
type rewriteHook struct {
	mu    sync.Mutex
	names []string
	edit  bool
}

func (h *rewriteHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *rewriteHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.see(cmd)
		return next(ctx, cmd)
	}
}
func (h *rewriteHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.see(c)
		}
		return next(ctx, cmds)
	}
}
func (h *rewriteHook) see(cmd redis.Cmder) {
	args := cmd.Args()
	if h.edit && len(args) > 1 && strings.EqualFold(fmt.Sprint(args[0]), "fcall") {
		args[1] = strings.ToUpper(fmt.Sprint(args[1]))
	}
	if n := strings.ToLower(fmt.Sprint(args[0])); n != "fcall" && n != "function" {
		return
	}
	h.mu.Lock()
	h.names = append(h.names, testkit.FullName(cmd))
	h.mu.Unlock()
}

// 14. User hooks before and after scripthook: one that edits the function
// name before scripthook sees it; one after it sees the hook's load right
// before the first call.
func TestFnAdvUserHooks(t *testing.T) {
	t.Parallel()
	h := quiet()
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	r := testkit.NewRig(t, nil)
	before, after := &rewriteHook{edit: true}, &rewriteHook{}
	r.Hooked.AddHook(before)
	r.Hooked.AddHook(h)
	r.Hooked.AddHook(after)
	ctx := t.Context()
	n, err := r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
	cmds, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(2), cmds[0].(*redis.Cmd).Val())
	after.mu.Lock()
	defer after.mu.Unlock()
	assert.Equal(t, []string{"function|load", "fcall", "fcall"}, after.names, "the load right before the first call, none after")
	assert.Equal(t, int64(1), fnLoads(t, r))
}

// 15. PoolSize 1 with concurrent callers on a fresh server: one load, every
// call once, nobody stuck.
func TestFnAdvPoolSizeOne(t *testing.T) {
	t.Parallel()
	h := quiet()
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	r := testkit.RigOn(t, redistest.Start(t), &redis.Options{PoolSize: 1, PoolTimeout: 30 * time.Second}, h)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for round := 0; round < 3; round++ {
		r.ResetStats(t)
		var wg sync.WaitGroup
		errs := make(chan error, 24)
		for i := 0; i < 24; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if i%3 == 0 {
					_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
						p.FCall(ctx, "fincr", []string{"k"}, 1)
						return nil
					})
					errs <- err
					return
				}
				errs <- r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err()
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		assert.Equal(t, int64(1), fnLoads(t, r), "round %d", round)
		require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	}
	assert.Equal(t, "72", r.Admin.Get(ctx, "k").Val())
}

// 16. A context cancelled before the call: the caller's error, as plain;
// nothing reached the server; the next call works.
func TestFnAdvCancelledBefore(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	w.hk.ResetStats(t)
	w.same(t, "cancelled", func(ctx context.Context, c *redis.Client) []string {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		cmds, err := c.Pipelined(cctx, func(p redis.Pipeliner) error {
			p.FCall(cctx, "fincr", []string{"k"}, 1)
			return nil
		})
		out := testkit.RenderAll(cmds, err)
		cmds, err = c.TxPipelined(cctx, func(p redis.Pipeliner) error {
			p.FCall(cctx, "fincr", []string{"k"}, 1)
			return nil
		})
		out = append(out, testkit.RenderAll(cmds, err)...)
		return append(out, testkit.Render(c.FCall(cctx, "fincr", []string{"k"}, 1)))
	})
	assert.Equal(t, int64(0), fnLoads(t, w.hk))
	assert.Equal(t, int64(0), w.hk.Calls(t, "fcall"))
	w.same(t, "after", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
	})
}

// 17. A deadline that ends during the hook's load: the caller gets its
// context's error (a plain call blocked the same way times out too); the
// call did not run; afterwards everything works, the library loaded once
// more at most.
func TestFnAdvDeadlineDuringLoad(t *testing.T) {
	t.Parallel()
	h := quiet()
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	r := testkit.RigOn(t, redistest.Start(t), &redis.Options{ContextTimeoutEnabled: true}, h)
	ctx := t.Context()
	require.NoError(t, r.Admin.Do(ctx, "client", "pause", 3000, "write").Err())
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	herr := r.Hooked.FCall(short, "fincr", []string{"k"}, 1).Err()
	cancel()
	require.Error(t, herr)
	assert.True(t, errors.Is(herr, context.DeadlineExceeded) || testkit.IsNetErr(herr), "%v", herr)
	require.NoError(t, r.Admin.Do(ctx, "client", "unpause").Err())
	n, err := r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the timed-out call never ran")
	assert.LessOrEqual(t, fnLoads(t, r), int64(2))
	st := h.Stats()
	assert.Equal(t, int64(0), st.FunctionNotFoundPassed, "%+v", st)
}

// 18. A MULTI written by hand on a sticky connection: the calls inside go
// as written; a caller on another connection meanwhile is not affected.
func TestFnAdvHandMulti(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	w.same(t, "hand multi", func(ctx context.Context, c *redis.Client) []string {
		// A call first, so that the library is there (the hook promises no
		// load inside a MULTI the caller wrote).
		out := []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
		conn := c.Conn()
		defer conn.Close()
		out = append(out, testkit.Render(conn.Do(ctx, "multi")))
		out = append(out, testkit.Render(conn.Do(ctx, "FCALL", "fincr", 1, "k", 1)))
		out = append(out, testkit.Render(conn.FCallRO(ctx, "fget", []string{"k"})))
		out = append(out, testkit.Render(conn.Do(ctx, "exec")))
		return out
	})
	w.flushBoth(t)
	w.same(t, "other connection during a hand MULTI", func(ctx context.Context, c *redis.Client) []string {
		conn := c.Conn()
		defer conn.Close()
		out := []string{testkit.Render(conn.Do(ctx, "multi"))}
		out = append(out, testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))) // from the pool
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		out = append(out, testkit.RenderAll(cmds, err)...)
		out = append(out, testkit.Render(conn.Do(ctx, "discard")))
		return out
	})
}

// 19. Pipelines that mix FCALL, EVAL and the caller's own FUNCTION DELETE
// and LOAD: a call before the caller's FUNCTION command finds the library,
// as the hook promises for the first call on a server.
func TestFnAdvPipelineMixed(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	w.same(t, "mixed", func(ctx context.Context, c *redis.Client) []string {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.Eval(ctx, "return redis.call('INCR', KEYS[1]) -- "+strings.Repeat("e", 50), []string{"e"})
			p.FunctionDelete(ctx, "counter")
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.FunctionLoad(ctx, counterLibV2)
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		return testkit.RenderAll(cmds, err)
	})
	// The caller's v2 stands; the hook does not replace it before calls.
	w.same(t, "after", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
	})
	w.same(t, "restore", func(ctx context.Context, c *redis.Client) []string {
		dump, err := c.FunctionDump(ctx).Result()
		require.NoError(t, err)
		out := []string{
			testkit.Render(c.FunctionRestore(ctx, dump)),
			testkit.Render(c.Do(ctx, "function", "restore", dump, "replace")),
		}
		if c == w.ref.Plain {
			// After a RESTORE the hook loads the registered code before the
			// next call (README).
			w.loadRef(t)
		}
		return append(out, testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)))
	})
}

// 20. WATCH with the watched key changed by another client: aborted, the
// function did not run, as plain; the next transaction works.
func TestFnAdvWatchChanged(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	w.same(t, "watch", func(ctx context.Context, c *redis.Client) []string {
		admin := w.ref.Admin
		if c == w.hk.Hooked {
			admin = w.hk.Admin
		}
		// Make the hook show that the user may load (a single call first).
		out := []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
		err := c.Watch(ctx, func(tx *redis.Tx) error {
			if err := admin.Incr(ctx, "k").Err(); err != nil {
				return err
			}
			cmds, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.FCall(ctx, "fincr", []string{"k"}, 1)
				return nil
			})
			out = append(out, testkit.RenderAll(cmds, err)...)
			return err
		}, "k")
		out = append(out, testkit.ErrText(err))
		err = c.Watch(ctx, func(tx *redis.Tx) error {
			_, err := tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.FCall(ctx, "fincr", []string{"k"}, 1)
				return nil
			})
			return err
		}, "k")
		return append(out, testkit.ErrText(err))
	})
}

// 21. A user without function|load: where the library is there (loaded by
// an admin) calls run as plain; the hook tries one load, then stops.
func TestFnAdvACLNoFunctionLoad(t *testing.T) {
	t.Parallel()
	refSrv, hkSrv := redistest.Start(t), redistest.Start(t)
	ctx := t.Context()
	plain, _, _ := acl(t, refSrv, "noload", "~*", "+@all", "-function|load")
	_, hooked, h := acl(t, hkSrv, "noload", "~*", "+@all", "-function|load")
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	for _, s := range []*redistest.Server{refSrv, hkSrv} {
		require.NoError(t, testkit.Client(t, s, nil).FunctionLoad(ctx, counterLib).Err())
	}
	run := func(c *redis.Client) []string {
		out := []string{
			testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)),
			testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)),
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		out = append(out, testkit.RenderAll(cmds, err)...)
		cmds, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		return append(out, testkit.RenderAll(cmds, err)...)
	}
	assert.Equal(t, run(plain), run(hooked))
	calls, err := hkSrv.CommandCalls(ctx, "function|load")
	require.NoError(t, err)
	assert.LessOrEqual(t, calls, int64(2), "the admin's load and one refused load of the hook's")
	// After a flush: the server's reply, as plain without the library.
	for _, s := range []*redistest.Server{refSrv, hkSrv} {
		require.NoError(t, testkit.Client(t, s, nil).FunctionFlush(ctx).Err())
	}
	assert.Equal(t, run(plain), run(hooked))
}

// 22. A user without FCALL (or FCALL_RO): NOPERM, exactly as plain; the
// function never runs.
func TestFnAdvACLNoFCall(t *testing.T) {
	t.Parallel()
	refSrv, hkSrv := redistest.Start(t), redistest.Start(t)
	ctx := t.Context()
	plain, _, _ := acl(t, refSrv, "nofcall", "~*", "+@all", "-fcall", "-fcall_ro")
	_, hooked, h := acl(t, hkSrv, "nofcall", "~*", "+@all", "-fcall", "-fcall_ro")
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	require.NoError(t, testkit.Client(t, refSrv, nil).FunctionLoad(ctx, counterLib).Err())
	run := func(c *redis.Client) []string {
		out := []string{
			testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)),
			testkit.Render(c.FCallRO(ctx, "fget", []string{"k"})),
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.Set(ctx, "s", 1, 0)
			return nil
		})
		return append(out, testkit.RenderAll(cmds, err)...)
	}
	assert.Equal(t, run(plain), run(hooked))
	assert.Equal(t, int64(0), h.Stats().FunctionNotFoundPassed)
	n, err := testkit.Client(t, hkSrv, nil).Exists(ctx, "k").Result()
	require.NoError(t, err)
	assert.Equal(t, int64(0), n)
}

// 23. MaxRetries: -1 (none) and 5; a flush is repaired once either way.
func TestFnAdvMaxRetries(t *testing.T) {
	t.Parallel()
	for _, mr := range []int{-1, 0, 5} {
		w := newFnTwin(t, &redis.Options{MaxRetries: mr}, counterLib)
		for round := 0; round < 2; round++ {
			w.same(t, fmt.Sprintf("retries %d round %d", mr, round), func(ctx context.Context, c *redis.Client) []string {
				return []string{
					testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)),
					testkit.Render(c.FCallRO(ctx, "fget", []string{"k"})),
				}
			})
			w.flushBoth(t)
		}
		st := w.h.Stats()
		assert.Equal(t, int64(1), st.FunctionRepaired, "retries %d: %+v", mr, st)
		assert.Equal(t, int64(2), st.FunctionLoads, "retries %d: %+v", mr, st)
	}
}

// 24. Stats after each step, single calls, pipelines and transactions.
func TestFnAdvStats(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	st := func() [3]int64 {
		s := h.Stats()
		return [3]int64{s.FunctionLoads, s.FunctionRepaired, s.FunctionNotFoundPassed}
	}
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, [3]int64{1, 0, 0}, st(), "first call")
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, [3]int64{1, 0, 0}, st(), "second call")
	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, [3]int64{2, 1, 0}, st(), "repaired")
	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, [3]int64{3, 2, 0}, st(), "pipeline repaired by its retry")
	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	_, err = r.Hooked.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		return nil
	})
	require.Error(t, err)
	assert.Equal(t, int64(1), st()[2], "the transaction's miss reached the caller")
	assert.Equal(t, int64(4), st()[0], "and the load after it")
	assert.EqualError(t, r.Hooked.FCall(ctx, "nosuch", nil).Err(), noFunction)
	assert.Equal(t, int64(1), st()[2], "not a registered function: not counted")
}

// 25. The cost: one FUNCTION LOAD per library per server lifetime, however
// it is called, and none after; one more after a restart.
func TestFnAdvPreloadCost(t *testing.T) {
	t.Parallel()
	r, _ := fnRig(t)
	ctx := t.Context()
	r.ResetStats(t)
	for i := 0; i < 3; i++ {
		require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
		require.NoError(t, r.Hooked.FCallRO(ctx, "fget", []string{"k"}).Err())
		_, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.FCallRO(ctx, "FGET", []string{"k"})
			return nil
		})
		require.NoError(t, err)
		_, err = r.Hooked.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, int64(1), fnLoads(t, r), "after round %d", i)
	}
	assert.Equal(t, int64(3*3), r.Calls(t, "fcall"), "no call sent twice")
	assert.Equal(t, int64(3*2), r.Calls(t, "fcall_ro"), "no call sent twice")
	require.NoError(t, r.Srv.Restart())
	var err error
	for range 3 {
		if err = r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err(); err == nil {
			break
		}
	}
	require.NoError(t, err)
	require.NoError(t, r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Err())
	assert.Equal(t, int64(1), fnLoads(t, r), "one after the restart")
}

// 26. Transactions on a fresh server: the first one gets the server's error
// (the README's promise), and the next works; the first transaction ran
// its other commands once.
func TestFnAdvFirstTransaction(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx := t.Context()
	tx := func() ([]redis.Cmder, error) {
		return r.Hooked.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.Incr(ctx, "n")
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.FCallRO(ctx, "fget", []string{"k"})
			return nil
		})
	}
	cmds, err := tx()
	require.Error(t, err)
	assert.EqualError(t, cmds[1].Err(), noFunction)
	assert.EqualError(t, cmds[2].Err(), noFunction)
	cmds, err = tx()
	require.NoError(t, err)
	assert.Equal(t, "1", cmds[2].(*redis.Cmd).Val())
	assert.Equal(t, "2", r.Admin.Get(ctx, "n").Val())
	assert.Equal(t, int64(2), h.Stats().FunctionNotFoundPassed)
}

// 27. A function whose name is a number, written by go-redis from an int.
func TestFnAdvNumericFunctionName(t *testing.T) {
	t.Parallel()
	lib := "#!lua name=numeric\nredis.register_function('123', function(keys) return redis.call('INCR', keys[1]) end)"
	w := newFnTwin(t, nil, lib)
	w.same(t, "numeric", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			do(ctx, c, "fcall", 123, 1, "k"),
			do(ctx, c, "fcall", "123", 1, "k"),
		}
	})
}

// 28. Your own FUNCTION commands through the hooked client in every
// spelling; the next calls work as after the same commands on plain.
func TestFnAdvCallerFunctionSpellings(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	for _, cmd := range [][]interface{}{
		{"FUNCTION", "FLUSH"},
		{[]byte("function"), []byte("flush"), "async"},
		{"Function", "Delete", "counter"},
		{"function", "delete", []byte("counter")},
		{"function", "delete", "COUNTER"}, // library names keep their case: an error
	} {
		w.same(t, fmt.Sprint(cmd), func(ctx context.Context, c *redis.Client) []string {
			out := []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
			out = append(out, testkit.Render(c.Do(ctx, cmd...)))
			if c == w.ref.Plain {
				w.loadRef(t) // the hook promises the library for the next call
			}
			return append(out, testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)))
		})
	}
}

// 29. A changed registration while calls run concurrently: every call ran
// once, with one body or the other; afterwards the new one.
func TestFnAdvReregisterUnderLoad(t *testing.T) {
	t.Parallel()
	r, h := fnRig(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 8*50)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				errs <- r.Hooked.FCall(ctx, "fincr", []string{fmt.Sprintf("k%d-%d", w, i)}, 1).Err()
			}
		}()
	}
	for i := 0; i < 10; i++ {
		code := counterLib
		if i%2 == 0 {
			code = counterLibV2
		}
		_, err := h.RegisterLibrary(code)
		require.NoError(t, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	keys, err := r.Admin.Keys(ctx, "k*").Result()
	require.NoError(t, err)
	assert.Len(t, keys, 400)
	for _, k := range keys {
		v := r.Admin.Get(ctx, k).Val()
		assert.True(t, v == "1" || v == "2", "%s=%s", k, v)
	}
	n, err := r.Hooked.FCall(ctx, "fincr", []string{"last"}, 1).Int64()
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the last registered (v1) runs")
}

// 30. FCALL_RO with a write function and FCALL of a read-only one, all
// through pipelines and after a flush: as plain.
func TestFnAdvROFlagsAfterFlush(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, advLib)
	for round := 0; round < 2; round++ {
		w.same(t, fmt.Sprintf("ro round %d", round), func(ctx context.Context, c *redis.Client) []string {
			out := []string{
				testkit.Render(c.FCallRO(ctx, "fa_rw", []string{"n"})),
				testkit.Render(c.FCall(ctx, "fa_ro", []string{"n"})),
			}
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.FCallRO(ctx, "fa_rw", []string{"n"})
				p.FCallRO(ctx, "fa_ro", []string{"n"})
				return nil
			})
			return append(out, testkit.RenderAll(cmds, err)...)
		})
		w.flushBoth(t)
	}
}

// 32. A ClusterClient: each primary gets the library before the first call
// routed to it, once; the replies equal a plain ClusterClient's on the same
// cluster once the library was loaded by hand on every primary (other keys
// on the same primaries); after another client's FUNCTION FLUSH, single
// calls and pipelines are repaired, a transaction gets the server's error
// (README: nothing is added to a ClusterClient's transaction).
func TestFnAdvCluster(t *testing.T) {
	t.Parallel()
	r := testkit.NewClusterRig(t, testkit.StartCluster(t))
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	h := quiet()
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	hooked := r.Client(t, nil)
	require.NoError(t, h.Install(hooked))
	primaries := r.Primaries(t)
	tagsFor := func(prefix string) []string {
		var tags []string
		for _, p := range primaries {
			tags = append(tags, r.TagOn(t, prefix, p))
		}
		return tags
	}
	key := func(tag string) string { return "{" + tag + "}:k" }
	run := func(c *redis.ClusterClient, tags []string) []string {
		var out []string
		for _, tag := range tags {
			out = append(out, testkit.Render(c.FCall(ctx, "fincr", []string{key(tag)}, 1)))
			out = append(out, testkit.Render(c.FCallRO(ctx, "FGET", []string{key(tag)})))
		}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, tag := range tags {
				p.FCall(ctx, "fincr", []string{key(tag)}, 1)
				p.FCallRO(ctx, "fget", []string{key(tag)})
			}
			return nil
		})
		out = append(out, testkit.RenderAll(cmds, err)...)
		cmds, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{key(tags[0])}, 1)
			p.FCall(ctx, "fincr", []string{key(tags[0])}, 1)
			return nil
		})
		return append(out, testkit.RenderAll(cmds, err)...)
	}
	r.ResetStats(t)
	got := run(hooked, tagsFor("fnh"))
	for _, p := range primaries {
		assert.Equal(t, int64(1), r.Calls(t, "function|load", p), "one load on %s", p.Addr)
	}
	for _, p := range primaries {
		require.NoError(t, r.Admin[p.Addr].FunctionLoadReplace(ctx, counterLib).Err())
	}
	want := run(r.Plain, tagsFor("fnp"))
	assert.Equal(t, want, got)

	// Read-only routing: FCALL_RO on the replicas, which hold the library
	// by replication; the hook sends them nothing (a refused load would
	// cost a new connection per call: go-redis closes one on READONLY).
	h2 := quiet()
	_, err = h2.RegisterLibrary(counterLib)
	require.NoError(t, err)
	ro := r.Client(t, func(o *redis.ClusterOptions) { o.ReadOnly = true })
	require.NoError(t, h2.Install(ro))
	plainRO := r.Client(t, func(o *redis.ClusterOptions) { o.ReadOnly = true })
	for i := 0; i < 3; i++ {
		for _, tag := range tagsFor("fnh") {
			assert.Equal(t, testkit.Render(plainRO.FCallRO(ctx, "fget", []string{key(tag)})), testkit.Render(ro.FCallRO(ctx, "fget", []string{key(tag)})))
		}
	}
	assert.Equal(t, int64(0), h2.Stats().FunctionLoads, "%+v", h2.Stats())

	// Another client's flush on every primary.
	flush := func() {
		for _, p := range primaries {
			require.NoError(t, r.Admin[p.Addr].FunctionFlush(ctx).Err())
		}
	}
	flush()
	tags := tagsFor("fnh")
	single := testkit.Render(hooked.FCall(ctx, "fincr", []string{key(tags[0])}, 1))
	assert.Equal(t, "5 | <nil>", single, "repaired")
	cmds, err := hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{key(tags[1])}, 1)
		return nil
	})
	assert.Equal(t, []string{"3 | <nil>", "exec: <nil>"}, testkit.RenderAll(cmds, err), "repaired by the retry")
	cmds, err = hooked.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{key(tags[2])}, 1)
		return nil
	})
	assert.Equal(t, []string{"<nil> | " + noFunction, "exec: " + noFunction}, testkit.RenderAll(cmds, err))
	assert.Equal(t, "3 | <nil>", testkit.Render(hooked.FCall(ctx, "fincr", []string{key(tags[2])}, 1)), "the next single call loads it")
	assert.Equal(t, int64(1), h.Stats().FunctionNotFoundPassed, "only the transaction's miss reached the caller")
}

// 33. A transaction mixing calls with the caller's FUNCTION commands, once
// the server has shown the user may load: the calls before the caller's
// command find the library, as on the reference.
func TestFnAdvTxMixed(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	w.same(t, "tx mixed", func(ctx context.Context, c *redis.Client) []string {
		out := []string{testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1))}
		out = append(out, testkit.Render(c.FunctionDelete(ctx, "counter")))
		if c == w.ref.Plain {
			w.loadRef(t) // the next call loads it (README)
		}
		cmds, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.FunctionFlush(ctx)
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			p.FunctionLoad(ctx, counterLibV2)
			p.FCall(ctx, "fincr", []string{"k"}, 1)
			return nil
		})
		out = append(out, testkit.RenderAll(cmds, err)...)
		if c == w.ref.Plain {
			w.loadRef(t) // after a FLUSH in a transaction, the next call loads the registered code
		}
		return append(out, testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)))
	})
}

// 34. The same Hook twice in one client's chain: one load, each call once.
func TestFnAdvSameHookTwice(t *testing.T) {
	t.Parallel()
	h := quiet()
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	r := testkit.NewRig(t, nil)
	r.Hooked.AddHook(h)
	r.Hooked.AddHook(h)
	ctx := t.Context()
	for i := 1; i <= 2; i++ {
		n, err := r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1).Int64()
		require.NoError(t, err)
		assert.Equal(t, int64(i), n)
	}
	require.NoError(t, r.Admin.FunctionFlush(ctx).Err())
	cmds, err := r.Hooked.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.FCall(ctx, "fincr", []string{"k"}, 1)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, int64(3), cmds[0].(*redis.Cmd).Val())
	assert.Equal(t, int64(4), r.Calls(t, "fcall"), "no call sent twice: the pipeline's miss and its retry")
	assert.Equal(t, "3", r.Admin.Get(ctx, "k").Val())
}

// 35. A standalone client on a replica: FCALL_RO runs on the replicated
// library after one refused load (the replica is remembered: no other);
// FCALL gets the replica's own refusal, as plain.
func TestFnAdvReplica(t *testing.T) {
	t.Parallel()
	primary := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", fmt.Sprint(primary.Port))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	require.NoError(t, testkit.Client(t, primary, nil).FunctionLoad(ctx, counterLib).Err())
	require.NoError(t, testkit.Client(t, primary, nil).Set(ctx, "k", 7, 0).Err())
	admin := testkit.Client(t, replica, nil)
	for admin.Get(ctx, "k").Val() != "7" {
		require.NoError(t, ctx.Err(), "replication")
		time.Sleep(20 * time.Millisecond)
	}
	r, h := rigWith(t, replica, nil)
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	run := func(c *redis.Client) []string {
		out := []string{testkit.Render(c.FCallRO(ctx, "fget", []string{"k"}))}
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCallRO(ctx, "fget", []string{"k"})
			p.FCallRO(ctx, "FGET", []string{"k"})
			return nil
		})
		out = append(out, testkit.RenderAll(cmds, err)...)
		cmds, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.FCallRO(ctx, "fget", []string{"k"})
			return nil
		})
		return append(out, testkit.RenderAll(cmds, err)...)
	}
	for i := 0; i < 3; i++ {
		assert.Equal(t, run(r.Plain), run(r.Hooked), "round %d", i)
	}
	assert.Equal(t, int64(1), h.Stats().FunctionLoads, "one load, refused READONLY, and the replica remembered")
	// A write: the replica's refusal, as plain (the hook's load before it
	// is refused the same way).
	assert.Equal(t, testkit.Render(r.Plain.FCall(ctx, "fincr", []string{"k"}, 1)), testkit.Render(r.Hooked.FCall(ctx, "fincr", []string{"k"}, 1)))
	assert.Equal(t, run(r.Plain), run(r.Hooked), "after the write")
}

// 36. A user who may not run FUNCTION LIST: a library that echoes strings
// into error replies cannot be checked after a miss, so that call gets the
// server's reply as plain (without the library) does; the next call loads
// the library first and works, as on the reference.
func TestFnAdvACLNoFunctionList(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	ctx := t.Context()
	_, hooked, h := acl(t, srv, "nolist", "~*", "+@all", "-function|list")
	_, err := h.RegisterLibrary(advLib)
	require.NoError(t, err)
	admin := testkit.Client(t, srv, nil)
	require.NoError(t, hooked.FCall(ctx, "fa_runs", []string{"r"}).Err())
	for i := 0; i < 2; i++ {
		require.NoError(t, admin.FunctionFlush(ctx).Err())
		assert.EqualError(t, hooked.FCall(ctx, "fa_runs", []string{"r"}).Err(), noFunction, "round %d: no telling", i)
		assert.NoError(t, hooked.FCall(ctx, "fa_runs", []string{"r"}).Err(), "round %d: the next call loads it", i)
	}
	assert.Equal(t, "3", admin.Get(ctx, "r").Val())
}

// 37. FCALL_RO as the first call of a library on a fresh primary: the
// library is loaded ahead of it like any call's, singly and in a
// pipeline (no miss, nothing to repair); after a flush it is repaired.
func TestFnAdvROFirst(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	w.same(t, "ro first", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCallRO(ctx, "fget", []string{"k"}))}
	})
	w2 := newFnTwin(t, nil, counterLib)
	w2.same(t, "ro first, pipeline", func(ctx context.Context, c *redis.Client) []string {
		cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			p.FCallRO(ctx, "fget", []string{"k"})
			p.FCallRO(ctx, "fget", []string{"k"})
			return nil
		})
		return testkit.RenderAll(cmds, err)
	})
	for _, x := range []*fnTwin{w, w2} {
		st := x.h.Stats()
		assert.Equal(t, int64(1), st.FunctionLoads, "loaded ahead")
		assert.Zero(t, st.FunctionRepaired, "no miss")
	}
	w.flushBoth(t)
	w.hk.ResetStats(t)
	w.same(t, "ro after a flush: repaired", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCallRO(ctx, "fget", []string{"k"}))}
	})
	require.NoError(t, w.hk.Hooked.FunctionDelete(t.Context(), "counter").Err())
	require.NoError(t, w.ref.Admin.FunctionDelete(t.Context(), "counter").Err())
	w.loadRef(t)
	w.hk.ResetStats(t)
	w.same(t, "ro after the caller's delete: preloaded", func(ctx context.Context, c *redis.Client) []string {
		return []string{testkit.Render(c.FCallRO(ctx, "fget", []string{"k"}))}
	})
	assert.Equal(t, int64(1), w.hk.Calls(t, "fcall_ro"), "no miss: the server is known to be a primary")
}

// 38. Pipelines split into sub-batches (WithMaxBatchSize): each sub-batch
// carries what it needs; the caller's FUNCTION DELETE in a later one and a
// hand-written MULTI in between: as the reference.
func TestFnAdvSubBatches(t *testing.T) {
	t.Parallel()
	h := quiet(scripthook.WithMaxBatchSize(3))
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	_, err = h.RegisterLibrary(advLib)
	require.NoError(t, err)
	w := &fnTwin{
		ref:  testkit.RigOn(t, redistest.Start(t), nil, nil),
		hk:   testkit.RigOn(t, redistest.Start(t), nil, h),
		h:    h,
		libs: []string{counterLib, advLib},
	}
	w.loadRef(t)
	for round := 0; round < 2; round++ {
		w.same(t, fmt.Sprintf("sub-batches round %d", round), func(ctx context.Context, c *redis.Client) []string {
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.Get(ctx, "x")
				p.Get(ctx, "x")
				p.FCall(ctx, "fincr", []string{"k"}, 1)
				p.FCall(ctx, "fa_runs", []string{"r"})
				p.Do(ctx, "multi")
				p.FCall(ctx, "fincr", []string{"k"}, 1)
				p.Do(ctx, "exec")
				p.FCall(ctx, "fa_runs", []string{"r"})
				p.FunctionDelete(ctx, "counter")
				p.FCall(ctx, "fincr", []string{"k"}, 1)
				p.FCall(ctx, "fa_runs", []string{"r"})
				return nil
			})
			if c == w.ref.Plain {
				w.loadRef(t) // the hook loads it before the next call (README)
			}
			return testkit.RenderAll(cmds, err)
		})
	}
}

// 39. The caller loads the registered code itself before any call: the
// hook sends nothing more; and a caller's FUNCTION LOAD that fails changes
// nothing the hook believes.
func TestFnAdvCallerLoadsFirst(t *testing.T) {
	t.Parallel()
	w := newFnTwin(t, nil, counterLib)
	// No call yet: neither server holds it (the hook promises it for calls).
	require.NoError(t, w.ref.Admin.FunctionFlush(t.Context()).Err())
	w.hk.ResetStats(t)
	w.same(t, "caller loads", func(ctx context.Context, c *redis.Client) []string {
		return []string{
			testkit.Render(c.Do(ctx, []byte("FUNCTION"), "LOAD", []byte(counterLib))),
			testkit.Render(c.FunctionLoadReplace(ctx, counterLib)),
			testkit.Render(c.FunctionLoad(ctx, brokenLib)),
			testkit.Render(c.FCall(ctx, "fincr", []string{"k"}, 1)),
		}
	})
	assert.Equal(t, int64(3), fnLoads(t, w.hk), "the caller's three, none of the hook's")
}

// 40. A Ring: each shard gets the library before its first call.
func TestFnAdvRing(t *testing.T) {
	t.Parallel()
	a, b := redistest.Start(t), redistest.Start(t)
	ctx := t.Context()
	h := quiet()
	_, err := h.RegisterLibrary(counterLib)
	require.NoError(t, err)
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": a.Addr, "b": b.Addr}})
	t.Cleanup(func() { _ = ring.Close() })
	require.NoError(t, h.Install(ring))
	for i := 0; i < 20; i++ {
		n, err := ring.FCall(ctx, "fincr", []string{fmt.Sprintf("k%d", i)}, i).Int64()
		require.NoError(t, err)
		assert.Equal(t, int64(i), n)
	}
	cmds, err := ring.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := 0; i < 20; i++ {
			p.FCallRO(ctx, "fget", []string{fmt.Sprintf("k%d", i)})
		}
		return nil
	})
	require.NoError(t, err)
	for i, c := range cmds {
		assert.Equal(t, fmt.Sprint(i), c.(*redis.Cmd).Val())
	}
	for _, s := range []*redistest.Server{a, b} {
		n, err := s.CommandCalls(ctx, "function|load")
		require.NoError(t, err)
		assert.Equal(t, int64(1), n, "one load on %s", s.Addr)
	}
}

// 41. A library whose code spells neither "err" nor "not found" can still
// answer the server's text: a table whose field name is an argument.
func TestFnAdvForgedByTableField(t *testing.T) {
	t.Parallel()
	lib := "#!lua name=tablefield\n" +
		"redis.register_function('fa_field', function(keys, args) redis.call('INCR', keys[1]) local t = {} t[args[1]] = args[2] return t end)"
	w := newFnTwin(t, nil, lib)
	for _, batch := range []bool{false, true} {
		w.same(t, fmt.Sprintf("batch=%v", batch), func(ctx context.Context, c *redis.Client) []string {
			out := []string{testkit.Render(c.FCall(ctx, "fa_field", []string{"n"}, "ok", "x"))}
			if !batch {
				return append(out, testkit.Render(c.FCall(ctx, "fa_field", []string{"n"}, "e"+"rr", noFunction)))
			}
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				p.FCall(ctx, "fa_field", []string{"n"}, "e"+"rr", noFunction)
				return nil
			})
			return append(out, testkit.RenderAll(cmds, err)...)
		})
	}
	assert.Equal(t, "4", w.hk.Admin.Get(t.Context(), "n").Val(), "each call ran once")
}
