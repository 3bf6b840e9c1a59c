package scripthook

// The pin budget and load tickets: who may send the hook's own SCRIPT
// LOAD for a script on a server, and what it cost.

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
// no permission): the script is taken to keep being evicted (more scripts
// in use than the server keeps), and its calls go as written until the next
// reset. By SHA1 each call would risk a NOSCRIPT and a body, more than
// plain EVAL; one eviction is all it costs (one repair per script).
func (sv *server) giveUp(sha string) {
	sv.mu.Lock()
	if sl := sv.slotFor(sha); sl.b == unknown {
		sl.b = asWritten
	}
	sv.mu.Unlock()
}

// risky reports whether a script the hook has not pinned is likely gone by
// its next call: the server evicts, and the pin budget is spent (more
// scripts in use than may be pinned). Such scripts go as written, as plain
// EVAL sends them: by SHA1 each call would risk a NOSCRIPT and a second
// round trip.
func (sv *server) risky() bool {
	if !sv.evicts.Load() {
		return false
	}
	sv.mu.RLock()
	defer sv.mu.RUnlock()
	return sv.pins >= sv.pinLimit
}
