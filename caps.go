package scripthook

import "sync/atomic"

// What a server lets the hook's user run, learned from its replies.

// capability is a command the hook sends on its own initiative, which the
// server's ACL may deny where the caller's own command is allowed; or the
// caller's EVAL and EVAL_RO, which the hook may only turn into EVALSHA where
// the server has shown that it lets the user run them (else the hook would
// run a script that plain EVAL gets NOPERM for).
type capability uint8

const (
	capEvalSha capability = iota
	capEvalShaRO
	capLoad
	capEval
	capEvalRO
	// capFunctionLoad: the hook's own FUNCTION LOAD of a registered library.
	capFunctionLoad
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
	case capEval:
		return "eval"
	case capEvalRO:
		return "eval_ro"
	case capFunctionLoad:
		return "function|load"
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

// bodyCap is the capability a by-body command of kind k needs.
func bodyCap(k kind) capability {
	if k.readOnly() {
		return capEvalRO
	}
	return capEval
}

// learnBody learns, from the reply to a command that carried its body
// (EVAL or EVAL_RO of kind k, the caller's or the hook's), whether the user
// may run it: a refusal names the command; any other reply from the server
// shows that it let the command run (ACL checks the command before keys).
func (sv *server) learnBody(k kind, err error) {
	c := bodyCap(k)
	switch {
	case isDenied(err, c.aclName()):
		sv.learn(c, false)
	case ok(err) || isRedisError(err):
		sv.learn(c, true)
	}
}

// capHints is what every server of one Hook answered about each
// capability: capYes while all that answered allowed it, capNo once one
// did not.
type capHints [numCaps]atomic.Uint32

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
