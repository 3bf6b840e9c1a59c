package scripthook

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// formOf is how one use goes out in its script's mode.
func (it *item) formOf(i int) sent {
	u := it.u
	if u == nil || it.forges() {
		return sentAsWritten
	}
	switch u.mode {
	case modeLoad:
		if it.region >= 0 && !u.s.compiles.Load() {
			// Inside a MULTI the caller wrote, a failed load would leave
			// a NOSCRIPT in EXEC's reply where plain EVAL gives the
			// compile error, which nothing could fix afterwards.
			return sentAsWritten
		}
		return shaForm(it.k)
	case modeTrusted:
		if it.region >= 0 {
			return sentAsWritten // a NOSCRIPT inside EXEC could not be repaired
		}
		return shaForm(it.k)
	case modeEvalCarrier:
		if i == u.first {
			return bodyForm(it.k)
		}
		return shaForm(it.k)
	case modeWarmFirst:
		if i == u.first && !it.k.hasBody() {
			return bodyForm(it.k)
		}
	}
	return sentAsWritten
}

// build writes the batch's outgoing commands: each SCRIPT LOAD before its
// script's first use (before an ASKING that comes right before it, since
// ASKING holds for the one command that follows), each use in its form, and
// the probes at the end. Nothing in it is ever reused: hooks after this one
// may keep it.
func (e *engine) build(p *batchPlan, cmds []redis.Cmder) {
	changed := p.askSHA || p.askSHARO || p.askLoad
	rewrites := 0
	for i := range p.items {
		it := &p.items[i]
		it.form = it.formOf(i)
		if it.form != sentAsWritten {
			rewrites++
		}
		if it.orig != it.cmd {
			changed = true
		}
	}
	for _, u := range p.uses {
		if u.carrier != nil {
			changed = true
			p.items[u.first].loaded = true
		}
	}
	changed = changed || len(p.fnLoads) > 0
	if !changed && rewrites == 0 {
		p.out = cmds
		return
	}
	p.out = make([]redis.Cmder, 0, len(cmds)+len(p.uses)+len(p.fnLoads)+3)
	var ws []rewritten
	var args []interface{}
	if rewrites > 0 {
		ws = make([]rewritten, 0, rewrites)
		total := 0
		for i := range p.items {
			if p.items[i].form != sentAsWritten {
				total += len(p.items[i].orig.Args())
			}
		}
		args = make([]interface{}, total)
	}
	for i := range p.items {
		it := &p.items[i]
		for _, u := range p.uses {
			if u.carrier != nil && u.at == i {
				p.insertCarrier(u.carrier)
			}
		}
		for _, c := range p.fnLoads {
			if c.at == i {
				p.insertCarrier(c.cmd)
			}
		}
		if it.form == sentAsWritten {
			p.out = append(p.out, it.orig)
			continue
		}
		n := len(it.orig.Args())
		ws = append(ws, rewritten{})
		w := &ws[len(ws)-1]
		// Boxed in its branch only: a body boxed and dropped would cost
		// an allocation per command sent by SHA1.
		var to kind
		var second interface{}
		if it.form == sentBySHA {
			to, second = it.k.bySHA(), it.u.s.sha.Load().arg
		} else {
			to, second = it.k.byBody(), it.u.s.body
		}
		w.init(e.sh, it.orig, it.k, it.u.s, args[:n:n], to, second)
		args = args[n:]
		p.out = append(p.out, w)
	}
	if p.askSHA {
		p.probes = append(p.probes, probe(kindEvalSha))
	}
	if p.askSHARO {
		p.probes = append(p.probes, probe(kindEvalShaRO))
	}
	if p.askLoad {
		p.probes = append(p.probes, redis.NewCmd(context.Background(), "script", "load", loadProbeBody))
	}
	for _, c := range p.probes {
		p.out = append(p.out, c)
	}
}

// insertCarrier appends a SCRIPT LOAD or FUNCTION LOAD, before an ASKING
// appended just before it.
func (p *batchPlan) insertCarrier(c redis.Cmder) {
	if n := len(p.out); n > 0 && classify(p.out[n-1].Args()) == kindAsking {
		p.out = append(p.out, p.out[n-1])
		p.out[n-1] = c
		return
	}
	p.out = append(p.out, c)
}

// loadProbeBody does not compile: SCRIPT LOAD of it creates nothing, and
// its reply says whether the user may run SCRIPT LOAD (a compile error) or
// not (NOPERM).
const loadProbeBody = "("

// zeroSHA names no script: EVALSHA of it runs nothing, and its reply says
// whether the user may run EVALSHA (NOSCRIPT) or not (NOPERM).
const zeroSHA = "0000000000000000000000000000000000000000"

// probe is the hook's keyless EVALSHA of no script.
func probe(k kind) *redis.Cmd {
	return redis.NewCmd(context.Background(), wireName[k], zeroSHA, 0)
}
