package scripthook

import "sync/atomic"

// Stats is a snapshot of a Hook's counters, for logs and dashboards. The
// counters cover every client and node the Hook (and Instrument) serves.
type Stats struct {
	// Rewritten counts EVAL/EVAL_RO commands sent as EVALSHA/EVALSHA_RO.
	Rewritten int64
	// BodiesSent counts script bodies that went to a server: EVAL commands
	// the hook let through or sent to reload, and SCRIPT LOADs it added.
	BodiesSent int64
	// NoScriptRepaired counts NOSCRIPT replies the caller never saw because
	// the hook reloaded the script and ran it again.
	NoScriptRepaired int64
	// NoScriptPassed counts NOSCRIPT replies that reached the caller: EVALSHA
	// calls for bodies the hook does not know, or (optimistic pipelines) ones
	// it could not retry without reordering.
	NoScriptPassed int64
	// BytesSaved counts request bytes (RESP) not sent thanks to rewriting.
	BytesSaved int64
	// Scripts is how many script bodies the hook remembers now.
	Scripts int
}

// counters are the live values behind Stats.
type counters struct {
	rewritten      atomic.Int64
	bodiesSent     atomic.Int64
	repaired       atomic.Int64
	noScriptPassed atomic.Int64
	bytesSaved     atomic.Int64
}

// Stats returns a snapshot of the Hook's counters.
func (h *Hook) Stats() Stats {
	c := &h.sh.stats
	return Stats{
		Rewritten:        c.rewritten.Load(),
		BodiesSent:       c.bodiesSent.Load(),
		NoScriptRepaired: c.repaired.Load(),
		NoScriptPassed:   c.noScriptPassed.Load(),
		BytesSaved:       c.bytesSaved.Load(),
		Scripts:          h.sh.cache.len(),
	}
}
