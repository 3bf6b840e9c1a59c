package scripthook

import (
	"context"
	"sync"
	"sync/atomic"
)

// nodeState is what scripthook believes one server has loaded, and the
// reloads in flight there. One exists per server the hook is attached to: the
// Hook's own for a *redis.Client, one per node under Instrument.
//
// The lock protects the bookkeeping only; no server call is made under it.
type nodeState struct {
	mu sync.RWMutex
	// epoch counts resets (new connections). A reload that started in an
	// older epoch may have reached the server before a restart, so it must
	// not mark the script loaded in the new one.
	epoch uint64
	slots map[*script]*slot
	// lost counts connections closed since the last dial.
	lost atomic.Int64
	// addr is the address last dialled, for traces.
	addr atomic.Pointer[string]
	// limit bounds slots: past it, slots of evicted scripts are dropped, and
	// if that is not enough the map is cleared (a cleared entry costs one
	// body transfer later, never a wrong result).
	limit int
}

// slot is one script's state on one node. Guarded by nodeState.mu.
type slot struct {
	loaded bool
	// gen counts the times the script was marked loaded. A NOSCRIPT only
	// unmarks it if no load was confirmed since the caller looked: a reply to
	// a command sent before another caller's reload must not undo it.
	gen    uint64
	flight *flight
}

// flight is a body transfer in progress: the first caller that needs the
// script on a node sends it, the others wait on done.
type flight struct {
	done  chan struct{}
	epoch uint64
	// waiters counts callers that waited for this flight.
	waiters atomic.Int32
	// ok and gen are written once before done is closed, read only after:
	// ok is true when the server confirmed it has the script, gen is the
	// belief's generation (0 if the node was reset meanwhile).
	ok  bool
	gen uint64
}

func newNodeState(limit int) *nodeState {
	return &nodeState{slots: make(map[*script]*slot), limit: limit}
}

// loaded reports whether the node is believed to have the script, and the
// generation of that belief, to give to forget.
func (n *nodeState) loaded(s *script) (bool, uint64) {
	n.mu.RLock()
	sl := n.slots[s]
	var ok bool
	var gen uint64
	if sl != nil {
		ok, gen = sl.loaded, sl.gen
	}
	n.mu.RUnlock()
	return ok, gen
}

// begin decides what a caller that wants the script on the node does:
// loaded (send EVALSHA), lead (send the body, then call finish) or wait on
// the returned flight.
func (n *nodeState) begin(s *script) (loaded bool, gen uint64, fl *flight, lead bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	sl := n.slots[s]
	if sl == nil {
		n.makeRoom()
		sl = &slot{}
		n.slots[s] = sl
	}
	if sl.loaded {
		return true, sl.gen, nil, false
	}
	if sl.flight != nil {
		return false, 0, sl.flight, false
	}
	sl.flight = &flight{done: make(chan struct{}), epoch: n.epoch}
	return false, 0, sl.flight, true
}

// finish ends a flight. ok says the server now has the script.
func (n *nodeState) finish(s *script, fl *flight, ok bool) {
	n.mu.Lock()
	if sl := n.slots[s]; sl != nil && sl.flight == fl {
		sl.flight = nil
		if ok && fl.epoch == n.epoch {
			sl.loaded = true
			sl.gen++
			fl.gen = sl.gen
		}
	}
	n.mu.Unlock()
	fl.ok = ok
	close(fl.done)
}

// markLoaded records that the server ran the script by SHA1.
func (n *nodeState) markLoaded(s *script) {
	if ok, _ := n.loaded(s); ok {
		return
	}
	n.mu.Lock()
	sl := n.slots[s]
	if sl == nil {
		n.makeRoom()
		sl = &slot{}
		n.slots[s] = sl
	}
	sl.loaded = true
	sl.gen++
	n.mu.Unlock()
}

// forget records that the server answered NOSCRIPT for the script to a
// command sent while the belief of generation gen held.
func (n *nodeState) forget(s *script, gen uint64) {
	n.mu.Lock()
	if sl := n.slots[s]; sl != nil && sl.gen == gen {
		sl.loaded = false
	}
	n.mu.Unlock()
}

// reset forgets everything the node was believed to have. Flights in progress still wake their waiters.
func (n *nodeState) reset() {
	n.mu.Lock()
	n.epoch++
	for s, sl := range n.slots {
		if sl.flight == nil {
			delete(n.slots, s)
		} else {
			sl.loaded = false
		}
	}
	n.mu.Unlock()
}

// connClosed records that one of the node's connections was closed.
func (n *nodeState) connClosed() { n.lost.Add(1) }

// dialled is called for every new connection. After a closed connection the
// server behind the new one may be another (failover) or restarted, with an
// empty script cache.
func (n *nodeState) dialled(addr string) {
	if old := n.addr.Load(); old == nil || *old != addr {
		n.addr.Store(&addr)
	}
	if n.lost.Swap(0) > 0 {
		n.reset()
	}
}

// makeRoom keeps slots bounded. Caller holds n.mu.
func (n *nodeState) makeRoom() {
	if n.limit <= 0 || len(n.slots) < n.limit {
		return
	}
	for s, sl := range n.slots {
		if s.evicted.Load() && sl.flight == nil {
			delete(n.slots, s)
		}
	}
	if len(n.slots) < n.limit {
		return
	}
	for s, sl := range n.slots {
		if sl.flight == nil {
			delete(n.slots, s)
		}
	}
}

// wait blocks until the flight ends or ctx is done.
func (fl *flight) wait(ctx context.Context) (ok bool, gen uint64, err error) {
	fl.waiters.Add(1)
	select {
	case <-fl.done:
		return fl.ok, fl.gen, nil
	case <-ctx.Done():
		return false, 0, ctx.Err()
	}
}

// inFlight returns the flight in progress for s, or nil (for tests).
func (n *nodeState) inFlight(s *script) *flight {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if sl := n.slots[s]; sl != nil {
		return sl.flight
	}
	return nil
}

// size reports how many scripts the node state tracks (for tests).
func (n *nodeState) size() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.slots)
}
