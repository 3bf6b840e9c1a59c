package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
	"github.com/scripthook/scripthook"
)

// The functions part: the same rate limiter as a Redis 7 function library,
// called with FCALL by a plain client and by a client whose Hook registered
// the library. Halfway through, another client removes the library from
// every server (FUNCTION FLUSH, as a restart without persistence or a
// resharding to a node without it would), so the plain client meets
// "Function not found" from then on while the hook loads the library again
// on that server and repeats the call. miniredis has no FUNCTION command:
// there the part is skipped, and says so.

const (
	libName  = "scripthook_demo"
	fnName   = "scripthook_demo_limit"
	fnCalls  = 20 // FCALLs per run; the library is removed after half
	fnTenant = "fn"
)

// libraryCode is scriptBody as a function: its KEYS and ARGV become the
// function's parameters, so the body is unchanged.
func libraryCode() string {
	return "#!lua name=" + libName + "\nredis.register_function('" + fnName +
		"', function(KEYS, ARGV)\n" + scriptBody + "\nend)\n"
}

// fnResult is one run of the functions part.
type fnResult struct {
	name     string
	calls    int
	errors   int
	firstErr error
	loads    int64 // FUNCTION LOADs: by hand for plain, the hook's for hook
	repaired int64 // -1 for plain
}

// fnKeys are the keys the functions part writes.
func fnKeys() []string {
	k, _ := callArgs(fnTenant, 0)
	return k
}

// hasFunctions reports whether the target's servers know FUNCTION.
func (t *target) hasFunctions(ctx context.Context) bool {
	return t.admin.Do(ctx, "function", "list", "libraryname", libName).Err() == nil
}

// eachServer runs fn on every server of the target (every master of a
// cluster, else the one server), one at a time: ForEachMaster calls it from
// a goroutine per master, and fn may count or record.
func (t *target) eachServer(ctx context.Context, fn func(context.Context, redis.Cmdable) error) error {
	if cc, ok := t.admin.(*redis.ClusterClient); ok {
		var mu sync.Mutex
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			mu.Lock()
			defer mu.Unlock()
			return fn(ctx, c)
		})
	}
	return fn(ctx, t.admin)
}

// dropLibrary removes the demo's library behind the measured client's
// back: FUNCTION FLUSH where the server holds no other library (the event
// the part is about), else FUNCTION DELETE of the demo's own, so that a
// real server keeps every library it had. It returns what it sent.
func (t *target) dropLibrary(ctx context.Context) (string, error) {
	how := "FUNCTION FLUSH"
	err := t.eachServer(ctx, func(ctx context.Context, c redis.Cmdable) error {
		libs, err := c.FunctionList(ctx, redis.FunctionListQuery{}).Result()
		if err != nil {
			return err
		}
		for _, l := range libs {
			if l.Name != libName {
				how = "FUNCTION DELETE " + libName
			}
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	err = t.eachServer(ctx, func(ctx context.Context, c redis.Cmdable) error {
		if how == "FUNCTION FLUSH" {
			return c.FunctionFlush(ctx).Err()
		}
		if err := c.FunctionDelete(ctx, libName).Err(); err != nil && !strings.Contains(err.Error(), "not found") {
			return err
		}
		return nil
	})
	return how, err
}

// runFunctions runs the part with a plain client and with the hook, and
// leaves every server without the demo's library and keys.
func runFunctions(ctx context.Context, tgt *target) (plain, hooked fnResult, how string, err error) {
	defer func() {
		for _, k := range fnKeys() {
			_ = tgt.admin.Del(ctx, k).Err()
		}
		_ = tgt.eachServer(ctx, func(ctx context.Context, c redis.Cmdable) error {
			_ = c.FunctionDelete(ctx, libName).Err()
			return nil
		})
	}()
	code := libraryCode()

	// The plain client loads the library by hand on every server, as code
	// without the hook has to, and has nothing to repair it with.
	plain = fnResult{name: "plain", repaired: -1}
	err = tgt.eachServer(ctx, func(ctx context.Context, c redis.Cmdable) error {
		plain.loads++
		return c.FunctionLoadReplace(ctx, code).Err()
	})
	if err != nil {
		return plain, hooked, "", fmt.Errorf("FUNCTION LOAD: %w", err)
	}
	prdb := tgt.newClient(nil)
	defer prdb.Close()
	if how, err = fnCallsAround(ctx, tgt, prdb, &plain); err != nil {
		return plain, hooked, how, err
	}

	// The hook's client: the library is registered, never loaded by hand.
	h := scripthook.New(scripthook.WithTracing(false))
	if _, err := h.RegisterLibrary(code); err != nil {
		return plain, hooked, how, err
	}
	hrdb := tgt.newClient(nil)
	defer hrdb.Close()
	if err := h.Install(hrdb); err != nil {
		return plain, hooked, how, err
	}
	hooked = fnResult{name: "hook"}
	if how, err = fnCallsAround(ctx, tgt, hrdb, &hooked); err != nil {
		return plain, hooked, how, err
	}
	st := h.Stats()
	hooked.loads, hooked.repaired = st.FunctionLoads, st.FunctionRepaired
	return plain, hooked, how, nil
}

// fnCallsAround makes fnCalls FCALLs with rdb, dropping the library from
// every server after half of them.
func fnCallsAround(ctx context.Context, tgt *target, rdb redis.UniversalClient, res *fnResult) (string, error) {
	for _, k := range fnKeys() {
		if err := tgt.admin.Del(ctx, k).Err(); err != nil {
			return "", err
		}
	}
	var how string
	for i := 0; i < fnCalls; i++ {
		if i == fnCalls/2 {
			var err error
			if how, err = tgt.dropLibrary(ctx); err != nil {
				return how, fmt.Errorf("removing the library: %w", err)
			}
		}
		keys, args := callArgs(fnTenant, i+1)
		err := rdb.FCall(ctx, fnName, keys, args...).Err()
		res.calls++
		if err != nil {
			res.errors++
			if res.firstErr == nil {
				res.firstErr = err
			}
		}
	}
	return how, nil
}

// printFunctions writes the part's two rows, or why it was skipped.
func printFunctions(out io.Writer, plain, hooked fnResult, how string) {
	fmt.Fprintf(out, "\nFunctions: %d FCALLs of library %s; %s by another client after %d of them\n",
		fnCalls, libName, how, fnCalls/2)
	fmt.Fprintf(out, "%-6s %6s %7s %15s %9s  %s\n", "run", "calls", "errors", "FUNCTION LOADs", "repaired", "first error")
	for _, r := range []fnResult{plain, hooked} {
		rep, first := "-", ""
		if r.repaired >= 0 {
			rep = fmt.Sprint(r.repaired)
		}
		if r.firstErr != nil {
			first = r.firstErr.Error()
		}
		fmt.Fprintf(out, "%-6s %6d %7d %15d %9s  %s\n", r.name, r.calls, r.errors, r.loads, rep, first)
	}
	if plain.loads > 0 {
		fmt.Fprintf(out, "(plain's FUNCTION LOADs are the ones its code sends by hand before the first call)\n")
	}
}
