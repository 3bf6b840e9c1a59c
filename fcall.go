package scripthook

import (
	"context"
	"errors"
	"strings"

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
	if lib == nil {
		return next(ctx, cmd) // not registered
	}
	if ctx.Value(inLoadKey{}) != nil {
		return e.fcallInLoad(ctx, cmd, lib, next, r)
	}
	// While the caller has a MULTI of its own open (on a Conn), this call
	// may be inside it, where nothing of the hook's may go: it goes as
	// written. Its reply tells: QUEUED inside the MULTI, the function's
	// reply outside it, and "Function not found" proves it ran outside any
	// MULTI (no command is refused so when queued), so that one is
	// repaired below like any other: a caller on another connection is
	// not affected by someone's open MULTI.
	inMulti := e.srv.openMulti.Load() > 0
	held, gen := e.srv.holds(lib)
	loaded, loadErr := false, error(nil)
	if !held && !inMulti && e.srv.mayLoadFns() && e.preloads(sc.kind) {
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
	if !isNoFunction(err) || lib.mayForge(cmd.Args()) {
		// Done; or the function's own error reply could read like the
		// server's "Function not found": the caller gets it as it is.
		return err
	}
	switch {
	case loaded && loadErrStands(loadErr, sc.kind):
		// The registered library could not be loaded (it does not compile,
		// the server is out of memory or read-only, the user may not load
		// it, another library has its function): that is why the function
		// is missing, and what the caller gets, once. Nothing of it is
		// remembered, so the next call tries again.
		e.srv.missing(lib.name, gen)
		cmd.SetErr(loadErr)
		return loadErr
	case loaded || !e.srv.mayLoadFns():
		// Loaded just now and missing all the same (flushed again in
		// between, or not one of the library's functions after all), or
		// the hook may not load here: the server's answer stands.
		e.srv.missing(lib.name, gen)
		e.sh.fns.passed.Add(1)
		return err
	}
	r.repair, r.cause = repairLoad, causeLost
	if lerr := e.repairLibrary(ctx, lib, sc.function, gen, next, r); lerr != nil {
		switch {
		case lerr == errFnPresent:
			return err // the function's own reply: it ran, once
		case ctx.Err() != nil:
			cmd.SetErr(ctx.Err())
			return ctx.Err()
		case loadErrStands(lerr, sc.kind):
			cmd.SetErr(lerr)
			return lerr
		}
		e.sh.fns.passed.Add(1) // no telling, or the load failed on its way
		cmd.SetErr(err)
		return err
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

// loadErrStands reports whether the caller of a call of kind k that met
// "Function not found" gets the error reply to the hook's FUNCTION LOAD
// instead. A replica's READONLY does so for FCALL, which belongs on a
// primary: go-redis then reloads a ClusterClient's slot map and sends the
// call again, to the primary, as after a MOVED. Not for FCALL_RO, which
// read-only routing sends to replicas on purpose: go-redis would send it to
// a replica again, up to MaxRedirects times, each time after one more
// refused load, and end with READONLY; the server's "Function not found"
// stands, as without the hook.
func loadErrStands(err error, k kind) bool {
	return isRedisError(err) && !(k == kindFCallRO && isReadOnly(err))
}

// fnPresent reports whether the server holds the function of lib named
// function now (FUNCTION LIST LIBRARYNAME, one round trip, only after a
// "Function not found" to a call the hook did not just load for, before it
// sends the call again); known is false where the listing could not be read (the
// user may not list functions, a transport error): the caller then gets the
// reply as it is, as without the hook, and nothing runs twice. What it
// cannot see is another client's FUNCTION FLUSH landing between the call's
// reply and the listing; README says so.
func (e *engine) fnPresent(ctx context.Context, lib *library, function string, next redis.ProcessHook) (present, known bool) {
	c := newFnListCmd(ctx, lib)
	if err := next(ctx, c); err != nil || c.Err() != nil {
		return false, false
	}
	return c.holds(lib, function), true
}

// fnListCmd is the hook's FUNCTION LIST LIBRARYNAME of one library.
type fnListCmd struct{ *redis.FunctionListCmd }

func newFnListCmd(ctx context.Context, lib *library) fnListCmd {
	return fnListCmd{redis.NewFunctionListCmd(ctx, "function", "list", "libraryname", lib.name)}
}

// holds reports whether the listing shows lib with the function (or could
// not be read, which counts as holding it).
func (c fnListCmd) holds(lib *library, function string) bool {
	if c.Err() != nil {
		return true
	}
	for _, l := range c.Val() {
		if l.Name != lib.name { // LIBRARYNAME is a pattern
			continue
		}
		for _, f := range l.Functions {
			if strings.EqualFold(f.Name, function) {
				return true
			}
		}
	}
	return false
}

// fcallInLoad sends a call made inside the hook's own load: in the
// OnConnect of the connection that load dials, whose load waits for this
// call, so this call must not wait for it. It goes as written; answered
// "Function not found", the library is loaded on this same connection, by
// itself, outside the shared load, and the call sent again once, so that an
// OnConnect that calls a registered function works as where the library is
// loaded (the cost: a second FUNCTION LOAD on this server, once).
func (e *engine) fcallInLoad(ctx context.Context, cmd redis.Cmder, lib *library, next redis.ProcessHook, r *run) error {
	err := next(ctx, cmd)
	if !isNoFunction(err) || lib.mayForge(cmd.Args()) || !e.srv.mayLoadFns() {
		return err
	}
	function, _ := fnNameArg(cmd.Args()[1])
	if present, known := e.fnPresent(ctx, lib, function, next); present || !known {
		return err // the function's own reply, or no telling (see runFCall)
	}
	if lerr := e.sendFnLoad(ctx, lib, next, r); lerr != nil {
		// The outer load meets the same refusal and learns from it.
		e.sh.fns.passed.Add(1)
		cmd.SetErr(err)
		return err
	}
	r.repair, r.cause = repairLoad, causeLost
	err = next(ctx, cmd)
	if isNoFunction(err) {
		e.sh.fns.passed.Add(1)
		return err
	}
	e.sh.fns.repaired.Add(1)
	return err
}

// Outcomes of a repair's flight that load nothing: errFnPresent, the
// server holds the function (the miss was the function's own reply);
// errNoTelling, the listing could not be read.
var (
	errFnPresent = errors.New("scripthook: the function is there")
	errNoTelling = errors.New("scripthook: could not list the functions")
)

// repairLibrary makes the server hold lib again after a call of function,
// sent while the belief of generation gen held, was answered "Function not
// found". Any function can answer that text itself (an error reply built
// from arguments joined or from a key's value, a table whose field name is
// an argument), and only an absent function proves it the server's: so
// before anything is sent again the server is asked whether it holds the
// function (FUNCTION LIST LIBRARYNAME, one round trip), and the library is
// loaded only where it does not; where it does, errFnPresent: the reply was
// the function's own, and the function ran. Listing and loading are one
// flight that concurrent repairers of the library share (a repairer that
// listed after another's load landed would take a real miss for the
// function's own reply). A load that landed since the call was sent: nil,
// the call may simply be sent again. Not seen: another client's FUNCTION
// FLUSH between the call's reply and the listing (README).
func (e *engine) repairLibrary(ctx context.Context, lib *library, function string, gen uint64, next redis.ProcessHook, r *run) error {
	f, own := e.srv.joinRepair(lib, gen)
	if f == nil {
		return nil
	}
	if !own {
		err := f.wait(ctx)
		if err == nil || err == errFnPresent || err == errNoTelling || isRedisError(err) || ctx.Err() != nil {
			return err
		}
		// The other caller's load failed on its way: this one loads.
		e.srv.missing(lib.name, gen)
		return e.loadLibrary(ctx, lib, next, r)
	}
	lctx := context.WithValue(ctx, inLoadKey{}, f) // see inLoadKey
	present, known := e.fnPresent(lctx, lib, function, next)
	switch {
	case present:
		e.srv.finishLoad(f, errFnPresent)
		return errFnPresent
	case !known && ctx.Err() != nil:
		e.srv.finishLoad(f, ctx.Err())
		return ctx.Err()
	case !known:
		// The reply stands, and the next call loads the library first,
		// so that a real miss does not last.
		e.srv.missing(lib.name, gen)
		e.srv.finishLoad(f, errNoTelling)
		return errNoTelling
	}
	e.srv.missing(lib.name, gen)
	return e.sendLoad(ctx, f, lib, next, r)
}

// loadLibrary makes the server hold lib: it sends the hook's FUNCTION LOAD
// REPLACE, or waits for the one another caller is sending. It returns nil
// once the server has it, else the load's error (the server's reply, a
// transport error, or the caller's context's error while it waited).
func (e *engine) loadLibrary(ctx context.Context, lib *library, next redis.ProcessHook, r *run) error {
	f, own := e.srv.joinLoad(lib)
	if !own {
		err := f.wait(ctx)
		if err == errFnPresent {
			return nil // a repair found the function there
		}
		if err == nil || isRedisError(err) || ctx.Err() != nil {
			return err
		}
		// The other caller's load failed on its way (its connection or
		// context): this caller tries once itself.
		if f, own = e.srv.joinLoad(lib); !own {
			if err := f.wait(ctx); err != errFnPresent {
				return err
			}
			return nil
		}
	}
	return e.sendLoad(ctx, f, lib, next, r)
}

// sendLoad sends the hook's FUNCTION LOAD REPLACE of lib for the flight f
// it owns, and finishes the flight.
func (e *engine) sendLoad(ctx context.Context, f *fnFlight, lib *library, next redis.ProcessHook, r *run) error {
	err := e.sendFnLoad(context.WithValue(ctx, inLoadKey{}, f), lib, next, r)
	e.learnFnLoad(err)
	e.srv.finishLoad(f, err)
	return f.err
}

// sendFnLoad sends one FUNCTION LOAD REPLACE of lib as a single command
// and returns its outcome, counted in Stats and in r. A READONLY reply's
// closed connection is taken back (see readOnlyClosed).
func (e *engine) sendFnLoad(ctx context.Context, lib *library, next redis.ProcessHook, r *run) error {
	c := newFnLoadCmd(e.sh, lib)
	c.active.Store(true)
	err := next(ctx, c)
	c.active.Store(false)
	if err == nil {
		err = c.Err()
	}
	if isReadOnly(err) {
		e.srv.readOnlyClosed()
	}
	r.bodies++
	e.sh.fns.loads.Add(1)
	e.sh.stats.bodiesSent.Add(1)
	return err
}

// settleFnLoad reads the reply to the hook's FUNCTION LOAD sent in a batch,
// counts it, learns what it says of the server, and finishes the load for
// its waiters.
func (e *engine) settleFnLoad(f *fnFlight, c *fnLoadCmd, err error) {
	if err == nil {
		err = c.Err()
	}
	e.sh.fns.loads.Add(1)
	e.sh.stats.bodiesSent.Add(1)
	e.learnFnLoad(err)
	e.srv.finishLoad(f, err)
}

// learnFnLoad learns from the outcome of one of the hook's loads what the
// server lets the user do and whether it is a replica.
func (e *engine) learnFnLoad(err error) {
	switch {
	case err == nil:
		e.srv.learn(capFunctionLoad, true)
	case isDenied(err, capFunctionLoad.aclName()):
		e.srv.learn(capFunctionLoad, false)
	case isReadOnly(err):
		// Not known to be a primary any more (see knownPrimary).
		e.srv.replica.Store(true)
		e.srv.caps[capFunctionLoad].Store(capUnknown)
	case isRedisError(err):
		e.srv.learn(capFunctionLoad, true)
	}
}
