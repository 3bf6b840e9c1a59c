package scripthook

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// settle reads a batch's replies in order: it learns what the server now
// has and lets the user run, gives a use whose SCRIPT LOAD failed to compile
// the compile error plain EVAL would have given it, marks the uses that
// provably did not run (for retry), and counts.
func (e *engine) settle(p *batchPlan, br *batchRun) {
	sv, st := e.srv, &e.sh.stats
	var rewritten, saved int64
	bodies, seg, next := 0, 0, 0
	carriers := p.carriers()
	for i := range p.items {
		for ; next < len(carriers) && carriers[next].at == i; next++ {
			bodies++
			e.settleCarrier(carriers[next])
		}
		it := &p.items[i]
		if it.k == kindScriptFlush {
			seg++
			if it.cmd.Err() == nil {
				// The batch emptied the server's cache here: only what
				// comes after is there. Loads planned after it belong
				// to the new epoch.
				sv.reset()
				for _, u := range p.uses {
					if u.seg >= seg && u.ticket.ok {
						u.ticket = sv.rebase(u.ticket)
					}
				}
			}
			continue
		}
		if !p.tx && (it.k == kindExec || it.k == kindDiscard) && it.region < 0 {
			sv.closeMulti() // it ends a MULTI the caller opened before
		}
		if !it.k.isScript() {
			continue
		}
		if it.k.hasBody() && it.form == sentAsWritten || it.form == sentByBody {
			bodies++
		}
		if it.form == sentBySHA {
			rewritten++
			saved += int64(savedBytes(it.k, len(it.s.body)))
		}
		if it.u == nil {
			continue
		}
		e.settleUse(p, it)
	}
	if p.open {
		sv.openMulti.Add(1) // the caller's MULTI stays open after the batch
	}
	for _, c := range p.probes {
		e.settleProbe(c)
	}
	e.settleFns(p)
	st.bodiesSent.Add(int64(bodies))
	st.rewritten.Add(rewritten)
	st.bytesSaved.Add(saved)
	br.bodies += bodies + len(p.fnLoads) // settleFns counted the loads in Stats
	br.rewritten += int(rewritten)
}

// settleUse settles one use of a script the hook knows.
func (e *engine) settleUse(p *batchPlan, it *item) {
	sv, u := e.srv, it.u
	err := it.orig.Err()
	if it.form == sentBySHA && isNoScript(err) {
		// Plain EVAL would have given this use the compile error its first
		// use got: the body is the same.
		if cerr := u.carrierErr(p); isCompileError(cerr) {
			it.orig.SetErr(cerr)
			return
		}
	}
	if it.blind {
		return // the reply is QUEUED, or a redirect left it empty
	}
	w := it.form.wire(it.k) // what went out
	if w.hasBody() {
		sv.learnBody(w, err)
	}
	if !w.hasBody() && (ok(err) || isNoScript(err)) {
		// An EVALSHA went out, the hook's or the caller's, and the server
		// looked its SHA1 up: the user may run it (a refusal comes before
		// the lookup). This is also how transactions, which never carry
		// probes, learn it. (A caller's EVALSHA sent as EVAL proves
		// nothing about EVALSHA.)
		sv.learn(shaCap(w), true)
	}
	sha := u.sha
	switch {
	case ok(err):
		if sha != "" {
			sv.ran(sha)
		}
		u.s.compiles.Store(true)
	case isNoScript(err):
		if w.hasBody() || it.form != sentBySHA && (u.s.forgeable || it.forges()) {
			// The server never answers NOSCRIPT to a command that carried
			// its body: the script ran and said so itself.
			return
		}
		it.failed = true
		if !u.forgot && (u.mode == modeTrusted || it.form == sentAsWritten) {
			u.forgot = true
			u.cause = causeOf(sv.forget(sha, u.gen))
			if u.cause == causeEvicted {
				e.sh.stats.evicted.Add(1)
			}
		}
		it.cause = u.cause
		if it.cause == causeNone {
			it.cause = causeLost // the batch's own SCRIPT LOAD did not hold
		}
	case it.form == sentBySHA && isDenied(err, shaCap(it.k).aclName()):
		sv.learn(shaCap(it.k), false)
		it.failed = true
	}
}

// settleProbe learns a permission from the reply to one of the batch's
// probes: the server's refusal, or any other reply, which shows it let the
// command run.
func (e *engine) settleProbe(c *redis.Cmd) {
	k := classify(c.Args())
	capa, err := capLoad, c.Err()
	if k.isScript() {
		capa = shaCap(k)
	}
	switch {
	case isDenied(err, capa.aclName()):
		e.srv.learn(capa, false)
	case err == nil || isRedisError(err):
		e.srv.learn(capa, true)
	}
}

// carrierErr is the error of the command that brought the use's body.
func (u *use) carrierErr(p *batchPlan) error {
	switch {
	case u.carrier != nil:
		return u.carrier.Err()
	case u.mode == modeEvalCarrier:
		return p.items[u.first].orig.Err()
	}
	return nil
}

// settleCarrier reads the reply to the hook's SCRIPT LOAD in a batch.
func (e *engine) settleCarrier(u *use) {
	e.sh.stats.loads.Add(1)
	sha, loaded := e.settleLoad(u.carrier, nil)
	if loaded {
		u.s.compiles.Store(true)
	}
	if u.ticket.ok {
		e.srv.endLoad(u.ticket, u.sha, sha, loaded)
	}
}

// carriers returns the plan's SCRIPT LOADs in the order they were placed.
func (p *batchPlan) carriers() []*use {
	var cs []*use
	for _, u := range p.uses {
		if u.carrier != nil && u.at >= 0 {
			cs = append(cs, u)
		}
	}
	// Insertion sort: there are few, and mostly in order already.
	for i := 1; i < len(cs); i++ {
		for j := i; j > 0 && cs[j].at < cs[j-1].at; j-- {
			cs[j], cs[j-1] = cs[j-1], cs[j]
		}
	}
	return cs
}

// retry re-sends, in one more round trip, the uses of a pipeline that
// provably did not run, but only when nothing that took effect follows the
// first of them (no command that succeeded, and no script or function
// call, whose error reply may follow its writes), so that the retry cannot
// change the order in which anything happened. Otherwise their errors stay (NOSCRIPT, as without the
// hook for the ones the caller sent by SHA1; see README for the rest).
func (e *engine) retry(ctx context.Context, p *batchPlan, next redis.ProcessPipelineHook, br *batchRun) (error, bool) {
	first := -1
	for i := range p.items {
		if p.items[i].failed {
			first = i
			break
		}
	}
	if first < 0 {
		return nil, false
	}
	e.fnVerify(ctx, p, next)
	for first = 0; first < len(p.items) && !p.items[first].failed; first++ {
	}
	if first == len(p.items) {
		return nil, false
	}
	var again []item
	for i := first; i < len(p.items); i++ {
		it := &p.items[i]
		if it.failed {
			again = append(again, item{cmd: it.cmd, orig: it.orig, k: it.k, call: it.call, s: it.s, lib: it.lib, region: -1, index: i})
			continue
		}
		if ok(it.orig.Err()) || it.k.isScript() || it.k.isFCall() {
			// Something took effect after the failure: a command that
			// succeeded, or a script or function, which can write before
			// its error reply (redis.call, then redis.error_reply).
			return nil, false
		}
	}
	rp := &batchPlan{items: again, notQueued: true}
	e.group(rp)
	e.decide(rp)
	defer e.abandonFns(rp)
	if err := e.fnPlan(ctx, rp); err != nil {
		return err, true // the caller's context ended: the errors stay
	}
	for _, u := range rp.uses {
		// What the plan would send as written is a caller's EVALSHA that
		// just met NOSCRIPT (a short body, no SCRIPT LOAD possible): sent
		// as written again it could only fail again. Its first use
		// carries the body, unless the user may not run that EVAL (a
		// refusal is given back as the NOSCRIPT below).
		first := rp.items[u.first].k
		if u.mode == modeAsWritten && !first.hasBody() && e.srv.can(bodyCap(first)) != capNo {
			u.mode = modeEvalCarrier
		}
	}
	cmds := make([]redis.Cmder, len(again))
	for i := range again {
		cmds[i] = again[i].orig
	}
	e.build(rp, cmds)
	for i := range rp.items {
		if it := &rp.items[i]; it.loaded || it.form == sentByBody {
			p.items[again[i].index].loaded = true
		}
	}
	noScript := make([]error, len(again))
	for i := range again {
		noScript[i] = again[i].orig.Err()
		// go-redis gives a network error only to commands without an
		// error: left in place, the NOSCRIPT would outlive a retry that
		// ran before its connection broke.
		again[i].orig.SetErr(nil)
	}
	setActive(rp.out, true)
	err := next(ctx, rp.out)
	setActive(rp.out, false)
	e.readOnlyLoad(rp.out, err)
	e.settle(rp, br) // the retry's bodies and SHA1s count in the batch's span
	for i := range again {
		if k := again[i].k; !k.hasBody() && isDenied(again[i].orig.Err(), bodyCap(k).aclName()) {
			// The EVAL the retry sent for the caller's EVALSHA was refused
			// and ran nothing: the caller gets what its EVALSHA got.
			again[i].orig.SetErr(noScript[i])
		}
	}
	repaired := 0
	for i := range again {
		if !again[i].failed && (ok(again[i].orig.Err()) || isRedisError(again[i].orig.Err())) {
			repaired++ // it ran this time
			p.items[again[i].index].repaired = true
			if again[i].k.isFCall() {
				e.sh.fns.repaired.Add(1)
			} else {
				e.sh.stats.repaired.Add(1)
			}
		}
	}
	br.repaired += repaired
	for i := range p.items {
		p.items[i].failed = false
	}
	return err, true
}

// passNoScript counts the NOSCRIPT replies that reach the caller.
func (e *engine) passNoScript(p *batchPlan) {
	n := 0
	for i := range p.items {
		if it := &p.items[i]; it.k.isScript() && isNoScript(it.orig.Err()) {
			n++
		}
	}
	e.sh.stats.noScriptPassed.Add(int64(n))
}
