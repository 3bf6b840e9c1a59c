package scripthook

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Functions: an FCALL or FCALL_RO of a function of a registered library.
// The command itself always goes as the caller wrote it (there is nothing
// to rewrite); what the hook adds is the library. Before the first call of
// one of its functions on a server, the hook sends FUNCTION LOAD REPLACE of
// the registered code there (once per server lifetime, shared by concurrent
// callers), so the server runs what was registered; a call answered
// "Function not found" (which the server gives before anything runs) is
// repaired once: the library is loaded on that same server and the call
// sent again.

// fnArgsForge reports arguments that could make a function that echoes
// strings into error replies answer "Function not found" itself.
func fnArgsForge(args []interface{}) bool {
	for _, a := range args {
		if t, ok := textArg(a); ok && containsFold(t, "not found") {
			return true
		}
	}
	return false
}

// runFCall sends one FCALL/FCALL_RO and records what it did in r.
func (e *engine) runFCall(ctx context.Context, cmd redis.Cmder, sc *scriptCall, next redis.ProcessHook, r *run) error {
	r.srv = e.srv
	lib := e.sh.libs.forFunction(sc.function)
	if lib == nil || e.srv.openMulti.Load() > 0 || ctx.Value(inLoadKey{}) != nil {
		// Not registered; or the replies prove nothing (a MULTI the
		// caller opened); or the call is made inside the hook's own load
		// (an OnConnect of the connection it dials), which must not wait
		// for itself.
		return next(ctx, cmd)
	}
	held, gen := e.srv.holds(lib)
	loaded, loadErr := false, error(nil)
	if !held && e.srv.mayLoadFns() {
		// First call of the library's functions on this server (or after
		// it lost them): the registered code goes first.
		loadErr, loaded = e.loadLibrary(ctx, lib, next, r), true
		if loadErr != nil && (ctx.Err() != nil || !isRedisError(loadErr)) {
			// The caller gave up while the load was on its way or while
			// it waited for another caller's; or the load was lost with
			// its connection (go-redis's own retries, if any, are spent
			// inside next): it returns now with that error, as a plain
			// command on that connection would, and its FCALL is not
			// sent (it would only meet "Function not found", which says
			// the library is missing when the hook never got it there).
			if ctx.Err() != nil {
				loadErr = ctx.Err()
			}
			cmd.SetErr(loadErr)
			return loadErr
		}
		_, gen = e.srv.holds(lib)
	}
	err := next(ctx, cmd)
	if !isNoFunction(err) || lib.forge || lib.echoes && fnArgsForge(cmd.Args()[3:]) {
		// Done; or the function's own error reply could read like the
		// server's "Function not found": the caller gets it as it is.
		return err
	}
	reload := e.srv.missing(lib.name, gen)
	switch {
	case loaded && isRedisError(loadErr):
		// The registered library could not be loaded (it does not compile,
		// the server is out of memory or read-only, the user may not load
		// it, another library has its function): that is why the function
		// is missing, and what the caller gets, once. Nothing of it is
		// remembered, so the next call tries again.
		cmd.SetErr(loadErr)
		return loadErr
	case loaded || !e.srv.mayLoadFns():
		// Loaded just now and missing all the same (flushed again in
		// between, or not one of the library's functions after all), or
		// the hook may not load here: the server's answer stands.
		e.sh.fns.passed.Add(1)
		return err
	}
	r.repair, r.cause = repairLoad, causeLost
	if reload {
		if lerr := e.loadLibrary(ctx, lib, next, r); lerr != nil {
			if ctx.Err() != nil {
				cmd.SetErr(ctx.Err())
				return ctx.Err()
			}
			if isRedisError(lerr) {
				cmd.SetErr(lerr)
				return lerr
			}
			e.sh.fns.passed.Add(1)
			cmd.SetErr(err)
			return err
		}
	}
	_, gen = e.srv.holds(lib)
	err = next(ctx, cmd)
	if isNoFunction(err) {
		e.srv.missing(lib.name, gen)
		e.sh.fns.passed.Add(1)
		return err
	}
	e.sh.fns.repaired.Add(1)
	return err
}

// loadLibrary makes the server hold lib: it sends the hook's FUNCTION LOAD
// REPLACE, or waits for the one another caller is sending. It returns nil
// once the server has it, else the load's error (the server's reply, a
// transport error, or the caller's context's error while it waited).
func (e *engine) loadLibrary(ctx context.Context, lib *library, next redis.ProcessHook, r *run) error {
	f, own := e.srv.joinLoad(lib)
	if !own {
		err := f.wait(ctx)
		if err == nil || isRedisError(err) || ctx.Err() != nil {
			return err
		}
		// The other caller's load failed on its way (its connection or
		// context): this caller tries once itself.
		if f, own = e.srv.joinLoad(lib); !own {
			return f.wait(ctx)
		}
	}
	c := newFnLoadCmd(e.sh, lib)
	c.active.Store(true)
	err := next(context.WithValue(ctx, inLoadKey{}, f), c)
	c.active.Store(false)
	if isReadOnly(err) {
		e.srv.readOnlyClosed()
	}
	r.bodies++
	e.settleFnLoad(f, c, err)
	return f.err
}

// settleFnLoad reads the reply to the hook's FUNCTION LOAD, learns what it
// says of the server, and finishes the load for its waiters.
func (e *engine) settleFnLoad(f *fnFlight, c *fnLoadCmd, err error) {
	if err == nil {
		err = c.Err()
	}
	e.sh.fns.loads.Add(1)
	e.sh.stats.bodiesSent.Add(1)
	switch {
	case err == nil:
		e.srv.learn(capFunctionLoad, true)
	case isDenied(err, capFunctionLoad.aclName()):
		e.srv.learn(capFunctionLoad, false)
	case isReadOnly(err):
		e.srv.replica.Store(true)
	case isRedisError(err):
		e.srv.learn(capFunctionLoad, true)
	}
	e.srv.finishLoad(f, err)
}
