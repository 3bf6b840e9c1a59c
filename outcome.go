package scripthook

// This file is the one vocabulary for what happened to a script command:
// the engine writes it, and Stats, metrics and spans read it.

// sent is what went out for a caller's script command.
type sent uint8

const (
	// sentAsWritten: the caller's command, unchanged.
	sentAsWritten sent = iota
	// sentBySHA: the caller's EVAL/EVAL_RO as EVALSHA/EVALSHA_RO.
	sentBySHA
	// sentByBody: the caller's EVALSHA/EVALSHA_RO as EVAL/EVAL_RO of the
	// body the hook knows.
	sentByBody
)

// wire is the command that went out for a caller's command of kind k.
func (s sent) wire(k kind) kind {
	switch s {
	case sentBySHA:
		return k.bySHA()
	case sentByBody:
		return k.byBody()
	}
	return k
}

// repair is how a script the server did not have was given back to it.
type repair uint8

const (
	repairNone repair = iota
	// repairLoad: the hook's SCRIPT LOAD, then the call by SHA1.
	repairLoad
	// repairBody: the call with its body (as written, or an EVAL of the
	// known body), because a SCRIPT LOAD was not possible or failed.
	repairBody
)

// String names the repair for the span event and the metric.
func (r repair) String() string {
	switch r {
	case repairLoad:
		return "load"
	case repairBody:
		return "body"
	}
	return ""
}

// cause is why a repair was needed, from what the hook believed before the
// server answered NOSCRIPT.
type cause uint8

const (
	causeNone cause = iota
	// causeEvicted: the script had run there and nothing was flushed or
	// restarted that the hook saw: the server evicted it (Redis 7.4+,
	// Valkey 8), or another client flushed it.
	causeEvicted
	// causeLost: the hook had pinned it with SCRIPT LOAD, which is never
	// evicted: the server was flushed, restarted or replaced.
	causeLost
	// causeMissing: the hook did not believe the server had it (a caller's
	// EVALSHA).
	causeMissing
)

// String names the cause for the span event.
func (c cause) String() string {
	switch c {
	case causeEvicted:
		return "evicted"
	case causeLost:
		return "lost"
	case causeMissing:
		return "missing"
	}
	return ""
}

// causeOf turns the belief forget returned into a cause.
func causeOf(b belief) cause {
	switch b {
	case present:
		return causeEvicted
	case pinned:
		return causeLost
	}
	return causeMissing
}

// run is what happened to one script command, filled in by the engine and
// read by telemetry once the command is done.
type run struct {
	s      *script
	srv    *server
	sent   sent
	repair repair
	cause  cause
	// bodies counts the script bodies that crossed the wire for this call,
	// the hook's SCRIPT LOAD included.
	bodies int
}
