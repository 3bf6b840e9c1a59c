package scripthook

// group gathers each script's uses in a batch, per segment: a SCRIPT FLUSH
// of the batch's own starts a new one, whose uses need the body again.
func (e *engine) group(p *batchPlan) {
	seg := 0
	segStart := -1
	for i := range p.items {
		it := &p.items[i]
		if it.k == kindScriptFlush {
			seg++
			segStart = i
			continue
		}
		if !it.k.isScript() {
			p.fcalls = p.fcalls || it.lib != nil
			p.fnChange = p.fnChange || it.k == kindFunction
			continue
		}
		p.scripts++
		if it.s == nil {
			continue
		}
		u := p.lookup(it.s, seg)
		if u == nil {
			u = &use{s: it.s, sha: it.s.hex(), seg: seg, first: i, at: i}
			if it.region >= 0 {
				// A body cannot go inside a MULTI the caller wrote (the
				// EXEC's reply would have one more element): it goes
				// before that MULTI, unless the batch's own flush is in
				// between.
				u.at = it.region
				if u.at <= segStart {
					u.at = -1
				}
			}
			if u.sha != "" {
				u.b, u.gen = e.srv.state(u.sha)
			}
			p.add(u)
		}
		u.n++
		if it.k.hasBody() {
			u.evals++
			if it.k.readOnly() {
				u.evalRO = true
			} else {
				u.evalRW = true
			}
			if !it.forges() {
				u.saved += savedBytes(it.k, len(it.s.body))
			}
		}
		if it.k.readOnly() {
			u.ro = true
		} else {
			u.rw = true
		}
		it.u = u
	}
	if n := len(p.items); n > 0 {
		last := &p.items[n-1]
		p.open = last.region >= 0 && last.k != kindExec && last.k != kindDiscard
	}
}

// forges reports a use whose keys or arguments could make an echoing
// script's error reply read like the server's refusal: it goes as written.
func (it *item) forges() bool {
	return it.s != nil && it.s.echoes && argsForge(it.orig.Args()[3:])
}

// decide chooses, for every script of the batch, how its uses go out, by
// one rule: a use goes by SHA1 only where the body's presence on the server
// is certain for the batch (the hook's SCRIPT LOAD ahead of it in the same
// batch, or, in optimistic mode, the hook's belief), where the server lets
// the user run what the hook sends, and where it writes fewer bytes than
// the bodies; everything else goes as written. The one exception is
// PipelineOptimistic, whose misses settle repairs when order allows.
func (e *engine) decide(p *batchPlan) {
	fixed := e.cluster && p.tx
	// How many scripts would carry their bodies in EVAL commands, were
	// SCRIPT LOAD not possible (see lruSafe).
	carriers := 0
	for _, u := range p.uses {
		if u.n >= 2 || u.s.registered.Load() {
			carriers++
		}
	}
	for _, u := range p.uses {
		u.mode = e.modeFor(p, u, fixed, carriers <= lruSafe)
		if u.mode == modeLoad || u.mode == modeLearn {
			u.carrier = newLoadCmd(e.sh, u.s)
		}
	}
}

// modeFor decides one script's mode; see decide.
func (e *engine) modeFor(p *batchPlan, u *use, fixed, fewBodies bool) useMode {
	sv, s := e.srv, u.s
	if s.forgeable || sv.openMulti.Load() > 0 || u.at < 0 {
		return modeAsWritten
	}
	caps := [2]capability{capEvalSha, capEvalShaRO}
	need := [2]bool{u.rw, u.ro}
	allowed, unknownCaps := true, false
	for i, c := range caps {
		if !need[i] {
			continue
		}
		switch sv.can(c) {
		case capNo:
			allowed = false
		case capUnknown:
			unknownCaps = true
		}
	}
	if !allowed {
		return modeAsWritten
	}
	if u.sha == "" {
		// FIPS 140-only mode: learn the SHA1 of a hot script from the
		// reply to a SCRIPT LOAD; this batch's uses go as written.
		hot := (u.n >= 2 || s.seen.Load()) && !s.broken.Load()
		if hot && !fixed && (!p.tx || sv.can(capLoad) == capYes) && !p.open {
			if t := sv.beginLoad("", s.registered.Load(), false); t.ok {
				u.ticket = t
				return modeLearn
			}
		}
		return modeAsWritten
	}
	if u.evalRW && sv.can(capEval) != capYes || u.evalRO && sv.can(capEvalRO) != capYes {
		// The server has not shown that the user may run the caller's
		// EVAL (EVAL_RO): by SHA1 it might run where plain EVAL gets
		// NOPERM. As written, the replies tell; the probes ask the rest.
		if u.hot() {
			p.ask(unknownCaps && u.rw, unknownCaps && u.ro, sv.can(capLoad) == capUnknown)
		}
		return e.warm(p, u, fixed, fewBodies)
	}
	if unknownCaps {
		// The server has not said whether the user may run EVALSHA. A
		// refusal inside a transaction would abort it all, and in a
		// pipeline it could only be repaired when order allows: ask first.
		if u.hot() {
			p.ask(u.rw, u.ro, sv.can(capLoad) == capUnknown)
		}
		return e.warm(p, u, fixed, fewBodies)
	}
	if e.sh.cfg.pipelineMode == PipelineOptimistic && !p.tx && u.seg == 0 && (u.b == present && !sv.risky() || u.b == pinned) {
		return modeTrusted
	}
	if fixed || (p.tx && sv.can(capLoad) != capYes) {
		// No SCRIPT LOAD can be added (a ClusterClient transaction), or a
		// refused one would abort the transaction: the first use carries
		// the body, when the batch's bodies cannot evict each other.
		first := p.items[u.first].k
		worth := first.hasBody() && u.n >= 2 && u.saved-savedBytes(first, len(s.body)) > 0
		if fewBodies && (worth || s.registered.Load()) {
			return modeEvalCarrier
		}
		return modeAsWritten
	}
	if u.saved <= loadBytes(len(s.body)) && !s.registered.Load() {
		return modeAsWritten // the bodies are cheaper than a SCRIPT LOAD and SHA1s
	}
	switch sv.can(capLoad) {
	case capNo:
		if e.bodyFirst(p, u, fewBodies) {
			return modeWarmFirst
		}
		return modeAsWritten
	case capUnknown:
		if u.hot() {
			p.ask(false, false, true)
		}
		return e.warm(p, u, fixed, fewBodies)
	}
	t := sv.beginLoad(u.sha, s.registered.Load(), false)
	if !t.ok {
		return e.withoutLoad(p, u, fixed, fewBodies)
	}
	u.ticket = t
	return modeLoad
}

// withoutLoad is the mode of a script the hook may not load for this batch
// (another caller is loading it, or the pin budget is spent). In a
// pipeline its uses go as written (a NOSCRIPT there can be retried when
// order allows). In a transaction nothing can be retried: where the server
// may lack the script and the caller wrote EVALSHA of a body known to
// compile (or registered it), the first use carries the body.
func (e *engine) withoutLoad(p *batchPlan, u *use, fixed, fewBodies bool) useMode {
	if !p.tx && !fixed || u.b == present || u.b == pinned {
		return modeAsWritten
	}
	// A caller's EVALSHA becomes an EVAL only of a body known to compile:
	// else the EVAL's compile error would replace plain EVALSHA's NOSCRIPT.
	if fewBodies && (u.s.registered.Load() || u.evals < u.n && u.s.compiles.Load()) {
		return modeEvalCarrier
	}
	return modeAsWritten
}

// hot reports a script worth asking the server about: used twice in the
// batch, seen before, or registered. Probes cost bytes; a flood of one-off
// scripts never pays for them.
func (u *use) hot() bool {
	return u.n >= 2 || u.s.seen.Load() || u.s.registered.Load()
}

// warm is the mode of a script whose uses go as written because the
// server has not said what the user may run: a registered script still
// reaches the server before its first use there, so that the caller's
// EVALSHA of it finds it. In a pipeline the hook's SCRIPT LOAD goes ahead
// (a refusal is the hook's own reply, which the caller never sees). In a
// transaction nothing can go before its MULTI (go-redis reads the first
// reply as MULTI's) and a refused command inside would abort it all: the
// first use carries the body as EVAL. For a user who may run EVAL but not
// EVALSHA that EVAL runs where plain EVALSHA is refused; README lists it.
func (e *engine) warm(p *batchPlan, u *use, fixed, fewBodies bool) useMode {
	if !u.s.registered.Load() || u.evals == u.n {
		// Not registered, or every use carries its body: as written.
		return modeAsWritten
	}
	if p.tx || fixed {
		if fewBodies {
			// The first use's body loads the script for the uses
			// after it in the same transaction.
			return modeWarmFirst
		}
		return modeAsWritten
	}
	if e.srv.can(capLoad) == capNo {
		if e.bodyFirst(p, u, fewBodies) {
			return modeWarmFirst
		}
		return modeAsWritten
	}
	if t := e.srv.beginLoad(u.sha, true, false); t.ok {
		u.ticket = t
		return modeLearn
	}
	return modeAsWritten
}

// bodyFirst reports whether a registered script's first use in a pipeline
// where the user may not run SCRIPT LOAD, a caller's EVALSHA, carries the
// body as EVAL instead: only where the server has shown that the user may
// run both that EVAL and the EVALSHA it replaces (so it runs exactly where
// plain EVALSHA would), and where the batch's bodies cannot evict each
// other.
func (e *engine) bodyFirst(p *batchPlan, u *use, fewBodies bool) bool {
	first := p.items[u.first].k
	return fewBodies && u.s.registered.Load() && !first.hasBody() &&
		e.srv.can(shaCap(first)) == capYes && e.srv.can(bodyCap(first)) == capYes
}

// ask records that the batch should end with probes of what the server
// lets the user run (a pipeline that does not end inside a MULTI the caller
// wrote only: a probe there would be queued in the caller's transaction).
func (p *batchPlan) ask(sha, shaRO, load bool) {
	if p.tx || p.open {
		return
	}
	p.askSHA = p.askSHA || sha
	p.askSHARO = p.askSHARO || shaRO
	p.askLoad = p.askLoad || load
}
