package scripthook

import "sync/atomic"

// Stats is a snapshot of a Hook's counters, for logs and dashboards. The
// counters cover every client and node the Hook (and Instrument) serves.
type Stats struct {
	// Rewritten counts EVAL/EVAL_RO commands sent as EVALSHA/EVALSHA_RO.
	Rewritten int64
	// BodiesSent counts script bodies that went to a server: EVAL commands
	// the hook let through or sent to repair, and SCRIPT LOADs it added.
	BodiesSent int64
	// Loads counts the hook's own SCRIPT LOAD commands (each also counts in
	// BodiesSent).
	Loads int64
	// NoScriptRepaired counts NOSCRIPT replies the caller never saw because
	// the hook gave the server the script and ran the call again (the reply
	// proved it had not run).
	NoScriptRepaired int64
	// Evicted counts the NOSCRIPT replies, among those, for scripts the
	// server had run with no flush, restart or lost connection seen in
	// between: a server that evicts scripts (Redis 7.4+, Valkey 8), or
	// another client's SCRIPT FLUSH.
	Evicted int64
	// NoScriptPassed counts NOSCRIPT replies that reached the caller:
	// EVALSHA calls for bodies the hook does not know, and the cases README
	// lists.
	NoScriptPassed int64
	// BytesSaved counts request bytes (RESP) not sent thanks to rewriting.
	BytesSaved int64
	// Scripts is how many script bodies the hook remembers now.
	Scripts int
	// FunctionLoads counts the hook's own FUNCTION LOAD REPLACE commands of
	// registered libraries (each also counts in BodiesSent).
	FunctionLoads int64
	// FunctionRepaired counts "Function not found" replies the caller never
	// saw because the hook loaded the library and ran the call again.
	FunctionRepaired int64
	// FunctionNotFoundPassed counts "Function not found" replies for
	// functions of registered libraries that reached the caller.
	FunctionNotFoundPassed int64
}

// counters are the live values behind Stats.
type counters struct {
	rewritten      atomic.Int64
	bodiesSent     atomic.Int64
	loads          atomic.Int64
	repaired       atomic.Int64
	evicted        atomic.Int64
	noScriptPassed atomic.Int64
	bytesSaved     atomic.Int64
}

// Stats returns a snapshot of the Hook's counters.
func (h *Hook) Stats() Stats {
	c := &h.sh.stats
	return Stats{
		Rewritten:        c.rewritten.Load(),
		BodiesSent:       c.bodiesSent.Load(),
		Loads:            c.loads.Load(),
		NoScriptRepaired: c.repaired.Load(),
		Evicted:          c.evicted.Load(),
		NoScriptPassed:   c.noScriptPassed.Load(),
		BytesSaved:       c.bytesSaved.Load(),
		Scripts:          h.sh.cache.len(),

		FunctionLoads:          h.sh.fns.loads.Load(),
		FunctionRepaired:       h.sh.fns.repaired.Load(),
		FunctionNotFoundPassed: h.sh.fns.passed.Load(),
	}
}
