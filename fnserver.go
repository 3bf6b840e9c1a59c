package scripthook

import (
	"context"
	"sync/atomic"
)

// What one server is believed to hold of the registered function
// libraries, and the loads in flight there. It lives in the server's state
// (server.fns, guarded by server.mu) and follows the same rule as scripts:
// a wrong belief costs a "Function not found" and its repair, never a wrong
// result.

// fnSlot is one library's state on one server.
type fnSlot struct {
	// has is the version the hook's FUNCTION LOAD REPLACE put there (or a
	// caller's own FUNCTION LOAD of that name, whose version stands); nil:
	// not known to be there.
	has *library
	// flight is the hook's load in flight, which concurrent callers share.
	flight *fnFlight
	// gen counts the loads that landed: a "Function not found" to a call
	// sent before the latest one must not undo it.
	gen uint64
}

// fnFlight is one FUNCTION LOAD the hook sends; the callers that need the
// same library on the same server meanwhile wait for it instead of sending
// their own.
type fnFlight struct {
	lib   *library
	epoch uint64
	done  chan struct{}
	// err is the load's outcome, written before done is closed.
	err error
}

// inLoadKey marks the context of the hook's own FUNCTION LOAD: a call made
// with it (a command in the OnConnect of a connection that load dials) must
// not wait for that load, which waits for it.
type inLoadKey struct{}

// holds reports whether the server is believed to hold lib as registered
// now, and the generation of that belief, for dropFn.
func (sv *server) holds(lib *library) (bool, uint64) {
	sv.mu.RLock()
	defer sv.mu.RUnlock()
	sl := sv.fns[lib.name]
	if sl == nil {
		return false, 0
	}
	return sl.has == lib, sl.gen
}

// mayLoadFns reports whether the hook may send its own FUNCTION LOAD here:
// the user may run it, and the server is no replica.
func (sv *server) mayLoadFns() bool {
	return sv.can(capFunctionLoad) != capNo && !sv.replica.Load()
}

// knownPrimary reports whether this server itself has shown that the hook
// may load there: it accepted (or refused for another reason than ACL or
// READONLY) one of the hook's loads, and has not said READONLY since. Only
// then may a transaction carry the load (see txMayLoadFns). A replica's
// READONLY is remembered past the connection go-redis closes on it (see
// readOnlyClosed), so a *redis.Client on a replica sends one refused load
// per server lifetime; a read-routed ClusterClient sends its replicas none
// (see preloads).
func (sv *server) knownPrimary() bool {
	return sv.caps[capFunctionLoad].Load() == capYes && !sv.replica.Load()
}

// joinRepair returns, for a repair after a miss of a call sent while the
// belief of generation gen held: nil when a load landed since (the call may
// be sent again), else the flight of lib in flight, or a new one the caller
// owns (own true).
func (sv *server) joinRepair(lib *library, gen uint64) (f *fnFlight, own bool) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sl := sv.fnSlotFor(lib.name)
	if sl.gen != gen {
		return nil, false
	}
	if sl.flight != nil && sl.flight.lib == lib {
		return sl.flight, false
	}
	f = &fnFlight{lib: lib, epoch: sv.fnEpoch, done: make(chan struct{})}
	sl.flight = f
	return f, true
}

// loadedSince reports whether a load of lib by the hook landed since the
// belief of generation gen was read, or is in flight now.
func (sv *server) loadedSince(lib *library, gen uint64) bool {
	sv.mu.RLock()
	defer sv.mu.RUnlock()
	sl := sv.fns[lib.name]
	return sl != nil && (sl.gen != gen || sl.flight != nil)
}

// dropFn records that the caller deleted a library.
func (sv *server) dropFn(name string) {
	sv.mu.Lock()
	if sl := sv.fns[name]; sl != nil {
		sl.has = nil
	}
	sv.mu.Unlock()
}

// missing records a "Function not found" for a function of the library
// named name, to a call sent while the belief of generation gen held. It
// reports false when a load landed since (the call may simply be sent
// again).
func (sv *server) missing(name string, gen uint64) bool {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sl := sv.fns[name]
	if sl == nil {
		return true
	}
	if sl.gen != gen {
		return false
	}
	sl.has = nil
	return true
}

// resetFns forgets every library the server was believed to hold: FUNCTION
// FLUSH or RESTORE, a restart, a failover. A load in flight from before is
// not believed when it ends (its epoch is old).
func (sv *server) resetFns() {
	sv.mu.Lock()
	sv.fnEpoch++
	for _, sl := range sv.fns {
		sl.has = nil
	}
	sv.mu.Unlock()
}

// callerLoaded records a caller's own successful FUNCTION LOAD of the
// library named name: the server holds the caller's version, which the hook
// does not replace before calls (only a "Function not found" makes it load
// its own).
func (sv *server) callerLoaded(name string, ls *libraries) {
	lib := ls.current(name)
	if lib == nil {
		return
	}
	sv.mu.Lock()
	sl := sv.fnSlotFor(name)
	sl.has = lib
	sl.gen++
	sv.mu.Unlock()
}

// fnSlotFor returns the library's slot. Caller holds mu.
func (sv *server) fnSlotFor(name string) *fnSlot {
	if sv.fns == nil {
		sv.fns = make(map[string]*fnSlot)
	}
	sl := sv.fns[name]
	if sl == nil {
		sl = &fnSlot{}
		sv.fns[name] = sl
	}
	return sl
}

// landed is the flight joinLoad returns when the load the caller wanted has
// landed already: done, with no error.
var landed = func() *fnFlight {
	f := &fnFlight{done: make(chan struct{})}
	close(f.done)
	return f
}()

// joinLoad returns the load of lib in flight on the server, or, when there
// is none, a new one the caller must send and finish (own true). A caller
// that saw the library missing just before another caller's load landed
// gets a finished flight (landed) and sends nothing: one load per miss,
// however the callers interleave.
func (sv *server) joinLoad(lib *library) (f *fnFlight, own bool) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sl := sv.fnSlotFor(lib.name)
	if sl.flight != nil && sl.flight.lib == lib {
		return sl.flight, false
	}
	if sl.has == lib {
		return landed, false
	}
	f = &fnFlight{lib: lib, epoch: sv.fnEpoch, done: make(chan struct{})}
	sl.flight = f
	return f, true
}

// pendingLoad returns the load of lib another caller has in flight, or nil.
func (sv *server) pendingLoad(lib *library) *fnFlight {
	sv.mu.RLock()
	defer sv.mu.RUnlock()
	if sl := sv.fns[lib.name]; sl != nil && sl.flight != nil && sl.flight.lib == lib {
		return sl.flight
	}
	return nil
}

// finishLoad records the outcome of the hook's FUNCTION LOAD and releases
// its waiters: the server holds the library unless it failed or the server
// was reset meanwhile.
func (sv *server) finishLoad(f *fnFlight, err error) {
	sv.mu.Lock()
	sl := sv.fnSlotFor(f.lib.name)
	if sl.flight == f {
		sl.flight = nil
	}
	if err == nil && sv.fnEpoch == f.epoch {
		sl.has = f.lib
		sl.gen++
	}
	sv.mu.Unlock()
	f.err = err
	close(f.done)
}

// wait waits for another caller's load; a caller whose context ends first
// returns at once with its context's error.
func (f *fnFlight) wait(ctx context.Context) error {
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fnCounters count what the hook did for functions (see Stats).
type fnCounters struct {
	loads, repaired, passed atomic.Int64
}
