package scripthook

import (
	"sync"
	"sync/atomic"
)

// server is what scripthook believes one Redis server has loaded and what it
// has learned about that server. One exists per server a hook sends to: each
// client hook has its own, and under Instrument each node has its own. What
// it holds is a belief: a wrong one costs a NOSCRIPT and its repair, never a
// wrong result.
//
// The lock protects the bookkeeping only; no server call is made under it,
// and no caller ever waits for another caller's work (a caller that finds a
// load in flight sends its command as written instead).
type server struct {
	mu sync.RWMutex
	// epoch counts resets. A load that started in an older epoch may have
	// reached the server before a flush or restart, so it must not mark the
	// script present in the new one.
	epoch uint64
	slots map[string]*slot // by SHA1
	// pins counts the scripts the hook's own SCRIPT LOADs made permanent
	// here since the last reset, registered scripts excepted; pinLimit
	// bounds it (see WithCacheSize).
	pins     int
	pinLimit int
	// evicts: a script believed present met NOSCRIPT with no flush,
	// restart or reconnect seen: an eviction (Redis 7.4+, Valkey 8), or
	// another client's SCRIPT FLUSH, which looks the same. Either way
	// unpinned scripts are at risk there (see risky). Kept across resets.
	evicts atomic.Bool
	// limit bounds slots: past it, slots not in use are dropped (a dropped
	// slot costs at most one body later, never a wrong result).
	limit int
	// caps are what this server lets the hook's user run (see capability);
	// hints is what all servers of the Hook said so far, for a server that
	// has not said yet.
	caps  [numCaps]atomic.Uint32
	hints *capHints
	// openMulti counts transactions the caller opened with a MULTI of its
	// own as a single command. While one is open, replies are QUEUED and
	// prove nothing, so script commands go as written.
	openMulti atomic.Int32
	// lost counts connections closed since the last dial.
	lost atomic.Int64
	// addr is the address last dialled, for traces.
	addr atomic.Pointer[string]
	// cached reports whether the Hook's cache still holds a script.
	cached func(sha string) bool
	// fns is what the server holds of the registered function libraries
	// (see fnserver.go), by library name; fnEpoch counts its resets.
	fns     map[string]*fnSlot
	fnEpoch uint64
	// replica: the server refused the hook's FUNCTION LOAD as a read-only
	// replica; it gets libraries by replication, never from the hook.
	replica atomic.Bool
}

// belief is what the hook thinks a server has of one script.
type belief uint8

const (
	unknown belief = iota
	// present: it ran here (by EVAL or EVALSHA), so the server has it, but
	// on Redis 7.4+ and Valkey 8 a script created by EVAL can be evicted.
	present
	// pinned: the hook's own SCRIPT LOAD created it, and such scripts are
	// never evicted; only a flush, restart or failover removes it.
	pinned
	// asWritten: it was evicted and cannot be pinned (no budget or no
	// permission), so its calls go as the caller wrote them, which is never
	// worse than plain EVAL.
	asWritten
)

// slot is one script's state on one server. Guarded by server.mu.
type slot struct {
	b belief
	// gen counts the times the belief was raised. A NOSCRIPT only lowers it
	// if nothing raised it since the caller looked: a reply to a command
	// sent before another caller's load must not undo that load.
	gen uint64
	// loading: a caller is sending the hook's SCRIPT LOAD for it.
	loading bool
	// free: pinned without counting against the budget (registered).
	free bool
}

func newServer(limit, pinLimit int, hints *capHints) *server {
	if hints == nil {
		hints = new(capHints)
	}
	return &server{slots: make(map[string]*slot), limit: limit, pinLimit: pinLimit, hints: hints}
}

// state returns the belief about a script and its generation, for forget.
func (sv *server) state(sha string) (belief, uint64) {
	sv.mu.RLock()
	sl := sv.slots[sha]
	var b belief
	var gen uint64
	if sl != nil {
		b, gen = sl.b, sl.gen
	}
	sv.mu.RUnlock()
	return b, gen
}

// slotFor returns the script's slot, making room for it. Caller holds mu.
func (sv *server) slotFor(sha string) *slot {
	sl := sv.slots[sha]
	if sl == nil {
		sv.makeRoom()
		sl = &slot{}
		sv.slots[sha] = sl
	}
	return sl
}

// ran records that the server ran the script: it has it now.
func (sv *server) ran(sha string) {
	if b, _ := sv.state(sha); b == present || b == pinned || b == asWritten {
		return
	}
	sv.mu.Lock()
	sl := sv.slotFor(sha)
	if sl.b == unknown {
		sl.b = present
		sl.gen++
	}
	sv.mu.Unlock()
}

// forget records a NOSCRIPT for the script to a command sent while the
// belief of generation gen held, and returns what was believed: present
// means the server evicted it, pinned that it was flushed or restarted.
func (sv *server) forget(sha string, gen uint64) belief {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sl := sv.slots[sha]
	if sl == nil || sl.gen != gen {
		return unknown
	}
	was := sl.b
	if was == pinned && !sl.free {
		sv.pins-- // the server no longer holds it
	}
	if was == present {
		sv.evicts.Store(true)
	}
	if was == present || was == pinned {
		sl.b = unknown
	}
	return was
}

// reset forgets everything the server was believed to have: it was flushed,
// restarted or replaced. Loads in flight keep their slots (endLoad ignores
// their outcome) so that no second load starts beside them.
func (sv *server) reset() {
	sv.mu.Lock()
	sv.epoch++
	sv.pins = 0
	for sha, sl := range sv.slots {
		if sl.loading {
			sl.b = unknown
		} else {
			delete(sv.slots, sha)
		}
	}
	sv.mu.Unlock()
}

// closeMulti records the end of a MULTI the caller wrote.
func (sv *server) closeMulti() {
	for {
		n := sv.openMulti.Load()
		if n <= 0 || sv.openMulti.CompareAndSwap(n, n-1) {
			return
		}
	}
}

// connClosed records that one of the server's connections was closed.
func (sv *server) connClosed() { sv.lost.Add(1) }

// readOnlyClosed takes back the close that go-redis makes after a READONLY
// reply (it drops the connection on every READONLY, in case an address
// now leads to another server): the dial after it is no sign of a restart
// or failover, and must not forget what that refusal taught (the server is
// a replica), or the hook would load there again before every call.
func (sv *server) readOnlyClosed() {
	for {
		n := sv.lost.Load()
		if n <= 0 || sv.lost.CompareAndSwap(n, n-1) {
			return
		}
	}
}

// dialled is called for every new connection. After a closed connection the
// server behind the new one may be another (failover) or restarted, with an
// empty script cache; the dials that merely grow the pool at start-up are
// not a sign of that.
func (sv *server) dialled(addr string) {
	if old := sv.addr.Load(); old == nil || *old != addr {
		sv.addr.Store(&addr)
	}
	if sv.lost.Swap(0) > 0 {
		sv.reset()
		// The connection that held a MULTI the caller opened may be the
		// one lost. (A SCRIPT FLUSH, which also resets, leaves it open:
		// queued inside that MULTI, it must not make the hook send its
		// own commands into the caller's transaction.)
		sv.openMulti.Store(0)
		sv.resetFns()
		sv.replica.Store(false)
		// A refusal is asked again after a reconnect: an ACL change
		// often comes with its clients' connections killed.
		for c := range sv.caps {
			sv.caps[c].CompareAndSwap(capNo, capUnknown)
		}
	}
}

// makeRoom keeps slots bounded. It drops first the slots of scripts the
// Hook's cache no longer holds, then those not pinned, then any: the
// scripts in use keep their beliefs longest. Caller holds mu.
func (sv *server) makeRoom() {
	if sv.limit <= 0 || len(sv.slots) < sv.limit {
		return
	}
	for pass := 0; pass < 3 && len(sv.slots) >= sv.limit; pass++ {
		for sha, sl := range sv.slots {
			if sl.loading {
				continue
			}
			if pass == 2 || pass == 1 && sl.b != pinned || pass == 0 && sv.cached != nil && !sv.cached(sha) {
				delete(sv.slots, sha)
			}
		}
	}
}

// size reports how many scripts the state tracks (for tests).
func (sv *server) size() int {
	sv.mu.RLock()
	defer sv.mu.RUnlock()
	return len(sv.slots)
}
