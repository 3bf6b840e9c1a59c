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
	// evictions counts the evictions giveUp saw.
	evictions uint8
}

// capability is a command the hook sends on its own initiative, which the
// server's ACL may deny where the caller's own command is allowed.
type capability uint8

const (
	capEvalSha capability = iota
	capEvalShaRO
	capLoad
	numCaps
)

// Answers a server gave about a capability.
const (
	capUnknown uint32 = iota
	capYes
	capNo
)

// aclName is the command as ACL names it in a NOPERM reply.
func (c capability) aclName() string {
	switch c {
	case capEvalSha:
		return "evalsha"
	case capEvalShaRO:
		return "evalsha_ro"
	}
	return "script|load"
}

// shaCap is the capability a by-SHA1 command of kind k needs.
func shaCap(k kind) capability {
	if k.readOnly() {
		return capEvalShaRO
	}
	return capEvalSha
}

// capHints is what every server of one Hook answered about each
// capability: capYes while all that answered allowed it, capNo once one
// did not.
type capHints [numCaps]atomic.Uint32

func newServer(limit, pinLimit int, hints *capHints) *server {
	if hints == nil {
		hints = new(capHints)
	}
	return &server{slots: make(map[string]*slot), limit: limit, pinLimit: pinLimit, hints: hints}
}

// can reports what the server answered about a capability, or, while it
// has not, capYes when every other server of the Hook allowed it. (A user's
// permissions are normally the same on every server; a server that differs
// costs at most one refusal, which the hook then learns.)
func (sv *server) can(c capability) uint32 {
	if v := sv.caps[c].Load(); v != capUnknown {
		return v
	}
	if sv.hints[c].Load() == capYes {
		return capYes
	}
	return capUnknown
}

// learn records the server's answer about a capability. Capabilities belong
// to the user, not to the script cache, so a flush keeps them; a later
// denial is learned from its NOPERM, and a denial is forgotten when a
// connection is dialled after one was lost (see dialled).
func (sv *server) learn(c capability, allowed bool) {
	v := capNo
	if allowed {
		v = capYes
	}
	if sv.caps[c].Swap(v) == v {
		return
	}
	if allowed {
		sv.hints[c].CompareAndSwap(capUnknown, capYes)
	} else {
		sv.hints[c].Store(capNo)
	}
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
	if was == present || was == pinned {
		sl.b = unknown
	}
	return was
}

// loadTicket is a caller's right to send the hook's own SCRIPT LOAD for a
// script. The zero ticket grants nothing; why says what refused it.
type loadTicket struct {
	ok    bool
	why   refusal
	epoch uint64
	// free: the load takes nothing from the pin budget (a registered
	// script, or one already pinned).
	free bool
}

// refusal says why a load was not granted.
type refusal uint8

const (
	granted  refusal = iota
	busy             // another caller is loading it right now
	noBudget         // the pin budget is spent
	denied           // the server does not let the user run SCRIPT LOAD
)

// beginLoad asks to pin a script with the hook's SCRIPT LOAD. It is granted
// when the server allows SCRIPT LOAD (or has not said), the pin budget has
// room (free: a registered script, pinned in addition), and, when
// exclusive, no other caller is loading it (that caller's load will do; a
// batch, which must carry its own, asks without exclusive). sha may be ""
// (FIPS 140-only mode, before the server told the SHA1): then only the
// budget is checked. Every granted ticket must be given to endLoad.
func (sv *server) beginLoad(sha string, free, exclusive bool) loadTicket {
	if sv.can(capLoad) == capNo {
		return loadTicket{why: denied}
	}
	sv.mu.Lock()
	defer sv.mu.Unlock()
	var sl *slot
	if sha != "" {
		sl = sv.slotFor(sha)
		if exclusive && sl.loading {
			return loadTicket{why: busy}
		}
		if sl.b == pinned {
			free = true // counted when it was pinned
		}
	}
	if !free {
		if sv.pins >= sv.pinLimit {
			return loadTicket{why: noBudget}
		}
		sv.pins++
	}
	if sl != nil && exclusive {
		sl.loading = true
	}
	return loadTicket{ok: true, epoch: sv.epoch, free: free}
}

// endLoad ends a granted load. reserved is the SHA1 the ticket was asked
// for ("" if unknown then), sha the one the reply told, loaded whether the
// server replied with it. The script counts against the budget only while
// it is believed pinned: a load that failed, or that found the script
// already pinned, gives its share back.
func (sv *server) endLoad(t loadTicket, reserved, sha string, loaded bool) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if reserved != "" {
		if sl := sv.slots[reserved]; sl != nil {
			sl.loading = false
		}
	}
	same := t.epoch == sv.epoch
	if !loaded || !same {
		if !t.free && same {
			sv.pins--
		}
		return
	}
	sl := sv.slotFor(sha)
	switch {
	case sl.b == pinned:
		if !t.free {
			sv.pins-- // another load pinned it first
		}
	case sl.b == present:
		// On Redis a SCRIPT LOAD of a script EVAL created leaves it
		// evictable (Valkey 8 pins it): keep believing it can go.
		if !t.free {
			sv.pins--
		}
	default:
		sl.b = pinned
		sl.free = t.free
		sl.gen++
	}
}

// rebase moves a ticket granted before the batch's own SCRIPT FLUSH into
// the epoch that flush began, taking its share of the budget again.
func (sv *server) rebase(t loadTicket) loadTicket {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	t.epoch = sv.epoch
	if !t.free {
		sv.pins++
	}
	return t
}

// giveUp records an eviction of a script that cannot be pinned (no budget,
// no permission). The second time, the script is taken to keep being
// evicted (more scripts in use than the server keeps), and its calls go as
// written until the next reset: by SHA1 each call would cost a NOSCRIPT and
// a body, more than plain EVAL.
func (sv *server) giveUp(sha string) {
	sv.mu.Lock()
	sl := sv.slotFor(sha)
	if sl.evictions < 255 {
		sl.evictions++
	}
	if sl.b == unknown && sl.evictions >= 2 {
		sl.b = asWritten
	}
	sv.mu.Unlock()
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
	sv.openMulti.Store(0)
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
