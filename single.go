package scripthook

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// engine is the part of a hook that sends commands to one server: a client
// hook's, or one node's under a ClusterClient or Ring. It owns the control
// flow of every script command; telemetry only observes what it records in
// a run.
type engine struct {
	sh  *shared
	srv *server
	// cluster marks a ClusterClient's node, whose batches go-redis handles
	// differently from a Client's (see plan).
	cluster bool
	// readRouted marks a node of a ClusterClient that sends read-only
	// commands to replicas (ReadOnly, RouteByLatency, RouteRandomly): an
	// FCALL_RO there may be on a replica (see preloads).
	readRouted bool
}

// preloads reports whether a call of kind k gets the hook's FUNCTION LOAD
// ahead of it where the server is not known to hold the library. An
// FCALL_RO on a read-routed ClusterClient does not: it may be on a
// replica, which has the library by replication and refuses the load with
// READONLY, on which go-redis closes the connection (the hook then forgets
// all it knew of the server) and, in a pipeline, marks the replica as
// failing and re-sends the caller's commands to the primary. A
// "Function not found" is repaired as everywhere.
func (e *engine) preloads(k kind) bool {
	return !(e.readRouted && k == kindFCallRO)
}

// resolve finds the script a call runs: by the caller's body (proven
// byte for byte), by the caller's SHA1, or carried by a command this Hook
// rewrote earlier and a ClusterClient now re-sends. nil: the hook does not
// know the body.
func (e *engine) resolve(sc *scriptCall, w *rewritten) *script {
	if w != nil {
		return w.s
	}
	if sc.kind.hasBody() {
		return e.sh.cache.forBody(sc.body)
	}
	if sha, ok := normalizeSHA(sc.sha); ok {
		return e.sh.cache.bySHA1(sha)
	}
	return nil
}

// asWritten reports a call that must go exactly as the caller wrote it:
// the server's replies would prove nothing (a MULTI the caller opened), or a
// reply of the script's could read like the server refusing EVALSHA.
func (e *engine) asWritten(cmd redis.Cmder, s *script) bool {
	if s == nil || e.srv.openMulti.Load() > 0 || s.forgeable {
		return true
	}
	return s.echoes && argsForge(cmd.Args()[3:])
}

// runScript sends one script command, rewriting and repairing it where it
// can, and records what it did in r. cmd is the caller's command.
func (e *engine) runScript(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, r *run) error {
	r.s, r.srv = s, e.srv
	if e.asWritten(cmd, s) {
		err := e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
		if !sc.kind.hasBody() && isNoScript(err) {
			e.sh.stats.noScriptPassed.Add(1)
		}
		return err
	}
	if sc.kind.hasBody() {
		return e.runEval(ctx, cmd, sc, s, next, r)
	}
	return e.runEvalSha(ctx, cmd, sc, s, next, r)
}

// runEval handles the caller's EVAL/EVAL_RO. The first call on a server
// goes as written (one body, as plain EVAL), and from then on by SHA1.
func (e *engine) runEval(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, r *run) error {
	sha := s.hex()
	if !e.sh.cfg.rewrite || savedBytes(sc.kind, len(s.body)) <= 0 || e.srv.can(shaCap(sc.kind)) == capNo ||
		e.srv.can(bodyCap(sc.kind)) != capYes {
		// Rewriting is off, or EVALSHA would be longer than the body, or
		// the user may not run EVALSHA here, or the server has not yet
		// shown that the user may run the EVAL itself.
		return e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
	}
	if sha == "" {
		// SHA-1 may not be used here (FIPS 140-only mode): a script that
		// proved hot is pinned, and the server's reply tells its SHA1.
		if !s.seen.Load() || s.broken.Load() {
			return e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
		}
		return e.loadThenRun(ctx, cmd, sc, s, next, r)
	}
	b, gen := e.srv.state(sha)
	switch b {
	case present, pinned:
		if b == present && e.srv.risky() {
			return e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
		}
		err := e.send(ctx, cmd, sc, s, sentBySHA, next, r)
		if isNoScript(err) {
			return e.repair(ctx, cmd, sc, s, causeOf(e.srv.forget(sha, gen)), err, next, r)
		}
		if isDenied(err, shaCap(sc.kind).aclName()) {
			// The user may run EVAL but not EVALSHA, which nothing ran.
			e.srv.learn(shaCap(sc.kind), false)
			return e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
		}
		return err
	case unknown:
		if s.registered.Load() {
			return e.loadThenRun(ctx, cmd, sc, s, next, r) // warm a registered script
		}
	}
	return e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
}

// runEvalSha handles the caller's EVALSHA/EVALSHA_RO of a script whose body
// the hook knows. It goes out as written; a NOSCRIPT is repaired, and a
// registered script is loaded first where the server may not have it.
func (e *engine) runEvalSha(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, r *run) error {
	sha := s.hex()
	b, gen := e.srv.state(sha)
	if b == unknown && s.registered.Load() && sha != "" {
		if t := e.srv.beginLoad(sha, true, true); t.ok {
			if e.load(ctx, s, t, next, r) {
				_, gen = e.srv.state(sha)
			}
		}
	}
	err := e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
	if isNoScript(err) {
		return e.repair(ctx, cmd, sc, s, causeOf(e.srv.forget(sha, gen)), err, next, r)
	}
	return err
}

// repair runs a call whose EVALSHA met the server's NOSCRIPT (so nothing
// ran): the hook's SCRIPT LOAD makes the script permanent there, then the
// call goes by SHA1. When no load is possible (no permission, no budget, or
// another caller is loading it right now) the call goes with its body,
// which is what plain EVAL would have sent. A script that keeps being
// evicted and cannot be pinned is sent as written from then on.
func (e *engine) repair(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, c cause, noScript error, next redis.ProcessHook, r *run) error {
	r.cause = c
	if c == causeEvicted {
		e.sh.stats.evicted.Add(1)
	}
	err := e.recover(ctx, cmd, sc, s, next, r)
	if r.repair == repairBody && !sc.kind.hasBody() && isDenied(err, bodyCap(sc.kind).aclName()) {
		// The caller wrote EVALSHA, and the user may not run the EVAL the
		// repair sent (which ran nothing): the caller gets the server's
		// reply to what it wrote.
		cmd.SetErr(noScript)
		err = noScript
	}
	if isNoScript(err) {
		e.sh.stats.noScriptPassed.Add(1)
	} else if ctx.Err() == nil || err == nil {
		e.sh.stats.repaired.Add(1)
	}
	return err
}

// recover is repair without the accounting.
func (e *engine) recover(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, r *run) error {
	sha := s.hex()
	if b, _ := e.srv.state(sha); (b == present || b == pinned) && e.srv.can(shaCap(sc.kind)) != capNo {
		// Another caller gave the server the script since this call's
		// EVALSHA went out: run by SHA1 (a flush in between costs the body).
		r.repair = repairLoad
		err := e.sendBySHA(ctx, cmd, sc, s, next, r)
		if !isNoScript(err) {
			return err
		}
		r.repair = repairBody
		return e.send(ctx, cmd, sc, s, bodyForm(sc.kind), next, r)
	}
	t := e.srv.beginLoad(sha, s.registered.Load(), true)
	if !t.ok {
		if t.why != busy && r.cause == causeEvicted {
			e.srv.giveUp(sha)
		}
		r.repair = repairBody
		return e.send(ctx, cmd, sc, s, bodyForm(sc.kind), next, r)
	}
	if !e.load(ctx, s, t, next, r) {
		r.repair = repairBody
		return e.send(ctx, cmd, sc, s, bodyForm(sc.kind), next, r)
	}
	r.repair = repairLoad
	err := e.sendBySHA(ctx, cmd, sc, s, next, r)
	if isNoScript(err) {
		// Flushed again between the load and the call: the body goes.
		r.repair = repairBody
		return e.send(ctx, cmd, sc, s, bodyForm(sc.kind), next, r)
	}
	return err
}

// sendBySHA sends the call in its by-SHA1 form. A refusal of an EVALSHA
// the hook wrote for the caller's EVAL (the user may not run EVALSHA) ran
// nothing: it is learned for the server and the call goes as written.
func (e *engine) sendBySHA(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, r *run) error {
	f := shaForm(sc.kind)
	err := e.send(ctx, cmd, sc, s, f, next, r)
	if f == sentBySHA && isDenied(err, shaCap(sc.kind).aclName()) {
		e.srv.learn(shaCap(sc.kind), false)
		return e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
	}
	return err
}

// loadThenRun pins a script before its call: a registered script on a
// server that may not have it, or (FIPS 140-only mode) a hot script whose
// SHA1 only the server can tell.
func (e *engine) loadThenRun(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, next redis.ProcessHook, r *run) error {
	t := e.srv.beginLoad(s.hex(), s.registered.Load(), true)
	if !t.ok || !e.load(ctx, s, t, next, r) {
		return e.send(ctx, cmd, sc, s, sentAsWritten, next, r)
	}
	return e.sendBySHA(ctx, cmd, sc, s, next, r)
}

// bodyForm and shaForm are how a caller's command of kind k goes with its
// body and by SHA1.
func bodyForm(k kind) sent {
	if k.hasBody() {
		return sentAsWritten
	}
	return sentByBody
}

func shaForm(k kind) sent {
	if k.hasBody() {
		return sentBySHA
	}
	return sentAsWritten
}

// load sends the hook's own SCRIPT LOAD for a granted ticket and reports
// whether the server now has the script pinned. A failure is not the
// caller's: it only makes the caller's command go with its body, so that the
// caller gets plain EVAL's own reply (a compile error's text is the same).
func (e *engine) load(ctx context.Context, s *script, t loadTicket, next redis.ProcessHook, r *run) bool {
	lc := newLoadCmd(e.sh, s)
	lc.active.Store(true)
	err := next(ctx, lc)
	lc.active.Store(false)
	r.bodies++
	e.sh.stats.bodiesSent.Add(1)
	e.sh.stats.loads.Add(1)
	sha, loaded := e.settleLoad(lc, err)
	e.srv.endLoad(t, s.hex(), sha, loaded)
	return loaded
}

// settleLoad reads the reply to the hook's SCRIPT LOAD: the SHA1 the server
// computed (learned, when the hook may not compute SHA-1 itself) and
// whether it is the script's. It learns the server's SCRIPT LOAD permission.
func (e *engine) settleLoad(lc *loadCmd, err error) (string, bool) {
	if err == nil {
		err = lc.Err()
	}
	switch {
	case isDenied(err, capLoad.aclName()):
		e.srv.learn(capLoad, false)
		return "", false
	case err != nil:
		if isRedisError(err) {
			e.srv.learn(capLoad, true)
		}
		if isCompileError(err) {
			lc.s.broken.Store(true)
		}
		return "", false
	}
	e.srv.learn(capLoad, true)
	sha, valid := normalizeSHA(lc.Val())
	if !valid {
		return "", false
	}
	if known := lc.s.hex(); known != "" {
		return sha, sha == known
	}
	e.sh.cache.learnSHA(lc.s, sha)
	return sha, true
}

// send writes the caller's command in form f through next and records it.
func (e *engine) send(ctx context.Context, cmd redis.Cmder, sc *scriptCall, s *script, f sent, next redis.ProcessHook, r *run) error {
	r.sent = f
	switch f {
	case sentBySHA:
		ref := s.sha.Load()
		err := e.sendRewritten(ctx, cmd, sc.kind, s, sc.kind.bySHA(), ref.arg, next)
		e.sh.stats.rewritten.Add(1)
		e.sh.stats.bytesSaved.Add(int64(savedBytes(sc.kind, len(s.body))))
		e.settleSHA(sc.kind, ref.hex, err)
		return err
	case sentByBody:
		err := e.sendRewritten(ctx, cmd, sc.kind, s, sc.kind.byBody(), s.body, next)
		e.srv.learnBody(sc.kind, err)
		r.bodies++
		e.sh.stats.bodiesSent.Add(1)
		if ok(err) {
			e.srv.ran(s.hex())
		}
		return err
	}
	err := next(ctx, cmd)
	if sc.kind.hasBody() {
		e.srv.learnBody(sc.kind, err)
		r.bodies++
		e.sh.stats.bodiesSent.Add(1)
	}
	if s != nil && ok(err) {
		if sha := s.hex(); sha != "" {
			e.srv.ran(sha)
		}
	}
	return err
}

// sendRewritten sends the caller's command as kind to, with second (the
// SHA1 or the body) in place of the caller's, marked in flight below the
// hook while next runs.
func (e *engine) sendRewritten(ctx context.Context, cmd redis.Cmder, k kind, s *script, to kind, second interface{}, next redis.ProcessHook) error {
	w := newRewritten(e.sh, cmd, k, s, to, second)
	w.active.Store(true)
	err := next(ctx, w)
	w.active.Store(false)
	return err
}

// settleSHA learns from the reply to an EVALSHA the hook sent: it ran, or
// the user may run EVALSHA here at all.
func (e *engine) settleSHA(k kind, sha string, err error) {
	switch {
	case ok(err):
		e.srv.ran(sha)
		e.srv.learn(shaCap(k), true)
	case isNoScript(err):
		e.srv.learn(shaCap(k), true)
	}
}

// control handles the caller's commands that change what the hook may
// believe about the server: SCRIPT FLUSH, and a MULTI, EXEC or DISCARD it
// sends as single commands (on a Conn, say).
func (e *engine) control(ctx context.Context, cmd redis.Cmder, k kind, next redis.ProcessHook) error {
	err := next(ctx, cmd)
	switch k {
	case kindScriptFlush:
		if err == nil {
			e.srv.reset()
		}
	case kindMulti:
		if err == nil {
			e.srv.openMulti.Add(1)
		}
	case kindExec, kindDiscard:
		e.srv.closeMulti()
	case kindFunction:
		if err == nil {
			e.functionChanged(cmd.Args())
		}
	}
	return err
}

// functionChanged records what a caller's successful FUNCTION FLUSH,
// DELETE, LOAD or RESTORE changed on the server.
func (e *engine) functionChanged(args []interface{}) {
	sub, _ := word(args[1])
	switch {
	case equalFold(sub, "delete"):
		if len(args) >= 3 {
			if name, ok := textArg(args[2]); ok {
				e.srv.dropFn(name)
			}
		}
	case equalFold(sub, "load"):
		if name := libraryOf(args); name != "" {
			e.srv.callerLoaded(name, &e.sh.libs)
		}
	default: // FLUSH, RESTORE
		e.srv.resetFns()
	}
}
